"""ResNet-50 C4 Faster R-CNN on coco2014 (resnet50_c4_coco2014.yaml as a LazyConfig)."""
from .resnet101_c4_coco2014 import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.depth = 50
train.init_checkpoint = "imagenet://msra/R-50"  # MSRA's ImageNet model, the paper's own
