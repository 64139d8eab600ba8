"""Config keys of the classifiers (ImageNet pretraining, CIFAR-10), added by
`add_classification_config`; a classification config is otherwise a Detectron2 config."""
from detectron2.config import CfgNode as CN

from ..config import add_resnet_backbone_config


def add_classification_config(cfg):
    """Add the package's keys and the classification keys (with their defaults) to `cfg` in
    place; safe to call twice."""
    add_resnet_backbone_config(cfg)
    if "CLASSIFIER" in cfg.MODEL:
        return cfg
    cfg.MODEL.CLASSIFIER = CN()
    # Classes of the final fc layer (1000 for ImageNet, 10 for CIFAR-10).
    cfg.MODEL.CLASSIFIER.NUM_CLASSES = 1000
    # Label smoothing of the cross-entropy loss; the paper uses none.
    cfg.MODEL.CLASSIFIER.LABEL_SMOOTHING = 0.0
    # Dropout before the fc layer of the ResNet classifiers; the paper uses none. (VGG-16's
    # fc6/fc7 dropout is MODEL.ROI_BOX_HEAD.VGG.DROPOUT, as in its detection head.)
    cfg.MODEL.CLASSIFIER.DROPOUT = 0.0
    # How a test image is scored:
    #   "full"       the image as the loader gives it (CIFAR-10: the 32x32 original);
    #   "center"     shorter side resized to RESIZE, one CROP x CROP centre crop;
    #   "10crop"     the paper's Tables 2 and 3: CROP x CROP crops at the four corners and the
    #                centre of the resized image's central square (TEN_CROP_REGION), and the
    #                flips of all five, softmax scores averaged;
    #   "multiscale" the paper's Table 4: the fully-convolutional network applied with the
    #                shorter side at each of SCALES, on the image and its flip, softmax scores
    #                averaged.
    cfg.MODEL.CLASSIFIER.TEST_MODE = "center"
    cfg.MODEL.CLASSIFIER.TEST_RESIZE = 256
    cfg.MODEL.CLASSIFIER.TEST_CROP = 224
    # Where "10crop" takes its corner crops: "square", the central RESIZE x RESIZE square (the
    # 10-crop testing of Krizhevsky et al. that the paper cites), or "image", the whole resized
    # image (as fb.resnet.torch does); the two differ on every non-square image.
    cfg.MODEL.CLASSIFIER.TEN_CROP_REGION = "square"
    cfg.MODEL.CLASSIFIER.TEST_SCALES = [224, 256, 384, 480, 640]
    # Test images per forward pass and process; above 1 only for TEST_MODE "full" on images of
    # one size (CIFAR-10), which are then scored as one batch.
    cfg.MODEL.CLASSIFIER.TEST_IMS_PER_BATCH = 1

    cfg.INPUT.CLS = CN()
    # Training crops (Sec. 3.4): the shorter side is sampled uniformly from this range, then a
    # CROP x CROP crop is taken at random (with INPUT.RANDOM_FLIP, or its flip).
    cfg.INPUT.CLS.SHORT_SIDE_RANGE = [256, 480]
    cfg.INPUT.CLS.CROP = 224
    # Padding on every side before the random crop (CIFAR-10, Sec. 4.2: 4); 0 for none. The
    # padding is zero after mean subtraction, as in the paper (its pixels are MODEL.PIXEL_MEAN).
    cfg.INPUT.CLS.PAD = 0
    # The mean subtracted from every image: "channel", MODEL.PIXEL_MEAN (one value per channel);
    # "pixel", the per-pixel mean image of the DATASETS.TRAIN images (the paper's CIFAR-10 input,
    # Sec. 4.2), for datasets held in memory with images of one size (CIFAR format). ImageNet
    # keeps "channel": its random crops of randomly resized photos make the per-pixel mean of a
    # crop nearly constant per channel, and the exported detection backbone needs MODEL.PIXEL_MEAN.
    cfg.INPUT.CLS.MEAN = "channel"
    # Standard deviation of AlexNet's PCA colour augmentation ("standard colour augmentation",
    # Sec. 3.4); 0 disables it.
    cfg.INPUT.CLS.LIGHTING_STD = 0.1
    return cfg
