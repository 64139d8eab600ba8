"""ResNet-101 C4 Faster R-CNN on voc07pp12 (resnet101_c4_voc07pp12.yaml as a LazyConfig; paper Tables 7/8)."""
from ..common.data.voc07pp12 import NUM_CLASSES, dataloader  # noqa: F401
from ..common.models.paper_c4 import model
from ..common.schedule import VOC07PP12 as schedule  # noqa: F401
from ..common.train import train

model.backbone.depth = 101
model.roi_heads.num_classes = NUM_CLASSES
train.init_checkpoint = "imagenet://msra/R-101"  # MSRA's ImageNet model, the paper's own
