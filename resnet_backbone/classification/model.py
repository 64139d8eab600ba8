"""Any backbone of the registry as an image classifier (a Detectron2 meta-architecture):
`backbone.*` keeps the detection backbone's names and VGG-16's `head.fc67` is its detection box
head, so `export.py` turns a trained classifier into detection weights by renaming.
"""
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.utils.events import get_event_storage

from ..config import check_has_keys
from ..modeling.fc_box_head import VGG16BoxHead
from .views import (TEN_CROP_REGIONS, center_crop, multiscale_views, resize_shorter_side,
                    ten_crops)

TEST_MODES = ("full", "center", "10crop", "multiscale")


class PooledLinearHead(nn.Module):
    """Global average pooling and one fc layer (the ResNets' classifier, paper Table 1)."""

    def __init__(self, in_channels, num_classes, *, dropout=0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, features):
        return self.fc(self.dropout(features.mean(dim=(2, 3))))

    def dense_forward(self, features):
        """Scores averaged over every position of any size of map: the fully-convolutional
        form, equal to `forward` for this head (pooling and fc commute)."""
        return self.forward(features)


class VGGClassifierHead(nn.Module):
    """pool5, fc6, fc7 (with VGG16BoxHead's ReLU and dropout) and fc8."""

    def __init__(self, in_channels, num_classes, *, dropout=0.5):
        super().__init__()
        self.fc67 = VGG16BoxHead(ShapeSpec(channels=in_channels, height=7, width=7),
                                 dropout=dropout)
        self.fc8 = nn.Linear(self.fc67.output_shape.channels, num_classes)
        nn.init.normal_(self.fc8.weight, std=0.01)
        nn.init.zeros_(self.fc8.bias)

    def forward(self, features):
        pooled = F.max_pool2d(features, kernel_size=2, stride=2)
        if pooled.shape[-2:] != (7, 7):
            raise ValueError(
                f"VGG-16's fc6 takes 7x7 pool5 maps (224x224 crops); got {tuple(pooled.shape[-2:])}"
                " (use MODEL.CLASSIFIER.TEST_MODE multiscale for other sizes)"
            )
        return self.fc8(self.fc67(pooled))

    def dense_forward(self, features):
        """fc6 as a 7x7 convolution and fc7/fc8 as 1x1 ones over pool5 of any size of at least
        7x7, the scores averaged over positions (the paper's fully-convolutional form)."""
        pooled = F.max_pool2d(features, kernel_size=2, stride=2)
        fc6, fc7 = self.fc67.fc6, self.fc67.fc7
        x = F.relu(F.conv2d(pooled, fc6.weight.view(fc6.out_features, -1, 7, 7), fc6.bias))
        x = F.relu(F.conv2d(x, fc7.weight[:, :, None, None], fc7.bias))
        x = F.conv2d(x, self.fc8.weight[:, :, None, None], self.fc8.bias)
        return x.mean(dim=(2, 3))


@META_ARCH_REGISTRY.register()
class ImageClassifier(nn.Module):
    """backbone -> head -> class scores. Training: {"loss_cls": cross-entropy}, and the
    batch's top-1 error (%) logged as "train_top1_err" (the thin curves of the paper's Figs. 4
    and 6). Inference: one {"scores": softmax probabilities} per image, from the views of
    `test_mode`."""

    @configurable
    def __init__(self, *, backbone, head, pixel_mean, pixel_std, input_format="BGR",
                 label_smoothing=0.0, test_mode="center", test_resize=256, test_crop=224,
                 ten_crop_region="square", test_scales=(224, 256, 384, 480, 640)):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.input_format = input_format
        self.label_smoothing = label_smoothing
        self.test_mode, self.test_resize, self.test_crop = test_mode, test_resize, test_crop
        self.ten_crop_region = ten_crop_region
        self.test_scales = tuple(test_scales)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        check_has_keys(cfg, "ImageClassifier", node="MODEL.CLASSIFIER",
                       add="add_classification_config", module="resnet_backbone.classification")
        c = cfg.MODEL.CLASSIFIER
        if c.TEST_MODE not in TEST_MODES:
            raise ValueError(f"MODEL.CLASSIFIER.TEST_MODE={c.TEST_MODE!r}; use one of {TEST_MODES}")
        if c.TEN_CROP_REGION not in TEN_CROP_REGIONS:
            raise ValueError(f"MODEL.CLASSIFIER.TEN_CROP_REGION={c.TEN_CROP_REGION!r}; use one of "
                             f"{TEN_CROP_REGIONS}")
        backbone = build_backbone(cfg)
        features = backbone.output_shape()
        if len(features) != 1:
            raise ValueError(
                f"the classifier pools one feature map, but the backbone "
                f"({cfg.MODEL.BACKBONE.NAME}) outputs {list(features)}; set its OUT_FEATURES "
                "to the last stage only (MODEL.RESNETS.OUT_FEATURES [res5] / "
                "MODEL.VGG.OUT_FEATURES [conv5])"
            )
        (name, shape), = features.items()
        if name.startswith("conv"):  # VGG-16
            head = VGGClassifierHead(shape.channels, c.NUM_CLASSES,
                                     dropout=cfg.MODEL.ROI_BOX_HEAD.VGG.DROPOUT)
        else:
            head = PooledLinearHead(shape.channels, c.NUM_CLASSES, dropout=c.DROPOUT)
        return {
            "backbone": backbone,
            "head": head,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
            "label_smoothing": c.LABEL_SMOOTHING,
            "test_mode": c.TEST_MODE,
            "test_resize": c.TEST_RESIZE,
            "test_crop": c.TEST_CROP,
            "ten_crop_region": c.TEN_CROP_REGION,
            "test_scales": c.TEST_SCALES,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def _normalize(self, image):
        return (image.to(self.device).float() - self.pixel_mean) / self.pixel_std

    def _features(self, images):
        return next(iter(self.backbone(images).values()))

    def forward(self, batched_inputs):
        if not self.training and self.test_mode == "full":
            images = torch.stack([self._normalize(d["image"]) for d in batched_inputs])
            return [{"scores": s} for s in F.softmax(self.head(self._features(images)), dim=1)]
        if not self.training:
            return [{"scores": self.classify(d["image"])} for d in batched_inputs]
        images = torch.stack([self._normalize(d["image"]) for d in batched_inputs])
        labels = torch.tensor([d["label"] for d in batched_inputs], device=self.device)
        logits = self.head(self._features(images))
        errors = (logits.detach().argmax(dim=1) != labels).float().mean()
        get_event_storage().put_scalar("train_top1_err", 100.0 * float(errors))
        return {"loss_cls": F.cross_entropy(logits, labels,
                                            label_smoothing=self.label_smoothing)}

    def classify(self, image):
        """Softmax probabilities of one (C, H, W) image in `input_format` on the 0..255 scale
        (as the mapper gives it), from the views of `test_mode`."""
        image = self._normalize(image)
        if self.test_mode == "full":
            return F.softmax(self.head(self._features(image[None])), dim=1)[0]
        if self.test_mode == "multiscale":
            scores = [F.softmax(self.head.dense_forward(self._features(view[None])), dim=1)
                      for view in multiscale_views(image, self.test_scales)]
            return torch.cat(scores).mean(dim=0)
        resized = resize_shorter_side(image, self.test_resize)
        if self.test_mode == "center":
            crops = center_crop(resized, self.test_crop)
        else:
            crops = ten_crops(resized, self.test_crop, region=self.ten_crop_region)
        return F.softmax(self.head(self._features(crops)), dim=1).mean(dim=0)
