"""Residual and plain networks of He et al. 2015 (Table 1) as Detectron2 backbones.

Detectron2 provides the stem, `ResNet` (stages, output shapes, freezing) and `ResNet.make_stage`;
this module adds the blocks the paper has and Detectron2's lack: shortcut options A/B/C
(Sec. 3.3), plain counterparts without shortcuts (Sec. 4.1), and one depth table for both block
types. Parameter names are Detectron2's (`res2.0.conv1.norm`, `shortcut`), so its MSRA
checkpoints load without renaming.
"""
import torch.nn.functional as F
from fvcore.nn.weight_init import c2_msra_fill
from torch import nn

from detectron2.layers import CNNBlockBase, Conv2d, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicStem, ResNet

from ..config import check_has_keys
from ..fields import builder_arguments
from .head_check import check_detectron2_res5_fits

SHORTCUT_OPTIONS = ("A", "B", "C")
STAGE_NAMES = ("res2", "res3", "res4", "res5")


def conv_norm(in_channels, out_channels, kernel_size, stride, norm):
    conv = Conv2d(
        in_channels, out_channels, kernel_size=kernel_size, stride=stride,
        padding=kernel_size // 2, bias=False, norm=get_norm(norm, out_channels),
    )
    c2_msra_fill(conv)
    return conv


class ZeroPadShortcut(nn.Module):
    """Option A: identity that subsamples space and zero-pads the new channels; no parameters."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


def make_shortcut(in_channels, out_channels, stride, *, option, norm):
    """The shortcut of one residual block; None means a plain identity."""
    shape_changes = in_channels != out_channels or stride != 1
    projects = {"A": False, "B": shape_changes, "C": True}[option]
    if projects:
        return conv_norm(in_channels, out_channels, 1, stride, norm)
    return ZeroPadShortcut(in_channels, out_channels, stride) if shape_changes else None


class ResidualBlockBase(CNNBlockBase):
    """Adds the shortcut to the residual branch, or only runs the branch in a plain net."""

    def __init__(self, in_channels, out_channels, stride, *, residual, shortcut, norm):
        super().__init__(in_channels, out_channels, stride)
        self.residual = residual
        self.shortcut = (
            make_shortcut(in_channels, out_channels, stride, option=shortcut, norm=norm)
            if residual
            else None
        )

    def forward(self, x):
        out = self.branch(x)
        if self.residual:
            # In place, as Detectron2's blocks do: the branch output is not kept for backward.
            out += self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out)


class BasicBlock(ResidualBlockBase):
    """Two 3x3 convs (ResNet-18/34)."""

    def __init__(
        self, in_channels, out_channels, *, stride=1, norm="BN", residual=True, shortcut="B"
    ):
        super().__init__(
            in_channels, out_channels, stride, residual=residual, shortcut=shortcut, norm=norm
        )
        self.conv1 = conv_norm(in_channels, out_channels, 3, stride, norm)
        self.conv2 = conv_norm(out_channels, out_channels, 3, 1, norm)

    def branch(self, x):
        return self.conv2(F.relu_(self.conv1(x)))


class BottleneckBlock(ResidualBlockBase):
    """1x1 reduce, 3x3, 1x1 expand (ResNet-50/101/152). The stride sits in the first 1x1 for
    MSRA's models (what Table 1's FLOPs count) or in the 3x3 for torchvision's."""

    def __init__(
        self, in_channels, out_channels, *, bottleneck_channels, stride=1, norm="BN",
        residual=True, shortcut="B", stride_in_1x1=True,
    ):
        super().__init__(
            in_channels, out_channels, stride, residual=residual, shortcut=shortcut, norm=norm
        )
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv_norm(in_channels, bottleneck_channels, 1, stride_1x1, norm)
        self.conv2 = conv_norm(bottleneck_channels, bottleneck_channels, 3, stride_3x3, norm)
        self.conv3 = conv_norm(bottleneck_channels, out_channels, 1, 1, norm)

    def branch(self, x):
        x = F.relu_(self.conv1(x))
        return self.conv3(F.relu_(self.conv2(x)))


# Paper Table 1: block type and number of blocks in conv2_x..conv5_x (res2..res5).
DEPTH_TABLE = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (BottleneckBlock, (3, 4, 6, 3)),
    101: (BottleneckBlock, (3, 4, 23, 3)),
    152: (BottleneckBlock, (3, 8, 36, 3)),
}


def stage_out_channels(depth, stage, res2_out_channels=None):
    """Output channels of `stage` ("res2".."res5"): widths double from stage to stage."""
    block_class, _ = DEPTH_TABLE[depth]
    res2 = res2_out_channels or (256 if block_class is BottleneckBlock else 64)
    return res2 * 2 ** STAGE_NAMES.index(stage)


def make_resnet_stage(
    depth, stage, *, in_channels, res2_out_channels=None, stride_in_1x1=True, **block_options
):
    """The blocks of `stage` of ResNet-`depth`; the first block of res3..res5 has stride 2.
    `block_options`: norm, residual, shortcut."""
    block_class, blocks_per_stage = DEPTH_TABLE[depth]
    index = STAGE_NAMES.index(stage)
    num_blocks = blocks_per_stage[index]
    if block_class is BottleneckBlock:
        block_options.update(bottleneck_channels=64 * 2**index, stride_in_1x1=stride_in_1x1)
    return ResNet.make_stage(
        block_class, num_blocks,
        in_channels=in_channels,
        out_channels=stage_out_channels(depth, stage, res2_out_channels),
        stride_per_block=[1 if index == 0 else 2] + [1] * (num_blocks - 1),
        **block_options,
    )


