"""COCO 2017 (Base-COCO2017.yaml's data): train on train2017, test on val2017 (not in the paper;
Detectron2's model zoo uses these splits)."""
from .coco2014 import NUM_CLASSES, dataloader  # noqa: F401

dataloader.train.datasets = ("coco_2017_train",)
dataloader.test.datasets = ("coco_2017_val",)
