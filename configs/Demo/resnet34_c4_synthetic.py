"""Demo: ResNet-34 C4 on the synthetic shapes (resnet34_c4_synthetic.yaml as a LazyConfig):
ResNet-18's demo settings with 34 layers."""
from .resnet18_c4_synthetic import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.depth = 34
train.output_dir = "output/demo/resnet34_c4_lazy"
