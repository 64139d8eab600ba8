"""VGG-16 Faster R-CNN on voc0712 (vgg16_voc0712.yaml as a LazyConfig; the paper's baseline)."""
from ..common.data.voc0712 import NUM_CLASSES, dataloader  # noqa: F401
from ..common.models.vgg16 import model
from ..common.schedule import VOC0712 as schedule  # noqa: F401
from ..common.train import train

model.roi_heads.num_classes = NUM_CLASSES
train.init_checkpoint = "imagenet://torchvision/vgg16"  # converted on first use
