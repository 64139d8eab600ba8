"""VOC 07++12 (Base-VOC07pp12.yaml's data): 07 trainval+test and 12 trainval, tested on VOC 2012
test (the evaluation server's split)."""
from .voc0712 import NUM_CLASSES, dataloader  # noqa: F401

dataloader.train.datasets = ("voc_2007_trainval", "voc_2007_test", "voc_2012_trainval")
dataloader.test.datasets = ("voc_2012_test",)
