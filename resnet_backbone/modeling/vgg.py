"""VGG-16 (Simonyan & Zisserman, configuration "D") as a Detectron2 `Backbone`, the baseline the
paper compares ResNet-101 against. As in Faster R-CNN it ends at conv5_3 (stride 16, no pool5);
fc6/fc7 run per RoI in `fc_box_head.VGG16BoxHead`. The convs keep the Caffe model's names
(`conv1_1` .. `conv5_3`).
"""
from typing import Dict

import torch
import torch.nn.functional as F
from fvcore.nn.weight_init import c2_msra_fill
from torch import nn

from detectron2.layers import Conv2d
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from ..config import check_has_keys

# Blocks conv1..conv5: (number of 3x3 convs, their width); a 2x2/2 max-pool between blocks.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
BLOCK_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")


def last_block_for(out_features):
    return BLOCK_NAMES[max(BLOCK_NAMES.index(name) for name in out_features)]


class VGG16(Backbone):
    """conv1_1 .. conv{last}_3, ReLU after every conv. Output "conv<k>" is block k after its
    ReLU, before any pool; `freeze_at` stops gradients to blocks conv1..conv{freeze_at}."""

    def __init__(self, *, in_channels=3, out_features=("conv5",), last_block=None, freeze_at=0):
        super().__init__()
        self._out_features = list(out_features)
        num_blocks = BLOCK_NAMES.index(last_block or last_block_for(out_features)) + 1
        self.block_names = BLOCK_NAMES[:num_blocks]
        self._out_feature_strides, self._out_feature_channels = {}, {}
        channels = in_channels
        for index, name in enumerate(self.block_names):
            num_convs, width = VGG16_BLOCKS[index]
            for position in range(1, num_convs + 1):
                conv = Conv2d(channels, width, kernel_size=3, padding=1)
                c2_msra_fill(conv)
                self.add_module(f"{name}_{position}", conv)
                channels = width
            self._out_feature_strides[name] = 2**index
            self._out_feature_channels[name] = width
        for name in self.block_names[:freeze_at]:
            for conv in self.block_convs(name):
                conv.requires_grad_(False)

    def block_convs(self, name):
        """The convs of block `name`, input side first."""
        num_convs = VGG16_BLOCKS[BLOCK_NAMES.index(name)][0]
        return [getattr(self, f"{name}_{position}") for position in range(1, num_convs + 1)]

    def forward(self, x):
        outputs = {}
        for index, name in enumerate(self.block_names):
            if index > 0:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            for conv in self.block_convs(name):
                x = F.relu_(conv(x))
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def __prepare_scriptable__(self):
        """What `torch.jit.script` compiles in place of this module (it calls this hook on every
        submodule): TorchScript cannot look a conv up by a name computed at run time, as
        `block_convs` does, so it gets `ScriptableVGG16` over the same convs."""
        return ScriptableVGG16(self)


class ScriptableVGG16(Backbone):
    """The computation of a `VGG16`, with its convs (shared, not copied) held in one ModuleList
    per block, which TorchScript can loop over. Only scripted models contain it; their parameters
    are named `blocks.<block>.<conv>` (conv1_1 is blocks.0.0), as Detectron2's scripted ResNet
    names `res2` `stages.0`. Checkpoints are saved from and loaded into `VGG16`, whose names
    (`conv1_1` ..) do not change."""

    def __init__(self, vgg):
        super().__init__()
        self._out_features = list(vgg._out_features)
        self._out_feature_strides = dict(vgg._out_feature_strides)
        self._out_feature_channels = dict(vgg._out_feature_channels)
        self.block_names = list(vgg.block_names)
        self.blocks = nn.ModuleList(
            nn.ModuleList(vgg.block_convs(name)) for name in self.block_names
        )

    def forward(self, x):
        outputs: Dict[str, torch.Tensor] = {}
        for index, convs in enumerate(self.blocks):
            if index > 0:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            for conv in convs:
                x = F.relu_(conv(x))
            if self.block_names[index] in self._out_features:
                outputs[self.block_names[index]] = x
        return outputs


def make_vgg16(*, out_features=("conv5",), freeze_at=2, in_channels=3, last_block=None):
    """The Faster R-CNN baseline's VGG-16 (conv1/conv2 frozen by default), without a config."""
    return VGG16(in_channels=in_channels, out_features=out_features, last_block=last_block,
                 freeze_at=freeze_at)


@BACKBONE_REGISTRY.register()
def build_vgg16_backbone(cfg, input_shape):
    """VGG-16 from `MODEL.VGG.*`; every rejection names the config key at fault."""
    check_has_keys(cfg, "build_vgg16_backbone", node="MODEL.VGG")
    # fmt: off
    freeze_at    = cfg.MODEL.VGG.FREEZE_AT
    out_features = list(cfg.MODEL.VGG.OUT_FEATURES)
    # fmt: on
    unknown = [name for name in out_features if name not in BLOCK_NAMES]
    if unknown or not out_features:
        raise ValueError(f"MODEL.VGG.OUT_FEATURES={out_features} names {unknown or 'nothing'}; "
                         f"use any of {list(BLOCK_NAMES)}")
    last_block = last_block_for(out_features)
    built = BLOCK_NAMES.index(last_block) + 1
    if not isinstance(freeze_at, int) or not 0 <= freeze_at <= built:
        raise ValueError(f"MODEL.VGG.FREEZE_AT={freeze_at!r} is not a number of blocks built "
                         f"(up to {last_block}, the deepest of MODEL.VGG.OUT_FEATURES="
                         f"{out_features}); use 0..{built}")
    return VGG16(in_channels=input_shape.channels, out_features=out_features,
                 last_block=last_block, freeze_at=freeze_at)
