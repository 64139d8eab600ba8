"""ResNet-34 C4 Faster R-CNN on voc0712 (resnet34_c4_voc0712.yaml as a LazyConfig), from
torchvision's ImageNet model: its pixel format; res5 of basic blocks runs per RoI."""
from .resnet152_c4_voc0712 import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

model.backbone.update(depth=34, res2_out_channels=64)
train.init_checkpoint = "imagenet://torchvision/resnet34"
