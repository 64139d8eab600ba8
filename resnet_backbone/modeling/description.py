"""The record of a network, read from its built modules, and the names a user sets it by.

`describe(backbone)` derives depth, block type, plain or residual, shortcut option, stride
placement, stem, widths and norm from the modules of a built backbone (this package's ResNets,
Detectron2's own `build_resnet_backbone`, an FPN over either, VGG-16), so a record cannot drift
from what was built; it reads no tensor value, so a model built under
`with torch.device("meta"):` is described as well. `describe_res5` describes a C4 head's res5 in
the same terms. Checkpoint metadata (`metadata.py`), the weights check (`checkpoint.py`) and the
wrong-head guard (`roi_heads.check_head_fits`) read these records; `Naming` says a field's name
on the YAML route (a config key) or on a lazy route (a field of the LazyConfig).
"""
from dataclasses import dataclass
from typing import Optional

from torch import nn

from detectron2.layers import FrozenBatchNorm2d, NaiveSyncBatchNorm
from detectron2.modeling.backbone import resnet as d2_resnet
from detectron2.modeling.backbone.fpn import FPN

from ..fields import FIELDS
from .resnet import DEPTH_TABLE, STAGE_NAMES, BasicBlock, BottleneckBlock, ZeroPadShortcut
from .vgg import VGG16

# The backbone families this package knows, as the prefix of a record's "arch".
FAMILIES = ("resnet", "vgg")
BLOCK_KINDS = {
    BasicBlock: "basic",
    BottleneckBlock: "bottleneck",
    d2_resnet.BasicBlock: "basic",
    d2_resnet.BottleneckBlock: "bottleneck",
}
BLOCK_CLASSES = {"basic": BasicBlock, "bottleneck": BottleneckBlock}
STEM_KINDS = {d2_resnet.BasicStem: "basic"}
# Detectron2's `get_norm` names of the norm layers (exact types: SyncBN subclasses BN).
NORM_NAMES = {
    FrozenBatchNorm2d: "FrozenBN",
    nn.BatchNorm2d: "BN",
    nn.SyncBatchNorm: "SyncBN",
    NaiveSyncBatchNorm: "naiveSyncBN",
    nn.GroupNorm: "GN",
}


def family(arch):
    """"resnet" / "vgg" for a record's arch ("resnet50", "vgg16"), else None: the one place a
    backbone's family is decided."""
    return next((name for name in FAMILIES if arch.startswith(name)), None)


def _norm_name(norm):
    if norm is None:
        return ""
    return NORM_NAMES.get(type(norm), type(norm).__name__)


def _shortcut_option(blocks):
    """"A" / "B" / "C" for the shortcuts of residual `blocks`, None for another pattern."""
    def kind(block):
        if isinstance(block.shortcut, ZeroPadShortcut):
            return "pad"
        return "identity" if block.shortcut is None else "projection"

    found = [(kind(block), block.in_channels != block.out_channels or block.stride != 1)
             for block in blocks]
    options = {
        "B": lambda changes: "projection" if changes else "identity",
        "A": lambda changes: "pad" if changes else "identity",
        "C": lambda changes: "projection",
    }
    return next((option for option, expected in options.items()
                 if all(kind == expected(changes) for kind, changes in found)), None)


def _describe_blocks(blocks):
    """block, residual, shortcut, stride_in_1x1 and norm of a sequence of residual blocks of one
    kind; None for blocks this package does not know (ResNeXt groups, dilation, deformable)."""
    kinds = {BLOCK_KINDS.get(type(block)) for block in blocks}
    if len(kinds) != 1 or None in kinds:
        return None
    (kind,) = kinds
    if kind == "bottleneck" and any(block.conv2.groups != 1 or tuple(block.conv2.dilation) !=
                                    (1, 1) for block in blocks):
        return None
    residual = {getattr(block, "residual", True) for block in blocks}  # Detectron2's always are
    if len(residual) != 1:
        return None
    (residual,) = residual
    record = {"block": kind, "residual": residual, "norm": _norm_name(blocks[-1].conv1.norm)}
    if residual:
        record["shortcut"] = _shortcut_option(blocks)
        if record["shortcut"] is None:
            return None
    strided = [block for block in blocks if block.stride != 1]
    if kind == "bottleneck" and strided:
        record["stride_in_1x1"] = tuple(strided[0].conv1.stride) != (1, 1)
    return record


def _depth(kind, counts):
    """The depth of DEPTH_TABLE whose blocks per stage start with `counts`, if only one does."""
    depths = [depth for depth, (block_class, layout) in DEPTH_TABLE.items()
              if block_class is BLOCK_CLASSES[kind] and tuple(layout[:len(counts)]) == counts]
    return depths[0] if len(depths) == 1 else None


