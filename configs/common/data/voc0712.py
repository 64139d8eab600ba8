"""VOC 07+12 (Base-VOC0712.yaml's data): train on 07 and 12 trainval, test on VOC 2007 test;
Faster R-CNN's scale (shorter side 600, longer at most 1000)."""
from .detection import detection_data

dataloader = detection_data(train=("voc_2007_trainval", "voc_2012_trainval"),
                            test="voc_2007_test", min_size=(600,), max_size=1000)
