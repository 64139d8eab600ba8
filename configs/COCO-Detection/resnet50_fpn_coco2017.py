"""ResNet-50 FPN Faster R-CNN on coco2017 (resnet50_fpn_coco2017.yaml as a LazyConfig; not in the
paper): comparable with Detectron2's model zoo."""
from ..common.data.coco2017 import dataloader
from ..common.models.paper_fpn import model, use_fpn_scales
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_coco2017 as lr_multiplier
from ..common.train import train

model.roi_heads.num_classes = 80
use_fpn_scales(dataloader, optimizer)
train.max_iter = lr_multiplier.scheduler.num_updates
train.init_checkpoint = "imagenet://msra/R-50"  # MSRA's ImageNet model, the paper's own
