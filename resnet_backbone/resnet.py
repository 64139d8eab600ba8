"""Residual and plain networks of He et al. 2015 (Table 1) as a Detectron2 `Backbone`.

Parameter names follow Detectron2's ResNet (`stem.conv1`, `res2.0.conv1.norm`, `shortcut`) so
Detectron2's own MSRA checkpoints and the converters in `convert.py` load without renaming.
What Detectron2's ResNet lacks and the paper has: shortcut options A/B/C (Sec. 3.3), plain
counterparts without shortcuts (Sec. 4.1), and basic blocks in every design, including the C4
RoI head (see `roi_heads.py`).
"""
import math

import torch.nn.functional as F
from fvcore.nn.weight_init import c2_msra_fill
from torch import nn

from detectron2.layers import CNNBlockBase, Conv2d, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

SHORTCUT_OPTIONS = ("A", "B", "C")
STAGE_NAMES = ("res2", "res3", "res4", "res5")


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
    if option not in SHORTCUT_OPTIONS:
        raise ValueError(f"shortcut option must be one of {SHORTCUT_OPTIONS}, got {option!r}")
    shape_changes = in_channels != out_channels or stride != 1
    if option == "C" or (option == "B" and shape_changes):
        conv = Conv2d(
            in_channels, out_channels, kernel_size=1, stride=stride, bias=False,
            norm=get_norm(norm, out_channels),
        )
        c2_msra_fill(conv)
        return conv
    if shape_changes:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return None


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

    def branch(self, x):
        raise NotImplementedError

    def forward(self, x):
        out = self.branch(x)
        if self.residual:
            # In place, as Detectron2's blocks do: the branch output is not kept for backward.
            out += self.shortcut(x) if self.shortcut is not None else x
        return F.relu_(out)


def _conv_norm(in_channels, out_channels, kernel_size, stride, norm):
    conv = Conv2d(
        in_channels, out_channels, kernel_size=kernel_size, stride=stride,
        padding=kernel_size // 2, bias=False, norm=get_norm(norm, out_channels),
    )
    c2_msra_fill(conv)
    return conv


class BasicBlock(ResidualBlockBase):
    """Two 3x3 convs (ResNet-18/34). `bottleneck_channels`/`stride_in_1x1` are accepted and
    ignored so that every block type takes the same keyword arguments."""

    def __init__(
        self, in_channels, out_channels, *, stride=1, norm="BN", residual=True, shortcut="B",
        bottleneck_channels=None, stride_in_1x1=False,
    ):
        super().__init__(
            in_channels, out_channels, stride, residual=residual, shortcut=shortcut, norm=norm
        )
        self.conv1 = _conv_norm(in_channels, out_channels, 3, stride, norm)
        self.conv2 = _conv_norm(out_channels, out_channels, 3, 1, norm)

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
        self.conv1 = _conv_norm(in_channels, bottleneck_channels, 1, stride_1x1, norm)
        self.conv2 = _conv_norm(bottleneck_channels, bottleneck_channels, 3, stride_3x3, norm)
        self.conv3 = _conv_norm(bottleneck_channels, out_channels, 1, 1, norm)

    def branch(self, x):
        x = F.relu_(self.conv1(x))
        x = F.relu_(self.conv2(x))
        return self.conv3(x)


# Paper Table 1: block type and number of blocks in conv2_x..conv5_x (res2..res5).
DEPTH_TABLE = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (BottleneckBlock, (3, 4, 6, 3)),
    101: (BottleneckBlock, (3, 4, 23, 3)),
    152: (BottleneckBlock, (3, 8, 36, 3)),
}


class BasicStem(CNNBlockBase):
    """conv1: 7x7/2 conv + norm + ReLU, then the 3x3/2 max-pool of conv2_x; stride 4 in all."""

    def __init__(self, in_channels=3, out_channels=64, *, norm="BN"):
        super().__init__(in_channels, out_channels, 4)
        self.conv1 = Conv2d(
            in_channels, out_channels, kernel_size=7, stride=2, padding=3, bias=False,
            norm=get_norm(norm, out_channels),
        )
        c2_msra_fill(self.conv1)

    def forward(self, x):
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


