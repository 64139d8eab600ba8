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


# Tables 2, 3, 4 (ImageNet val) and 6 (CIFAR-10 test): classification error in percent, keyed by
# (test set, MODEL.CLASSIFIER.TEST_MODE of the run) -> [(table, setting, metric key of our
# results, {architecture: value})]. Architectures carry their shortcut option (A: identity with
# zero padding, B: projections where the shape changes, C: projections everywhere): Table 2's
# ResNets and Table 6's use A, Tables 3 and 4's deeper ResNets B.
CLASSIFICATION_RESULTS = {
    ("imagenet_val", "10crop"): [
        ("Table 2", "ImageNet val, 10-crop, top-1 err", "top1_err",
         {"Plain-18": 27.94, "Plain-34": 28.54, "ResNet-18 A": 27.88, "ResNet-34 A": 25.03}),
        ("Table 3", "ImageNet val, 10-crop, top-1 err", "top1_err",
         {"VGG-16": 28.07, "ResNet-34 A": 25.03, "ResNet-34 B": 24.52, "ResNet-34 C": 24.19,
          "ResNet-50 B": 22.85, "ResNet-101 B": 21.75, "ResNet-152 B": 21.43}),
        ("Table 3", "ImageNet val, 10-crop, top-5 err", "top5_err",
         {"VGG-16": 9.33, "ResNet-34 A": 7.76, "ResNet-34 B": 7.46, "ResNet-34 C": 7.40,
          "ResNet-50 B": 6.71, "ResNet-101 B": 6.05, "ResNet-152 B": 5.71}),
    ],
    ("imagenet_val", "multiscale"): [
        ("Table 4", "ImageNet val, single model multi-scale, top-1 err", "top1_err",
         {"ResNet-34 B": 21.84, "ResNet-34 C": 21.53, "ResNet-50 B": 20.74,
          "ResNet-101 B": 19.87, "ResNet-152 B": 19.38}),
        ("Table 4", "ImageNet val, single model multi-scale, top-5 err", "top5_err",
         {"ResNet-34 B": 5.71, "ResNet-34 C": 5.60, "ResNet-50 B": 5.25,
          "ResNet-101 B": 4.60, "ResNet-152 B": 4.49}),
    ],
    # ResNet-110: best of 5 runs (the paper gives 6.61 +- 0.16 as their mean).
    ("cifar10_test", "full"): [
        ("Table 6", "CIFAR-10 test err", "top1_err",
         {"ResNet-20 A": 8.75, "ResNet-32 A": 7.51, "ResNet-44 A": 7.17, "ResNet-56 A": 6.97,
          "ResNet-110 A": 6.43, "ResNet-1202 A": 7.93}),
    ],
}
