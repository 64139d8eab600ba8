"""The numbers of He et al. 2015 that this project reproduces, stated once (data only).

The depth -> block type and stage sizes of Table 1 are `resnet.DEPTH_TABLE`; here are its
multiply-adds and the detection results of Tables 7 and 8. `tools/analyze_model.py`,
`tools/report.py` and the tests read them from here.
"""

# Table 1, "FLOPs" row: multiply-adds at 224x224 of the ImageNet classifier of each depth.
TABLE1_MULTIPLY_ADDS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9, 101: 7.6e9, 152: 11.3e9}
# Sec. 4.1 (deeper bottleneck architectures): VGG-16 has 15.3e9 multiply-adds.
VGG16_MULTIPLY_ADDS = 15.3e9
# The plain nets the paper built (Table 2, Fig. 4); Table 1's counts hold for them too.
PLAIN_DEPTHS_IN_PAPER = (18, 34)

# Tables 7 and 8: (test set, metric key of our results) -> (table, setting, {backbone: value}).
# On the VOC test sets our "AP50" is the VOC07 mAP; on COCO "AP50" and "AP" are mAP@.5 and
# mAP@[.5,.95].
DETECTION_RESULTS = {
    ("voc_2007_test", "AP50"): (
        "Table 7", "VOC 07+12 → VOC 07 test, mAP", {"VGG-16": 73.2, "ResNet-101": 76.4}
    ),
    ("voc_2012_test", "AP50"): (
        "Table 7", "VOC 07++12 → VOC 12 test (server), mAP", {"VGG-16": 70.4, "ResNet-101": 73.8}
    ),
    ("coco_2014_val", "AP50"): (
        "Table 8", "COCO train → val, mAP@.5", {"VGG-16": 41.5, "ResNet-101": 48.4}
    ),
    ("coco_2014_val", "AP"): (
        "Table 8", "COCO train → val, mAP@[.5,.95]", {"VGG-16": 21.2, "ResNet-101": 27.2}
    ),
}