def make_stage(
    block_class, num_blocks, *, in_channels, out_channels, bottleneck_channels, first_stride,
    norm, stride_in_1x1, residual, shortcut,
):
    """The blocks of one stage; only the first changes stride and width."""
    blocks = []
    for index in range(num_blocks):
        blocks.append(
            block_class(
                in_channels if index == 0 else out_channels,
                out_channels,
                bottleneck_channels=bottleneck_channels,
                stride=first_stride if index == 0 else 1,
                norm=norm,
                stride_in_1x1=stride_in_1x1,
                residual=residual,
                shortcut=shortcut,
            )
        )
    return blocks


def stage_widths(depth, stage_index, *, res2_out_channels=None, bottleneck_width=64):
    """(out_channels, bottleneck_channels) of res{stage_index + 2}; widths double per stage."""
    block_class, _ = DEPTH_TABLE[depth]
    factor = 2**stage_index
    if block_class is BasicBlock:
        return 64 * factor, None
    res2_out_channels = res2_out_channels or 4 * bottleneck_width
    return res2_out_channels * factor, bottleneck_width * factor


class ResNet(Backbone):
    """Stem plus the stages res2..res{last}; returns the requested features by name."""

    def __init__(self, stem, stages, *, out_features, freeze_at=0):
        super().__init__()
        if len(stages) > len(STAGE_NAMES):
            raise ValueError(f"at most {len(STAGE_NAMES)} stages, got {len(stages)}")
        self.stem = stem
        self._out_feature_strides = {"stem": stem.stride}
        self._out_feature_channels = {"stem": stem.out_channels}
        self.stage_names = STAGE_NAMES[: len(stages)]
        stride = stem.stride
        for name, blocks in zip(self.stage_names, stages):
            self.add_module(name, nn.Sequential(*blocks))
            stride *= math.prod(block.stride for block in blocks)
            self._out_feature_strides[name] = stride
            self._out_feature_channels[name] = blocks[-1].out_channels
        unknown = [f for f in out_features if f not in self._out_feature_channels]
        if unknown:
            raise ValueError(
                f"out_features {unknown} are not produced; available: "
                f"{list(self._out_feature_channels)}"
            )
        self._out_features = list(out_features)
        self.freeze(freeze_at)

    def freeze(self, freeze_at):
        """Freeze the stem (freeze_at >= 1) and res2..res{freeze_at} (>= 2): no gradients,
        BatchNorm turned into FrozenBN."""
        if not 0 <= freeze_at <= 1 + len(self.stage_names):
            raise ValueError(
                f"freeze_at={freeze_at} is past the last stage built "
                f"({self.stage_names[-1] if self.stage_names else 'stem'})"
            )
        if freeze_at >= 1:
            self.stem.freeze()
        for name in self.stage_names[: max(freeze_at - 1, 0)]:
            for block in getattr(self, name):
                block.freeze()
        return self

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError(f"ResNet takes (N, C, H, W) inputs, got shape {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs


def last_stage_for(out_features):
    """The deepest stage any of `out_features` needs (res2 when only the stem is asked for)."""
    needed = [STAGE_NAMES.index(f) for f in out_features if f in STAGE_NAMES]
    return STAGE_NAMES[max(needed, default=0)]


def make_resnet(
    depth, *, residual=True, shortcut="B", stride_in_1x1=True, norm="FrozenBN",
    out_features=None, freeze_at=0, in_channels=3, stem_out_channels=64,
    res2_out_channels=None, last_stage=None,
):
    """Build ResNet-`depth` (or its plain counterpart) up to `last_stage` (default: the last
    stage any out feature needs, res5 when `out_features` is None)."""
    if depth not in DEPTH_TABLE:
        raise ValueError(f"depth must be one of {sorted(DEPTH_TABLE)}, got {depth!r}")
    block_class, blocks_per_stage = DEPTH_TABLE[depth]
    out_features = list(out_features or ["res5"])
    last_stage = last_stage or last_stage_for(out_features)
    num_stages = STAGE_NAMES.index(last_stage) + 1
    stem = BasicStem(in_channels, stem_out_channels, norm=norm)
    stages, channels = [], stem_out_channels
    for index in range(num_stages):
        out_channels, bottleneck_channels = stage_widths(
            depth, index, res2_out_channels=res2_out_channels
        )
        stages.append(
            make_stage(
                block_class, blocks_per_stage[index],
                in_channels=channels, out_channels=out_channels,
                bottleneck_channels=bottleneck_channels,
                first_stride=1 if index == 0 else 2,
                norm=norm, stride_in_1x1=stride_in_1x1, residual=residual, shortcut=shortcut,
            )
        )
        channels = out_channels
    return ResNet(stem, stages, out_features=out_features, freeze_at=freeze_at)


def read_resnet_config(cfg):
    """Validated keyword options for `make_resnet` / the C4 head from a Detectron2 config.
    Every rejection names the config key at fault."""
    r = cfg.MODEL.RESNETS
    # fmt: off
    depth             = r.DEPTH
    shortcut          = cfg.MODEL.RESNET_BACKBONE.SHORTCUT
    residual          = cfg.MODEL.RESNET_BACKBONE.RESIDUAL
    res2_out_channels = r.RES2_OUT_CHANNELS
    # fmt: on
    if depth not in DEPTH_TABLE:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH={depth!r} is not a depth of the paper's Table 1; "
            f"use one of {sorted(DEPTH_TABLE)}"
        )
    if shortcut not in SHORTCUT_OPTIONS:
        raise ValueError(
            f"MODEL.RESNET_BACKBONE.SHORTCUT={shortcut!r} is unknown; use one of "
            f"{SHORTCUT_OPTIONS} (A: zero-padded identity, B: projection where the shape "
            "changes, C: projection everywhere)"
        )
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
    return dict(
        depth=depth,
        residual=residual,
        shortcut=shortcut,
        stride_in_1x1=r.STRIDE_IN_1X1,
        norm=r.NORM,
        stem_out_channels=r.STEM_OUT_CHANNELS,
        res2_out_channels=res2_out_channels,
    )


