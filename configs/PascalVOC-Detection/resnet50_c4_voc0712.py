"""ResNet-50 C4 Faster R-CNN on voc0712 (resnet50_c4_voc0712.yaml as a LazyConfig)."""
from .resnet101_c4_voc0712 import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.depth = 50
train.init_checkpoint = "imagenet://msra/R-50"  # MSRA's ImageNet model, the paper's own
