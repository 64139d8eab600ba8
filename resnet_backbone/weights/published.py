"""Known ImageNet checkpoints and the pixel formats they were trained with: data only.

Features computed from pixels in another format than the weights were trained with are garbage
without any error, so converted files record their format (`checkpoint.py`).
"""
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class PixelFormat:
    """What the first conv of a network expects, in Detectron2's terms (mean and std in the
    channel order of `input_format`)."""

    key: str
    input_format: str  # INPUT.FORMAT
    pixel_mean: Tuple[float, float, float]  # MODEL.PIXEL_MEAN
    pixel_std: Tuple[float, float, float]  # MODEL.PIXEL_STD
    # Bottleneck stride placement of the ResNets trained this way (MODEL.RESNETS.STRIDE_IN_1X1);
    # None where no ResNet is trained in this format.
    stride_in_1x1: Optional[bool]

    def matches(self, input_format, pixel_mean, pixel_std, *, atol=1e-3) -> bool:
        """Whether a config with these INPUT.FORMAT / MODEL.PIXEL_MEAN / MODEL.PIXEL_STD feeds
        the network what it was trained on."""
        return (
            input_format == self.input_format
            and _close(self.pixel_mean, pixel_mean, atol)
            and _close(self.pixel_std, pixel_std, atol)
        )


PIXEL_FORMATS = {
    f.key: f
    for f in (
        # MSRA's Caffe ResNets as converted by Detectron/Detectron2: BGR in 0..255, mean
        # subtracted, no std; stride-2 in the first 1x1 conv of a bottleneck.
        PixelFormat("msra", "BGR", (103.530, 116.280, 123.675), (1.0, 1.0, 1.0), True),
        # torchvision's ImageNet models: RGB normalised by the ImageNet mean and std (in 0..255
        # units); stride-2 in the 3x3 conv of a bottleneck.
        PixelFormat("torchvision", "RGB", (123.675, 116.280, 103.530), (58.395, 57.120, 57.375),
                    False),
        # The original Caffe VGG-16 (Simonyan & Zisserman): BGR in 0..255, mean subtracted, no std.
        PixelFormat("caffe_vgg", "BGR", (103.939, 116.779, 123.68), (1.0, 1.0, 1.0), None),
    )
}

# Every source a converter exists for (see `convert.CONVERTERS`) and the pixel format of the
# weights it reads.
SOURCE_PIXEL_FORMATS = {
    "torchvision": "torchvision",
    "torchvision-vgg16": "torchvision",
    "msra": "msra",
    "caffe-vgg16": "caffe_vgg",
}


@dataclass(frozen=True)
class KnownWeights:
    """One downloadable ImageNet checkpoint; `name` is what follows `imagenet://`."""

    name: str
    arch: str  # "resnet50", "vgg16": the architecture the converted weights are for
    source: str  # a key of SOURCE_PIXEL_FORMATS: which converter reads the file
    url: str
    sha256_prefix: Optional[str]  # torchvision's, from its file names; checked on download
    note: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def pixel_format(self) -> PixelFormat:
        return PIXEL_FORMATS[SOURCE_PIXEL_FORMATS[self.source]]


_TORCHVISION = "https://download.pytorch.org/models/"
_DETECTRON2 = "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/"
# Detectron2 publishes no checksum for its ImageNetPretrained files: MODEL_ZOO.md's md5 prefix
# in file names covers only the detection models it trained, not R-50.pkl / R-101.pkl.
_NO_MSRA_CHECKSUM = "no published checksum (MODEL_ZOO.md gives none for ImageNet models)"


def _torchvision(arch, sha256_prefix, source="torchvision"):
    url = f"{_TORCHVISION}{arch}-{sha256_prefix}.pth"
    return KnownWeights(f"torchvision/{arch}", arch, source, url, sha256_prefix)


KNOWN_WEIGHTS = {
    w.name: w
    for w in (
        _torchvision("resnet18", "f37072fd"),
        _torchvision("resnet34", "b627a593"),
        _torchvision("resnet50", "0676ba61"),
        _torchvision("resnet101", "63fe2227"),
        _torchvision("resnet152", "394f9c45"),
        _torchvision("vgg16", "397923af", source="torchvision-vgg16"),
        KnownWeights("msra/R-50", "resnet50", "msra", _DETECTRON2 + "R-50.pkl", None,
                     "MSRA's original ResNet-50, converted by Detectron2; " + _NO_MSRA_CHECKSUM),
        KnownWeights("msra/R-101", "resnet101", "msra", _DETECTRON2 + "R-101.pkl", None,
                     "MSRA's original ResNet-101, converted by Detectron2; " + _NO_MSRA_CHECKSUM),
    )
}


def get_known_weights(name: str) -> KnownWeights:
    """The table entry for `name` (e.g. "torchvision/resnet101", "msra/R-50")."""
    if name not in KNOWN_WEIGHTS:
        raise ValueError(f"unknown ImageNet weights {name!r}; known: {sorted(KNOWN_WEIGHTS)}")
    return KNOWN_WEIGHTS[name]


def find_pixel_format(input_format, pixel_mean, pixel_std, *, atol=1e-3) -> Optional[str]:
    """The key of the known pixel format equal to these values, or None."""
    for fmt in PIXEL_FORMATS.values():
        if fmt.matches(input_format, pixel_mean, pixel_std, atol=atol):
            return fmt.key
    return None


def pixel_format_of(input_format, pixel_mean, pixel_std) -> PixelFormat:
    """These values as a PixelFormat: keyed by the known format they equal, else "own"."""
    key = find_pixel_format(input_format, pixel_mean, pixel_std) or "own"
    return PixelFormat(key, input_format, tuple(float(x) for x in pixel_mean),
                       tuple(float(x) for x in pixel_std), None)


def _close(a, b, atol):
    a, b = list(a), list(b)
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= atol for x, y in zip(a, b))
