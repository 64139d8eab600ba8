"""ResNet-50 FPN Faster R-CNN on voc0712 (resnet50_fpn_voc0712.yaml as a LazyConfig; not in the
paper, which predates FPN)."""
from ..common.data.voc0712 import NUM_CLASSES, dataloader  # noqa: F401
from ..common.models.paper_fpn import FPN_TEST_SIZES, FPN_TRAIN_SIZES, FPN_WEIGHT_DECAY, model
from ..common.schedule import VOC0712 as schedule  # noqa: F401
from ..common.train import train

model.roi_heads.num_classes = NUM_CLASSES
dataloader.train.update(FPN_TRAIN_SIZES)
dataloader.test.update(FPN_TEST_SIZES)
schedule.weight_decay = FPN_WEIGHT_DECAY
train.init_checkpoint = "imagenet://msra/R-50"  # MSRA's ImageNet model, the paper's own
