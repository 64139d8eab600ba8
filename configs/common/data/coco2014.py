"""COCO 2014 (Base-COCO2014.yaml's data): train on train2014, test on val2014 (paper Table 8)."""
from .voc0712 import dataloader

dataloader.train.datasets = ("coco_2014_train",)
dataloader.test.datasets = ("coco_2014_val",)
NUM_CLASSES = 80
