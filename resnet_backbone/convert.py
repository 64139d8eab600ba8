"""Pure converters from published ImageNet checkpoints to this package's parameter names.

Every converter takes a mapping of name -> tensor (or numpy array) and returns a new dict of
name -> torch.Tensor named like `resnet.ResNet` / `vgg.VGG16` / `fc_box_head.VGG16BoxHead`
(Detectron2's ResNet names: `stem.conv1.weight`, `res2.0.conv1.norm.running_var`,
`res3.0.shortcut.weight`, ...; VGG: `conv1_1.weight` .. `conv5_3.bias`, `fc6.*`, `fc7.*`).
The classifier (torchvision's `fc` / `classifier.6`, Caffe's `fc1000` / `fc8`) and
BatchNorm's `num_batches_tracked` are known and dropped.

The converters are strict: a key they do not know, a key the inferred architecture needs and
the input lacks, or a tensor of the wrong shape (a ResNeXt or wide ResNet has the same names as
a ResNet-50) raises one ValueError listing every such key, sorted. The ResNet depth is inferred
from the number of blocks per stage and the block type, looked up in `resnet.DEPTH_TABLE`.

Reading files is `checkpoint.py`'s job; nothing here touches the disk.
"""
import functools
import re
from collections.abc import Mapping
from typing import Dict, NamedTuple

import numpy as np
import torch

from detectron2.layers import ShapeSpec

from .fc_box_head import IMAGENET_FC6_INPUT, VGG16BoxHead
from .resnet import DEPTH_TABLE, STAGE_NAMES, BottleneckBlock, make_resnet
from .vgg import VGG16_BLOCKS, make_vgg16

# eps of Detectron2's FrozenBatchNorm2d and of torch's BatchNorm2d (both 1e-5).
BN_EPS = 1e-5


class Converted(NamedTuple):
    state_dict: Dict[str, torch.Tensor]
    arch: str  # "resnet50", "vgg16", ...
    source: str  # a key of CONVERTERS


# ------------------------------------------------------------------------------------------
# Architecture bookkeeping
# ------------------------------------------------------------------------------------------
def resnet_layout(depth):
    """(is_bottleneck, blocks per stage) of ResNet-`depth` from `resnet.DEPTH_TABLE`."""
    block_class, counts = DEPTH_TABLE[depth]
    return block_class is BottleneckBlock, tuple(counts)


def depth_for_layout(bottleneck, counts):
    """The depth whose block type and blocks per stage are these; ValueError naming the layout
    when none is."""
    for depth in sorted(DEPTH_TABLE):
        if resnet_layout(depth) == (bool(bottleneck), tuple(counts)):
            return depth
    known = ", ".join(
        f"{d}: {'bottleneck' if resnet_layout(d)[0] else 'basic'} {resnet_layout(d)[1]}"
        for d in sorted(DEPTH_TABLE)
    )
    raise ValueError(
        f"block layout {'bottleneck' if bottleneck else 'basic'} {tuple(counts)} (blocks in "
        f"res2..res5) matches no ResNet depth; known layouts: {known}"
    )


@functools.lru_cache(maxsize=None)
def expected_shapes(arch):
    """name -> shape of every tensor of this package's `arch` ("resnet50", "vgg16" with its
    fc6/fc7 head), read from the model built on the meta device. ResNets get option-B
    shortcuts, what every published checkpoint has."""
    with torch.device("meta"):
        if arch == "vgg16":
            channels, height, width = IMAGENET_FC6_INPUT
            pooled = ShapeSpec(channels=channels, height=height, width=width)
            modules = [make_vgg16(freeze_at=0), VGG16BoxHead(pooled)]
        else:
            modules = [make_resnet(int(arch[len("resnet"):]))]
    return {k: tuple(v.shape) for m in modules for k, v in m.state_dict().items()}


_BLOCK_KEY = re.compile(r"^(res[2-5])\.(\d+)\.")


def infer_resnet_depth(state_dict):
    """Depth of the ResNet whose converted (package-named) state dict this is."""
    counts = {stage: 0 for stage in STAGE_NAMES}
    bottleneck = False
    for key in state_dict:
        match = _BLOCK_KEY.match(key)
        if match:
            stage, block = match.group(1), int(match.group(2))
            counts[stage] = max(counts[stage], block + 1)
            bottleneck = bottleneck or key.startswith(match.group(0) + "conv3.")
    return depth_for_layout(bottleneck, [counts[stage] for stage in STAGE_NAMES])


