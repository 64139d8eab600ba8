"""VOC 07++12 (Base-VOC07pp12.yaml's data): 07 trainval+test and 12 trainval, tested on VOC 2012
test (the evaluation server's split)."""
from .detection import detection_data

dataloader = detection_data(train=("voc_2007_trainval", "voc_2007_test", "voc_2012_trainval"),
                            test="voc_2012_test", min_size=(600,), max_size=1000)
