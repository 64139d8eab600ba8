"""VGG-16 Faster R-CNN on voc07pp12 (vgg16_voc07pp12.yaml as a LazyConfig; the paper's baseline)."""
from ..common.data.voc07pp12 import dataloader
from ..common.models.vgg16 import model
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_voc07pp12 as lr_multiplier
from ..common.train import train

model.roi_heads.num_classes = 20
train.max_iter = lr_multiplier.scheduler.num_updates
train.init_checkpoint = "imagenet://torchvision/vgg16"  # converted on first use