def describe(backbone):
    """The record of a built backbone: {"arch": "vgg16"} for VGG-16; for a ResNet or plain net
    "arch" ("resnet50"), "block" and the fields of `fields.FIELDS` that apply to it (the norm
    of its trainable stages: frozen ones hold FrozenBN whatever it was built with). An FPN is
    described by its bottom-up network. None for backbones this package does not know (a
    CIFAR-10 network, ResNeXt, a ResNet built only to res3, whose depth is ambiguous)."""
    if isinstance(backbone, FPN):
        backbone = backbone.bottom_up
    if isinstance(backbone, VGG16):
        return {"arch": "vgg16"}
    if not isinstance(backbone, d2_resnet.ResNet) or type(backbone.stem) not in STEM_KINDS:
        return None
    stages = dict(zip(backbone.stage_names, backbone.stages))
    if list(stages) != list(STAGE_NAMES[:len(stages)]):
        return None
    record = _describe_blocks([block for stage in stages.values() for block in stage])
    if record is None:
        return None
    depth = _depth(record["block"], tuple(len(stage) for stage in stages.values()))
    if depth is None:
        return None
    values = dict(record, depth=depth, stem=STEM_KINDS[type(backbone.stem)],
                  stem_out_channels=backbone.stem.out_channels,
                  res2_out_channels=stages["res2"][-1].out_channels)
    described = {"arch": f"resnet{depth}", "block": record["block"]}
    described.update((field.name, values[field.name]) for field in FIELDS
                     if field.applies(values) and values.get(field.name) is not None)
    return described


def describe_res5(res5):
    """The record of a C4 head's res5 (this package's `make_res5` or Detectron2's
    `Res5ROIHeads`): "block", "blocks", "in_channels", "out_channels", "residual", "shortcut",
    "stride_in_1x1" (bottlenecks) and "norm"; None for blocks this package does not know."""
    blocks = list(res5)
    record = _describe_blocks(blocks)
    if record is None:
        return None
    return dict(record, blocks=len(blocks), in_channels=blocks[0].in_channels,
                out_channels=blocks[-1].out_channels)


def continuing_res5(record):
    """What `describe_res5` gives for the res5 that continues the ResNet `record` describes
    (its own conv5_x), less the norm; None for records of other families."""
    if family(record["arch"]) != "resnet":
        return None
    depth = record["depth"]
    expected = {
        "block": record["block"],
        "blocks": DEPTH_TABLE[depth][1][3],
        "in_channels": record["res2_out_channels"] * 4,
        "out_channels": record["res2_out_channels"] * 8,
        "residual": record["residual"],
    }
    expected.update((name, record[name]) for name in ("shortcut", "stride_in_1x1")
                    if name in record)
    return expected


def record_of_metadata(metadata):
    """The record a file's metadata holds ("arch" and the fields), with the depth and block
    type of a ResNet filled in from its arch where older files lack them."""
    names = {"arch", "block"} | {field.name for field in FIELDS}
    record = {name: value for name, value in metadata.items() if name in names}
    arch = record["arch"]
    if family(arch) == "resnet" and arch[len("resnet"):].isdigit():
        depth = record.setdefault("depth", int(arch[len("resnet"):]))
        if depth in DEPTH_TABLE:
            record.setdefault("block", "bottleneck" if DEPTH_TABLE[depth][0] is BottleneckBlock
                              else "basic")
    return record


@dataclass(frozen=True)
class Naming:
    """Where a run's user sets what a record holds: Detectron2 config keys (`YACS`), or the
    fields of a LazyConfig whose model is at `lazy_prefix` (`lazy_naming()`)."""

    lazy_prefix: Optional[str] = None

    @property
    def lazy(self):
        return self.lazy_prefix is not None

    @property
    def weights(self):
        """The setting that names the weights a run starts from."""
        return "train.init_checkpoint" if self.lazy else "MODEL.WEIGHTS"

    @property
    def backbone(self):
        """The setting that chooses the backbone."""
        return f"{self.lazy_prefix}.backbone" if self.lazy else "MODEL.BACKBONE.NAME"

    @property
    def pixels(self):
        """The settings of the input format, pixel mean and pixel std."""
        if self.lazy:
            return tuple(f"{self.lazy_prefix}.{name}"
                         for name in ("input_format", "pixel_mean", "pixel_std"))
        return ("INPUT.FORMAT", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD")

    def field(self, field, *, fpn=False):
        """The setting of `field` (a `fields.Field`) of the backbone (the bottom-up network of
        an FPN when `fpn`); None where it has none."""
        if not self.lazy:
            return field.key
        if field.argument is None:
            return None
        return f"{self.backbone}{'.bottom_up' if fpn else ''}.{field.argument}"

    def setting(self, name, value):
        """How `name` is set to `value` (text) on a command line: `KEY value` / `field=value`."""
        return f"{name}={value}" if self.lazy else f"{name} {value}"


YACS = Naming()


def lazy_naming(prefix="model"):
    """The naming of a LazyConfig route whose model is the config's `prefix` field."""
    return Naming(prefix)


def required_settings(record, naming=YACS, *, fpn=False):
    """[(setting, value)] of the fields of `record` that a network must share to take the
    weights it describes, as `naming` names them (fields without a setting left out)."""
    settings = []
    for field in FIELDS:
        name = naming.field(field, fpn=fpn)
        if field.required and name and field.name in record and field.applies(record):
            settings.append((name, record[field.name]))
    return settings
