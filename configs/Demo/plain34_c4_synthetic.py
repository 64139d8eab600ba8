"""Demo: Plain-34 C4 on the synthetic shapes (plain34_c4_synthetic.yaml as a LazyConfig): the
residual demo's settings without shortcuts."""
from .resnet34_c4_synthetic import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.residual = False
train.output_dir = "output/demo/plain34_c4_lazy"
