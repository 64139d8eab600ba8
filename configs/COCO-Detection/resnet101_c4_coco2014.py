"""ResNet-101 C4 Faster R-CNN on coco2014 (resnet101_c4_coco2014.yaml as a LazyConfig; paper Tables 7/8)."""
from ..common.data.coco2014 import dataloader
from ..common.models.paper_c4 import model
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_coco2014 as lr_multiplier
from ..common.train import train

model.backbone.depth = 101
model.roi_heads.num_classes = 80
train.max_iter = lr_multiplier.scheduler.num_updates
train.init_checkpoint = "imagenet://msra/R-101"  # MSRA's ImageNet model, the paper's own
