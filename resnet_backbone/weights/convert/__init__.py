"""Pure, strict converters from published ImageNet checkpoints (name -> tensor or numpy array)
to this package's names (`stem.conv1.weight`, `conv1_1.weight`, `fc6.weight`). Unknown, missing
or wrongly shaped keys raise one ValueError listing them all (`strict.py`).
"""
from collections.abc import Mapping
from typing import Dict, NamedTuple

import torch

from .resnet import BN_EPS, convert_msra_resnet, convert_torchvision_resnet  # noqa: F401
from .strict import expected_shapes, resnet_depth  # noqa: F401 (expected_shapes re-exported)
from .vgg import convert_caffe_vgg16, convert_torchvision_vgg16

CONVERTERS = {
    "torchvision": convert_torchvision_resnet,
    "msra": convert_msra_resnet,
    "torchvision-vgg16": convert_torchvision_vgg16,
    "caffe-vgg16": convert_caffe_vgg16,
}


class Converted(NamedTuple):
    state_dict: Dict[str, torch.Tensor]
    arch: str  # "resnet50", "vgg16", ...
    source: str  # a key of CONVERTERS


def infer_arch(state_dict):
    """"resnet<depth>" or "vgg16" for a state dict in this package's names."""
    if "stem.conv1.weight" in state_dict:
        return "resnet%d" % resnet_depth(state_dict, r"res([2-5])\.(\d+)\.", 2, ".conv3.")
    if "conv1_1.weight" in state_dict:
        return "vgg16"
    raise ValueError("not a state dict in this package's names: it has neither "
                     "stem.conv1.weight (ResNet) nor conv1_1.weight (VGG-16)")


def unwrap_checkpoint(obj):
    """The name -> tensor mapping of a loaded checkpoint: under "blobs" in Detectron's pickles,
    under "model" (next to "__author__") in Detectron2's, the object itself in torchvision's."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"a checkpoint must be a dict, got {type(obj).__name__}")
    if isinstance(obj.get("blobs"), Mapping):
        return obj["blobs"]
    if isinstance(obj.get("model"), Mapping) and "__author__" in obj:
        return obj["model"]
    return obj


def detect_source(state_dict):
    """Which converter reads this mapping, judged from its names."""
    keys = set(state_dict)
    if "stem.conv1.weight" in keys or "conv1_1.weight" in keys:
        raise ValueError("this checkpoint already uses this package's names (stem.conv1 / "
                         "conv1_1); it needs no conversion")
    if "conv1_w" in keys or "res_conv1_bn_s" in keys:
        return "msra"
    if "conv1_1_w" in keys:
        return "caffe-vgg16"
    if any(k.startswith("features.") for k in keys):
        return "torchvision-vgg16"
    if "conv1.weight" in keys or any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    raise ValueError(f"cannot tell which kind of checkpoint this is (known: {sorted(CONVERTERS)});"
                     f" its first keys are: {', '.join(sorted(keys)[:8])}")


def convert_checkpoint(obj, source=None):
    """Unwrap a loaded checkpoint, detect its source (unless given), convert it strictly and
    name its architecture."""
    state_dict = unwrap_checkpoint(obj)
    source = source or detect_source(state_dict)
    if source not in CONVERTERS:
        raise ValueError(f"unknown source {source!r}; known: {sorted(CONVERTERS)}")
    converted = CONVERTERS[source](state_dict)
    return Converted(converted, infer_arch(converted), source)
