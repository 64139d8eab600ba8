"""VOC 07+12 (Base-VOC0712.yaml's data): train on 07 and 12 trainval, test on VOC 2007 test;
Faster R-CNN's scale (shorter side 600, longer at most 1000). Read by resnet_backbone.lazy."""
dataloader = dict(
    train=dict(
        datasets=("voc_2007_trainval", "voc_2012_trainval"),
        min_size=(600,),
        max_size=1000,
        num_workers=4,
    ),
    test=dict(datasets=("voc_2007_test",), min_size=600, max_size=1000),
)
NUM_CLASSES = 20