def infer_arch(state_dict):
    """"resnet<depth>" or "vgg16" for a state dict in this package's names."""
    if "stem.conv1.weight" in state_dict:
        return f"resnet{infer_resnet_depth(state_dict)}"
    if "conv1_1.weight" in state_dict:
        return "vgg16"
    raise ValueError(
        "not a state dict in this package's names: it has neither stem.conv1.weight (ResNet) "
        "nor conv1_1.weight (VGG-16)"
    )


# ------------------------------------------------------------------------------------------
# Strictness
# ------------------------------------------------------------------------------------------
def _to_tensor(name, value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and value.dtype != np.float32:
            value = value.astype(np.float32)
        if not value.dtype.isnative:
            value = value.astype(value.dtype.newbyteorder("="))
        value = np.ascontiguousarray(value)
        if not value.flags.writeable:  # torch.from_numpy wants memory it may write
            value = value.copy()
        return torch.from_numpy(value)
    raise ValueError(f"{name} holds a {type(value).__name__}, not a tensor or numpy array")


def _check(source, converted, unknown, expected_shapes, source_name, missing_sources=()):
    """Raise one ValueError listing the unknown keys, the missing keys and the keys of the wrong
    shape, all in the checkpoint's own names."""
    missing = sorted(set(expected_shapes) - set(converted))
    unexpected = sorted(set(converted) - set(expected_shapes))
    bad_shapes = sorted(
        (
            key
            for key in set(converted) & set(expected_shapes)
            if tuple(converted[key].shape) != tuple(expected_shapes[key])
        ),
        key=source_name,
    )
    problems = []
    if unknown or unexpected:
        names = sorted(set(unknown) | {source_name(k) for k in unexpected})
        problems.append(f"{len(names)} unknown key(s): {', '.join(names)}")
    if missing or missing_sources:
        names = sorted({source_name(k) for k in missing} | set(missing_sources))
        problems.append(f"{len(names)} missing key(s): {', '.join(names)}")
    if bad_shapes:
        problems.append(
            f"{len(bad_shapes)} key(s) of the wrong shape: "
            + ", ".join(
                f"{source_name(k)} {tuple(converted[k].shape)} (expected "
                f"{tuple(expected_shapes[k])})"
                for k in bad_shapes
            )
        )
    if problems:
        raise ValueError(f"cannot convert this {source} checkpoint: " + "; ".join(problems))


def _resnet_finish(source, converted, unknown, source_name, missing_sources=()):
    """Infer the depth from what was converted and check everything against it."""
    try:
        depth = infer_resnet_depth(converted)
    except ValueError as error:
        extra = f"; unknown key(s): {', '.join(sorted(unknown))}" if unknown else ""
        raise ValueError(f"cannot convert this {source} checkpoint: {error}{extra}") from None
    _check(
        source, converted, unknown, expected_shapes(f"resnet{depth}"), source_name,
        missing_sources,
    )
    return converted


# ------------------------------------------------------------------------------------------
# torchvision ResNet
# ------------------------------------------------------------------------------------------
_TV_STEM_CONV = re.compile(r"^conv1\.weight$")
_TV_STEM_BN = re.compile(r"^bn1\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_TV_CONV = re.compile(r"^layer([1-4])\.(\d+)\.conv([1-3])\.weight$")
_TV_BN = re.compile(
    r"^layer([1-4])\.(\d+)\.bn([1-3])\.(weight|bias|running_mean|running_var|num_batches_tracked)$"
)
_TV_DOWN_CONV = re.compile(r"^layer([1-4])\.(\d+)\.downsample\.0\.weight$")
_TV_DOWN_BN = re.compile(
    r"^layer([1-4])\.(\d+)\.downsample\.1\."
    r"(weight|bias|running_mean|running_var|num_batches_tracked)$"
)
_TV_CLASSIFIER = re.compile(r"^fc\.(weight|bias)$")


def _torchvision_resnet_name(name):
    """torchvision name of a converted ResNet key (for error messages)."""
    if name.startswith("stem.conv1.norm."):
        return "bn1." + name[len("stem.conv1.norm."):]
    if name == "stem.conv1.weight":
        return "conv1.weight"
    stage, block, rest = name.split(".", 2)
    layer = f"layer{int(stage[3]) - 1}.{block}."
    match = re.match(r"^conv(\d)\.norm\.(.+)$", rest)
    if match:
        return f"{layer}bn{match.group(1)}.{match.group(2)}"
    if rest.startswith("shortcut.norm."):
        return layer + "downsample.1." + rest[len("shortcut.norm."):]
    if rest == "shortcut.weight":
        return layer + "downsample.0.weight"
    return layer + rest


def convert_torchvision_resnet(state_dict):
    """torchvision `resnet18` .. `resnet152` (or any ResNet-v1.5 state dict with their names)
    -> package names. BatchNorm statistics are kept as they are (torchvision's eps is also
    1e-5), so a model built with `stride_in_1x1=False` computes what torchvision's does."""
    converted, unknown = {}, []
    for key, value in state_dict.items():
        if _TV_STEM_CONV.match(key):
            target = "stem.conv1.weight"
        elif (match := _TV_STEM_BN.match(key)):
            target = f"stem.conv1.norm.{match.group(1)}"
        elif (match := _TV_CONV.match(key)):
            layer, block, index = match.groups()
            target = f"res{int(layer) + 1}.{int(block)}.conv{index}.weight"
        elif (match := _TV_BN.match(key)):
            layer, block, index, field = match.groups()
            target = f"res{int(layer) + 1}.{int(block)}.conv{index}.norm.{field}"
        elif (match := _TV_DOWN_CONV.match(key)):
            layer, block = match.groups()
            target = f"res{int(layer) + 1}.{int(block)}.shortcut.weight"
        elif (match := _TV_DOWN_BN.match(key)):
            layer, block, field = match.groups()
            target = f"res{int(layer) + 1}.{int(block)}.shortcut.norm.{field}"
        elif _TV_CLASSIFIER.match(key):
            continue  # the ImageNet classifier: not part of a backbone
        else:
            unknown.append(key)
            continue
        if target.endswith(".num_batches_tracked"):
            continue  # a training counter, not a weight
        converted[target] = _to_tensor(key, value)
    return _resnet_finish("torchvision ResNet", converted, unknown, _torchvision_resnet_name)


# ------------------------------------------------------------------------------------------
# MSRA / Caffe2 ResNet (Detectron and Detectron2 ImageNetPretrained/MSRA/R-*.pkl)
# ------------------------------------------------------------------------------------------
_C2_STEM = re.compile(r"^conv1_(w|b)$")
_C2_STEM_BN = re.compile(r"^res_conv1_bn_(s|b|rm|riv)$")
_C2_CONV = re.compile(r"^res([2-5])_(\d+)_branch(1|2a|2b|2c)_(w|b)$")
_C2_BN = re.compile(r"^res([2-5])_(\d+)_branch(1|2a|2b|2c)_bn_(s|b|rm|riv)$")
_C2_CLASSIFIER = re.compile(r"^fc1000_(w|b)$")
_C2_BRANCH = {"1": "shortcut", "2a": "conv1", "2b": "conv2", "2c": "conv3"}
_C2_BN_FIELD = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_C2_BRANCH_OF = {conv: branch for branch, conv in _C2_BRANCH.items()}
_C2_BN_SUFFIX_OF = {field: suffix for suffix, field in _C2_BN_FIELD.items()}


def _msra_conv_prefix(name):
    """Caffe2 prefix of a converted conv ("stem.conv1" -> "conv1", "res2.0.conv1" ->
    "res2_0_branch2a")."""
    if name == "stem.conv1":
        return "conv1"
    stage, block, conv = name.split(".")
    return f"{stage}_{block}_branch{_C2_BRANCH_OF[conv]}"


def _msra_name(name):
    """Caffe2 name of a converted ResNet key (for error messages)."""
    conv, _, field = name.rpartition(".")
    if conv.endswith(".norm"):
        prefix = _msra_conv_prefix(conv[: -len(".norm")])
        prefix = "res_conv1" if prefix == "conv1" else prefix
        return f"{prefix}_bn_{_C2_BN_SUFFIX_OF[field]}"
    return f"{_msra_conv_prefix(conv)}_w"


def convert_msra_resnet(blobs):
    """Caffe2 blobs of MSRA's ResNets (Detectron's / Detectron2's R-50.pkl, R-101.pkl) ->
    package names. `blobs` is the dict inside the pickle (see `unwrap_checkpoint`).

    BatchNorm: `_bn_s`/`_bn_b` become norm.weight/norm.bias. Where the file also has the
    statistics (`_bn_rm`, `_bn_riv`: Detectron2's files do) they become running_mean /
    running_var (Detectron2 reads `riv` as the variance). Where it has only the fused affine
    (`x * s + b`, Detectron's files), running_mean = 0 and running_var = 1 - eps, so that
    BatchNorm's (x - mean) / sqrt(var + eps) * s + b is exactly x * s + b. That is also what
    Detectron2's FrozenBatchNorm2d initialises to; it never adjusts running_var when it loads a
    state dict without version metadata (a converted file has none), so the file is read as
    written. A conv bias (MSRA's conv1 has one; Detectron's files have `_b` on every conv) is
    folded into the running mean (mean - bias), which is exact, instead of being dropped.
    `fc1000_*` (the classifier) and `*_momentum` (Caffe2 optimizer state) are dropped.
    """
    parts, unknown = {}, []  # conv prefix -> {"w"|"conv_b"|"s"|"b"|"rm"|"riv": (key, value)}
    for key, value in blobs.items():
        if key.endswith("_momentum") or _C2_CLASSIFIER.match(key):
            continue
        if (match := _C2_STEM.match(key)):
            prefix, part = "stem.conv1", "w" if match.group(1) == "w" else "conv_b"
        elif (match := _C2_STEM_BN.match(key)):
            prefix, part = "stem.conv1", match.group(1)
        elif (match := _C2_CONV.match(key)):
            stage, block, branch, kind = match.groups()
            prefix = f"res{stage}.{int(block)}.{_C2_BRANCH[branch]}"
            part = "w" if kind == "w" else "conv_b"
        elif (match := _C2_BN.match(key)):
            stage, block, branch, part = match.groups()
            prefix = f"res{stage}.{int(block)}.{_C2_BRANCH[branch]}"
        else:
            unknown.append(key)
            continue
        parts.setdefault(prefix, {})[part] = (key, _to_tensor(key, value))

    converted, unpaired = {}, []
    for prefix, conv in parts.items():
        if "w" in conv:
            converted[prefix + ".weight"] = conv["w"][1]
        if "s" not in conv or "b" not in conv:
            # Reported as missing by the check below (the stats alone make no norm layer).
            for part in ("s", "b"):
                if part in conv:
                    converted[f"{prefix}.norm.{_C2_BN_FIELD[part]}"] = conv[part][1]
            continue
        scale, shift = conv["s"][1], conv["b"][1]
        if "rm" in conv and "riv" in conv:
            mean, var = conv["rm"][1], conv["riv"][1]
        else:
            if "rm" in conv or "riv" in conv:
                # The statistics only make sense as a pair: report the partner as missing.
                have, lack = ("rm", "riv") if "rm" in conv else ("riv", "rm")
                unpaired.append(conv[have][0][: -len(have)] + lack)
            mean = torch.zeros_like(scale)
            var = torch.full_like(scale, 1.0 - BN_EPS)
        if "conv_b" in conv:
            mean = mean - conv["conv_b"][1]
        converted[prefix + ".norm.weight"] = scale
        converted[prefix + ".norm.bias"] = shift
        converted[prefix + ".norm.running_mean"] = mean
        converted[prefix + ".norm.running_var"] = var
    return _resnet_finish("MSRA ResNet", converted, unknown, _msra_name, unpaired)


# ------------------------------------------------------------------------------------------
# VGG-16
# ------------------------------------------------------------------------------------------
def _torchvision_vgg16_feature_index():
    """conv name -> its index in torchvision's `vgg16().features`, where a ReLU follows every
    conv and a max-pool every block."""
    index, position = {}, 0
    for block, (num_convs, _) in enumerate(VGG16_BLOCKS, start=1):
        for conv in range(1, num_convs + 1):
            index[f"conv{block}_{conv}"] = position
            position += 2
        position += 1
    return index


_TORCHVISION_VGG16_FEATURE_INDEX = _torchvision_vgg16_feature_index()


def _torchvision_vgg16_name(name):
    layer, field = name.split(".")
    if layer == "fc6":
        return f"classifier.0.{field}"
    if layer == "fc7":
        return f"classifier.3.{field}"
    return f"features.{_TORCHVISION_VGG16_FEATURE_INDEX[layer]}.{field}"


def convert_torchvision_vgg16(state_dict):
    """torchvision `vgg16` -> conv1_1..conv5_3, fc6 (classifier.0), fc7 (classifier.3).
    classifier.6 (fc8, the 1000-way classifier) is dropped. fc6 keeps torchvision's layout
    (4096 x 25088 over a 512x7x7 input flattened in C, H, W order)."""
    by_source = {_torchvision_vgg16_name(k): k for k in expected_shapes("vgg16")}
    converted, unknown = {}, []
    for key, value in state_dict.items():
        if key in by_source:
            converted[by_source[key]] = _to_tensor(key, value)
        elif key in ("classifier.6.weight", "classifier.6.bias"):
            continue
        else:
            unknown.append(key)
    _check("torchvision VGG-16", converted, unknown, expected_shapes("vgg16"),
           _torchvision_vgg16_name)
    return converted


def _caffe_vgg16_name(name):
    layer, field = name.split(".")
    return f"{layer}_{'w' if field == 'weight' else 'b'}"


def convert_caffe_vgg16(blobs):
    """Caffe/Caffe2 VGG-16 blobs (conv1_1_w, conv1_1_b, ..., fc6_w, fc7_w; the names of
    Detectron's VGG16 body and head) -> package names. fc8_* (the classifier) and *_momentum
    are dropped; an fc6_w stored as 4096x512x7x7 is flattened to 4096x25088 (C, H, W order,
    as Caffe flattens pool5). Weights are used as they are: BGR input is the pixel format's
    business (`weights.PIXEL_FORMATS["caffe_vgg"]`)."""
    by_source = {_caffe_vgg16_name(k): k for k in expected_shapes("vgg16")}
    converted, unknown = {}, []
    for key, value in blobs.items():
        if key.endswith("_momentum") or key in ("fc8_w", "fc8_b"):
            continue
        if key not in by_source:
            unknown.append(key)
            continue
        tensor = _to_tensor(key, value)
        if key == "fc6_w" and tensor.dim() == 4:
            tensor = tensor.reshape(tensor.shape[0], -1)
        converted[by_source[key]] = tensor
    _check("Caffe VGG-16", converted, unknown, expected_shapes("vgg16"), _caffe_vgg16_name)
    return converted


# ------------------------------------------------------------------------------------------
# Dispatch
# ------------------------------------------------------------------------------------------
CONVERTERS = {
    "torchvision": convert_torchvision_resnet,
    "msra": convert_msra_resnet,
    "torchvision-vgg16": convert_torchvision_vgg16,
    "caffe-vgg16": convert_caffe_vgg16,
}


def unwrap_checkpoint(obj):
    """The name -> tensor mapping inside a loaded checkpoint: Detectron's pickles keep it under
    "blobs", Detectron2's model-zoo pickles under "model" (next to "__author__"); torchvision
    files are the mapping itself."""
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
        raise ValueError(
            "this checkpoint already uses this package's names (stem.conv1 / conv1_1); "
            "it needs no conversion"
        )
    if "conv1_w" in keys or "res_conv1_bn_s" in keys:
        return "msra"
    if "conv1_1_w" in keys:
        return "caffe-vgg16"
    if any(k.startswith("features.") for k in keys):
        return "torchvision-vgg16"
    if "conv1.weight" in keys or any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    sample = ", ".join(sorted(keys)[:8])
    raise ValueError(
        f"cannot tell which kind of checkpoint this is (known: {sorted(CONVERTERS)}); "
        f"its first keys are: {sample}"
    )


def convert_checkpoint(obj, source=None):
    """Unwrap a loaded checkpoint, detect its source (unless given), convert it strictly and
    name its architecture."""
    state_dict = unwrap_checkpoint(obj)
    if source is None:
        source = detect_source(state_dict)
    if source not in CONVERTERS:
        raise ValueError(f"unknown source {source!r}; known: {sorted(CONVERTERS)}")
    converted = CONVERTERS[source](state_dict)
    return Converted(converted, infer_arch(converted), source)
