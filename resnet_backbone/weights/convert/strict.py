"""Renaming a checkpoint onto the model it is for, and failing on every key that does not fit.

A converter names, for every tensor of the target model, the key the checkpoint stores it
under; the expected names and shapes are read from the model built on the meta device.
"""
import functools
import re

import numpy as np
import torch
from detectron2.layers import ShapeSpec

from ...modeling.fc_box_head import IMAGENET_FC6_INPUT, VGG16BoxHead
from ...modeling.resnet import DEPTH_TABLE, BottleneckBlock, make_resnet
from ...modeling.vgg import make_vgg16


def published_network(arch, *, stride_in_1x1=True, norm="BN"):
    """The network a published ImageNet checkpoint of `arch` fills, on the meta device (no
    tensor values): `make_resnet`'s defaults (residual, shortcut option B, as every published
    ResNet has) with the given stride placement and norm (BatchNorm, as trained), or VGG-16."""
    with torch.device("meta"):
        if arch == "vgg16":
            return make_vgg16(freeze_at=0)
        return make_resnet(int(arch[len("resnet"):]), stride_in_1x1=stride_in_1x1, norm=norm)


@functools.lru_cache(maxsize=None)
def expected_shapes(arch):
    """name -> shape of every tensor of `arch` (`published_network` with FrozenBN, whose
    tensors a converted file holds: BatchNorm's also count batches; "vgg16" with its fc6/fc7
    head)."""
    modules = [published_network(arch, norm="FrozenBN")]
    if arch == "vgg16":
        channels, height, width = IMAGENET_FC6_INPUT
        with torch.device("meta"):
            modules.append(VGG16BoxHead(ShapeSpec(channels=channels, height=height, width=width)))
    return {k: tuple(v.shape) for m in modules for k, v in m.state_dict().items()}


def _describe(bottleneck, counts):
    return f"{'bottleneck' if bottleneck else 'basic'} {tuple(counts)}"


def resnet_depth(keys, block_pattern, first_stage, third_conv):
    """Depth of the ResNet whose keys these are. `block_pattern` matches a block's keys with
    groups (stage number, block index); stage `first_stage` is res2; a key containing
    `third_conv` marks a bottleneck."""
    counts, bottleneck = [0] * 4, False
    for key in keys:
        match = re.match(block_pattern, key)
        if match:
            stage = int(match.group(1)) - first_stage
            counts[stage] = max(counts[stage], int(match.group(2)) + 1)
            bottleneck = bottleneck or third_conv in key
    for depth, (block_class, layout) in sorted(DEPTH_TABLE.items()):
        if ((block_class is BottleneckBlock), layout) == (bottleneck, tuple(counts)):
            return depth
    known = ", ".join(f"{d}: {_describe(b is BottleneckBlock, c)}"
                      for d, (b, c) in sorted(DEPTH_TABLE.items()))
    raise ValueError(f"block layout {_describe(bottleneck, counts)} (blocks in res2..res5) "
                     f"matches no ResNet depth; known layouts: {known}")


def to_tensor(name, value):
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        # float32, native byte order, contiguous and writable, as torch.from_numpy wants it
        dtype = np.float32 if value.dtype.kind == "f" else value.dtype.newbyteorder("=")
        return torch.from_numpy(np.array(value, dtype=dtype, order="C"))
    raise ValueError(f"{name} holds a {type(value).__name__}, not a tensor or numpy array")


def rename(what, state_dict, arch, source_name, ignored):
    """The tensors of `state_dict` under the names of `arch`. `source_name(name)` is the key a
    tensor is stored under in the checkpoint; keys for which `ignored(key)` holds (classifier,
    counters, optimizer state) are dropped. One ValueError lists every unknown key, missing key
    and key of the wrong shape, in the checkpoint's names."""
    shapes = expected_shapes(arch)
    target = {source_name(name): name for name in shapes}
    converted, unknown = {}, []
    for key, value in state_dict.items():
        if key in target:
            converted[target[key]] = to_tensor(key, value)
        elif not ignored(key):
            unknown.append(key)
    missing = [source_name(name) for name in shapes if name not in converted]
    wrong = sorted(source_name(k) for k, v in converted.items() if tuple(v.shape) != shapes[k])
    problems = [f"{len(keys)} {kind}: {', '.join(sorted(keys))}"
                for kind, keys in (("unknown key(s)", unknown), ("missing key(s)", missing))
                if keys]
    if wrong:
        problems.append(f"{len(wrong)} key(s) of the wrong shape: " + ", ".join(
            f"{key} {tuple(state_dict[key].shape)} (expected {shapes[target[key]]})"
            for key in wrong))
    if problems:
        raise ValueError(f"cannot convert this {what} checkpoint: " + "; ".join(problems))
    return converted
