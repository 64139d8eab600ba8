"""ResNet-101 C4 Faster R-CNN on coco2014 (resnet101_c4_coco2014.yaml as a LazyConfig; paper Tables 7/8)."""
from ..common.data.coco2014 import NUM_CLASSES, dataloader  # noqa: F401
from ..common.models.paper_c4 import model
from ..common.schedule import COCO2014 as schedule  # noqa: F401
from ..common.train import train

model.backbone.depth = 101
model.roi_heads.num_classes = NUM_CLASSES
train.init_checkpoint = "imagenet://msra/R-101"  # MSRA's ImageNet model, the paper's own
