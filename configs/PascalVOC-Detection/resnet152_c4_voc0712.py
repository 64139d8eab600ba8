"""ResNet-152 C4 Faster R-CNN on voc0712 (resnet152_c4_voc0712.yaml as a LazyConfig), from
torchvision's ImageNet model: its pixel format, stride in the 3x3 conv."""
from ..common.models.pixels import use_torchvision_pixels
from .resnet101_c4_voc0712 import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

use_torchvision_pixels(model)
model.backbone.update(depth=152, stride_in_1x1=False)
train.init_checkpoint = "imagenet://torchvision/resnet152"
