"""COCO 2014 (Base-COCO2014.yaml's data): train on train2014, test on val2014 (paper Table 8)."""
from .detection import detection_data

dataloader = detection_data(train=("coco_2014_train",), test="coco_2014_val",
                            min_size=(600,), max_size=1000)
