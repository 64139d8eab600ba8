"""ResNet-18 C4 on voc0712 from scratch (resnet18_c4_scratch_voc0712.yaml and
Base-VOC0712-Scratch-C4.yaml as a LazyConfig): SyncBN everywhere, nothing frozen, no weights,
torchvision's pixel format like the pretrained rows beside it."""
from ..common.models.pixels import use_torchvision_pixels
from .resnet101_c4_voc0712 import dataloader, lr_multiplier, model, optimizer, train  # noqa: F401

use_torchvision_pixels(model)
model.backbone.update(depth=18, res2_out_channels=64, norm="SyncBN", freeze_at=0)
train.init_checkpoint = ""
