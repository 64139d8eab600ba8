"""ResNet-101 FPN Faster R-CNN on coco2017 (resnet101_fpn_coco2017.yaml as a LazyConfig)."""
from .resnet50_fpn_coco2017 import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.bottom_up.depth = 101
train.init_checkpoint = "imagenet://msra/R-101"
