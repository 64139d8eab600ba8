"""ResNet-18 C4 Faster R-CNN on voc0712 (resnet18_c4_voc0712.yaml as a LazyConfig)."""
from .resnet34_c4_voc0712 import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.depth = 18
train.init_checkpoint = "imagenet://torchvision/resnet18"