@BACKBONE_REGISTRY.register()
def build_paper_resnet_backbone(cfg, input_shape):
    """ResNet/plain net of the paper from `MODEL.RESNETS.*`, `MODEL.RESNET_BACKBONE.*` and
    `MODEL.BACKBONE.FREEZE_AT`."""
    options = read_resnet_config(cfg)
    out_features = list(cfg.MODEL.RESNETS.OUT_FEATURES)
    freeze_at = cfg.MODEL.BACKBONE.FREEZE_AT
    available = ("stem",) + STAGE_NAMES
    unknown = [f for f in out_features if f not in available]
    if unknown or not out_features:
        raise ValueError(
            f"MODEL.RESNETS.OUT_FEATURES={out_features} names {unknown or 'nothing'}; "
            f"the network produces {list(available)}"
        )
    last_stage = last_stage_for(out_features)
    built = ["stem", *STAGE_NAMES[: STAGE_NAMES.index(last_stage) + 1]]
    if not 0 <= freeze_at <= len(built):
        raise ValueError(
            f"MODEL.BACKBONE.FREEZE_AT={freeze_at} freezes past the last stage built "
            f"({built[-1]}, the last of MODEL.RESNETS.OUT_FEATURES={out_features}); "
            f"use 0..{len(built)}"
        )
    return make_resnet(
        in_channels=input_shape.channels,
        out_features=out_features,
        freeze_at=freeze_at,
        last_stage=last_stage,
        **options,
    )
