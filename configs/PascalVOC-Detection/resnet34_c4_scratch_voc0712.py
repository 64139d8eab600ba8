"""ResNet-34 C4 on voc0712 from scratch (resnet34_c4_scratch_voc0712.yaml as a LazyConfig)."""
from .resnet18_c4_scratch_voc0712 import (  # noqa: F401
    dataloader, lr_multiplier, model, optimizer, train)

model.backbone.depth = 34