def last_stage_for(out_features):
    """The deepest stage any of `out_features` needs (res2 when only the stem is asked for)."""
    needed = [STAGE_NAMES.index(f) for f in out_features if f in STAGE_NAMES]
    return STAGE_NAMES[max(needed, default=0)]


def make_resnet(
    depth, *, residual=True, shortcut="B", stride_in_1x1=True, norm="FrozenBN",
    out_features=None, freeze_at=0, in_channels=3, stem_out_channels=64,
    res2_out_channels=None, last_stage=None,
):
    """ResNet-`depth` (or its plain counterpart) as Detectron2's `ResNet`, built up to
    `last_stage` (default: the deepest stage `out_features` needs; res5 for None)."""
    out_features = list(out_features or ["res5"])
    last_stage = last_stage or last_stage_for(out_features)
    stem = BasicStem(in_channels, stem_out_channels, norm=norm)
    stages, channels = [], stem_out_channels
    for stage in STAGE_NAMES[: STAGE_NAMES.index(last_stage) + 1]:
        stages.append(
            make_resnet_stage(
                depth, stage, in_channels=channels, res2_out_channels=res2_out_channels,
                stride_in_1x1=stride_in_1x1, norm=norm, residual=residual, shortcut=shortcut,
            )
        )
        channels = stages[-1][-1].out_channels
    return ResNet(stem, stages, out_features=out_features, freeze_at=freeze_at)


def check_shortcut(shortcut):
    if shortcut not in SHORTCUT_OPTIONS:
        raise ValueError(
            f"MODEL.RESNET_BACKBONE.SHORTCUT={shortcut!r} is unknown; use one of "
            f"{SHORTCUT_OPTIONS} (A: zero-padded identity, B: projection where the shape "
            "changes, C: projection everywhere)"
        )


def read_resnet_config(cfg, reader="build_paper_resnet_backbone"):
    """Keyword options of `make_resnet` (and the C4 head) from a Detectron2 config: the
    architecture fields (`fields.FIELDS`), the output features and the frozen stages; the one
    place a configuration is validated, every rejection naming the config key at fault.
    `reader` (the builder or head asking) is named when the config lacks this package's keys."""
    check_has_keys(cfg, reader)
    r = cfg.MODEL.RESNETS
    options = builder_arguments(cfg)
    # fmt: off
    depth             = options["depth"]
    res2_out_channels = options["res2_out_channels"]
    out_features      = list(r.OUT_FEATURES)
    freeze_at         = cfg.MODEL.BACKBONE.FREEZE_AT
    # fmt: on
    if depth not in DEPTH_TABLE:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH={depth!r} is not a depth of the paper's Table 1; "
            f"use one of {sorted(DEPTH_TABLE)}"
        )
    check_shortcut(options["shortcut"])
    if DEPTH_TABLE[depth][0] is BasicBlock and res2_out_channels != 64:
        raise ValueError(
            f"MODEL.RESNETS.RES2_OUT_CHANNELS={res2_out_channels} but ResNet-{depth} has "
            "64 channels in res2; set MODEL.RESNETS.RES2_OUT_CHANNELS to 64"
        )
    unsupported = {
        "MODEL.RESNETS.NUM_GROUPS": (r.NUM_GROUPS, 1),
        "MODEL.RESNETS.WIDTH_PER_GROUP": (r.WIDTH_PER_GROUP, 64),
        "MODEL.RESNETS.RES5_DILATION": (r.RES5_DILATION, 1),
        "MODEL.RESNETS.DEFORM_ON_PER_STAGE": (list(r.DEFORM_ON_PER_STAGE), [False] * 4),
    }
    for key, (value, paper_value) in unsupported.items():
        if value != paper_value:
            raise ValueError(
                f"{key}={value} is not supported by build_paper_resnet_backbone (the paper's "
                f"networks use {paper_value}); use Detectron2's build_resnet_backbone for it"
            )
    available = ("stem",) + STAGE_NAMES
    unknown = [f for f in out_features if f not in available]
    if unknown or not out_features:
        raise ValueError(
            f"MODEL.RESNETS.OUT_FEATURES={out_features} names {unknown or 'nothing'}; "
            f"the network produces {list(available)}"
        )
    built = available[: available.index(last_stage_for(out_features)) + 1]
    if not 0 <= freeze_at <= len(built):
        raise ValueError(
            f"MODEL.BACKBONE.FREEZE_AT={freeze_at} freezes past the last stage built "
            f"({built[-1]}, the last of MODEL.RESNETS.OUT_FEATURES={out_features}); "
            f"use 0..{len(built)}"
        )
    return dict(options, out_features=out_features, freeze_at=freeze_at)


def differences_from_detectron2_res5(depth, residual, shortcut, **unused_options):
    """What of a network's res5 Detectron2's `Res5ROIHeads` would not build, as config
    settings described in words; empty for R-50/101/152 with shortcut option B."""
    differences = []
    if DEPTH_TABLE[depth][0] is not BottleneckBlock:
        differences.append(f"MODEL.RESNETS.DEPTH={depth} (basic blocks)")
    if not residual:
        differences.append("MODEL.RESNET_BACKBONE.RESIDUAL=False (a plain net, no shortcuts)")
    elif shortcut != "B":
        differences.append(f"MODEL.RESNET_BACKBONE.SHORTCUT={shortcut!r}")
    return differences


@BACKBONE_REGISTRY.register()
def build_paper_resnet_backbone(cfg, input_shape):
    """ResNet/plain net of the paper from `MODEL.RESNETS.*`, `MODEL.RESNET_BACKBONE.*` and
    `MODEL.BACKBONE.FREEZE_AT`; stops a config whose RoI heads could not continue it."""
    options = read_resnet_config(cfg)
    check_detectron2_res5_fits(cfg, differences_from_detectron2_res5(**options))
    return make_resnet(in_channels=input_shape.channels, **options)
