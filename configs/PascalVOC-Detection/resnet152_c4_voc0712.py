"""ResNet-152 C4 Faster R-CNN on voc0712 (resnet152_c4_voc0712.yaml as a LazyConfig), from
torchvision's ImageNet model: its pixel format, stride in the 3x3 conv."""
from ..common.models.pixels import TORCHVISION
from .resnet101_c4_voc0712 import dataloader, model, schedule, train  # noqa: F401

model.update(TORCHVISION)
model.backbone.update(depth=152, stride_in_1x1=False)
train.init_checkpoint = "imagenet://torchvision/resnet152"
