"""VGG-16 Faster R-CNN on coco2014 (vgg16_coco2014.yaml as a LazyConfig; the paper's baseline)."""
from ..common.data.coco2014 import dataloader
from ..common.models.vgg16 import model
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_coco2014 as lr_multiplier
from ..common.train import train

model.roi_heads.num_classes = 80
train.max_iter = lr_multiplier.scheduler.num_updates
train.init_checkpoint = "imagenet://torchvision/vgg16"  # converted on first use
