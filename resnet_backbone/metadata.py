"""What a checkpoint records about the network it holds, and the config keys that follow from it.

Every file this package writes (converted ImageNet weights, a classifier exported for detection,
each training checkpoint) carries a `resnet_backbone` entry: the architecture (`arch`, and for
ResNets whether it is residual, its shortcut option and stride placement) and the pixel format
it was trained with. `required_config` turns that record into the config keys and values a run
must use; the start-up check, the converter's printout and the classifier export all read it.
"""
from .resnet import DEPTH_TABLE, BottleneckBlock
from .safe_load import METADATA_KEY  # noqa: F401 (where files keep these records)
from .weights import PIXEL_FORMATS, SOURCE_PIXEL_FORMATS, PixelFormat, find_pixel_format

# Bumped when the converters change what they write: cached files of another version are redone.
# 2: converted ResNets record `residual` and `shortcut`.
CONVERTER_VERSION = 2
REQUIRED_METADATA = ("arch", "source", "pixel_format", "input_format", "pixel_mean", "pixel_std")
# The shortcut option of the published ImageNet ResNets (torchvision's and MSRA's).
PUBLISHED_SHORTCUT = "B"

def make_metadata(arch, source, pixel_format=None, **extra):
    """The `resnet_backbone` entry of a file. The pixel format (a `PixelFormat`) follows
    `source` unless given; ResNets from a published source are recorded as residual with
    shortcut option B; `extra` entries that are None are left out."""
    if pixel_format is None:
        if source not in SOURCE_PIXEL_FORMATS:
            raise ValueError(f"unknown source {source!r}; known: {sorted(SOURCE_PIXEL_FORMATS)}")
        pixel_format = PIXEL_FORMATS[SOURCE_PIXEL_FORMATS[source]]
    metadata = {
        "arch": arch,
        "source": source,
        "pixel_format": pixel_format.key,
        "input_format": pixel_format.input_format,
        "pixel_mean": [float(x) for x in pixel_format.pixel_mean],
        "pixel_std": [float(x) for x in pixel_format.pixel_std],
        "converter_version": CONVERTER_VERSION,
    }
    if arch.startswith("resnet"):
        metadata["stride_in_1x1"] = pixel_format.stride_in_1x1
        if source in SOURCE_PIXEL_FORMATS:
            metadata.update(residual=True, shortcut=PUBLISHED_SHORTCUT)
    metadata.update((key, value) for key, value in extra.items() if value is not None)
    return metadata


def backbone_family(cfg):
    """"resnet" / "vgg" for the backbones this package knows by MODEL.BACKBONE.NAME, else None."""
    name = cfg.MODEL.BACKBONE.NAME.lower()
    return "vgg" if "vgg" in name else "resnet" if "resnet" in name else None


def arch_of_config(cfg):
    """"resnet<depth>" / "vgg16" for the network `cfg` builds; None for unknown backbones."""
    family = backbone_family(cfg)
    if family == "resnet":
        return f"resnet{cfg.MODEL.RESNETS.DEPTH}"
    return "vgg16" if family == "vgg" else None


def metadata_of_config(cfg, source):
    """The record of a network trained with `cfg` (a training checkpoint, an exported
    classifier), with the config's own pixel format; None for backbones this package does not
    know."""
    arch = arch_of_config(cfg)
    if arch is None:
        return None
    mean, std = tuple(cfg.MODEL.PIXEL_MEAN), tuple(cfg.MODEL.PIXEL_STD)
    key = find_pixel_format(cfg.INPUT.FORMAT, mean, std) or "own"
    resnet = arch.startswith("resnet")
    pixel_format = PixelFormat(key, cfg.INPUT.FORMAT, mean, std,
                               bool(cfg.MODEL.RESNETS.STRIDE_IN_1X1) if resnet else None)
    extra = {}
    if resnet:
        extra = dict(residual=bool(cfg.MODEL.RESNET_BACKBONE.RESIDUAL),
                     shortcut=cfg.MODEL.RESNET_BACKBONE.SHORTCUT)
    return make_metadata(arch, source, pixel_format, **extra)


def required_config(metadata):
    """[(config key, value)] a run must set to use the weights `metadata` describes: the pixel
    format, and for ResNets the depth, the stride placement (bottlenecks only: basic blocks
    have no 1x1 conv to put it in), plain or residual, and the shortcut option, where
    recorded."""
    settings = [
        ("INPUT.FORMAT", metadata["input_format"]),
        ("MODEL.PIXEL_MEAN", [float(x) for x in metadata["pixel_mean"]]),
        ("MODEL.PIXEL_STD", [float(x) for x in metadata["pixel_std"]]),
    ]
    arch = metadata["arch"]
    if not arch.startswith("resnet"):
        return settings
    depth = int(arch[len("resnet"):])
    settings.append(("MODEL.RESNETS.DEPTH", depth))
    bottleneck = depth in DEPTH_TABLE and DEPTH_TABLE[depth][0] is BottleneckBlock
    if bottleneck and metadata.get("stride_in_1x1") is not None:
        settings.append(("MODEL.RESNETS.STRIDE_IN_1X1", bool(metadata["stride_in_1x1"])))
    if metadata.get("residual") is not None:
        settings.append(("MODEL.RESNET_BACKBONE.RESIDUAL", bool(metadata["residual"])))
    if metadata.get("shortcut") is not None and metadata.get("residual", True):
        settings.append(("MODEL.RESNET_BACKBONE.SHORTCUT", metadata["shortcut"]))
    return settings
