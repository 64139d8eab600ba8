"""VGG-16 Faster R-CNN on coco2014 (vgg16_coco2014.yaml as a LazyConfig; the paper's baseline)."""
from ..common.data.coco2014 import NUM_CLASSES, dataloader  # noqa: F401
from ..common.models.vgg16 import model
from ..common.schedule import COCO2014 as schedule  # noqa: F401
from ..common.train import train

model.roi_heads.num_classes = NUM_CLASSES
train.init_checkpoint = "imagenet://torchvision/vgg16"  # converted on first use
