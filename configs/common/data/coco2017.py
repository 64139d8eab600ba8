"""COCO 2017 (Base-COCO2017.yaml's data): train on train2017, test on val2017 (not in the paper;
Detectron2's model zoo uses these splits)."""
from .detection import detection_data

dataloader = detection_data(train=("coco_2017_train",), test="coco_2017_val",
                            min_size=(600,), max_size=1000)
