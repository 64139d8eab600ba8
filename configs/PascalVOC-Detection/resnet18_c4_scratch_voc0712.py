"""ResNet-18 C4 on voc0712 from scratch (resnet18_c4_scratch_voc0712.yaml and
Base-VOC0712-Scratch-C4.yaml as a LazyConfig): SyncBN everywhere, nothing frozen, no weights,
torchvision's pixel format like the pretrained rows beside it."""
from ..common.models.pixels import TORCHVISION
from .resnet101_c4_voc0712 import dataloader, model, schedule, train  # noqa: F401

model.update(TORCHVISION)
model.backbone.update(depth=18, res2_out_channels=64, norm="SyncBN", freeze_at=0)
train.init_checkpoint = ""
