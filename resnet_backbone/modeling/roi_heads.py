"""The paper's C4 detection head: RoI pooling on res4, then conv5_x run on every RoI.

Detectron2's `Res5ROIHeads` always builds bottleneck blocks with projection shortcuts, so
ResNet-18/34, plain nets and shortcut options A/C could not use the paper's design. This head
builds res5 from the same depth table and options as the backbone.
"""
import inspect

import torch
from torch import nn

from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads

from ..fields import FIELDS
from .description import YACS, continuing_res5, describe, describe_res5
from .resnet import make_resnet_stage, read_resnet_config, stage_out_channels


def make_res5(
    depth, *, residual=True, shortcut="B", stride_in_1x1=True, norm="FrozenBN",
    res2_out_channels=None, **unused_backbone_options,
):
    """conv5_x of ResNet-`depth` as an nn.Sequential named like the backbone's `res5`. Its first
    block has stride 2, so 14x14 RoIs come out 7x7 (paper Sec. A). Returns the module alone so
    that it can be the `res5` of a head in a LazyConfig (`L(make_res5)(depth=...)`); its output
    channels are `stage_out_channels(depth, "res5", res2_out_channels)`."""
    blocks = make_resnet_stage(
        depth, "res5",
        in_channels=stage_out_channels(depth, "res4", res2_out_channels),
        res2_out_channels=res2_out_channels, stride_in_1x1=stride_in_1x1,
        norm=norm, residual=residual, shortcut=shortcut,
    )
    return nn.Sequential(*blocks)


def make_res5_head(depth, **options):
    """`make_res5(depth, **options)` and its output channels (Res5ROIHeads' `_build_res5_block`
    returns both)."""
    res5 = make_res5(depth, **options)
    return res5, res5[-1].out_channels


@ROI_HEADS_REGISTRY.register()
class PaperRes5ROIHeads(Res5ROIHeads):
    """`Res5ROIHeads` whose res5 follows `MODEL.RESNETS.*` and `MODEL.RESNET_BACKBONE.*`."""

    # A constant for TorchScript, so that torch.jit.script drops the mask branch of a detector
    # without masks instead of failing on the absent `mask_head` (Detectron2 marks
    # StandardROIHeads.mask_on so when scripting, but not Res5ROIHeads.mask_on).
    mask_on: torch.jit.Final[bool]

    @classmethod
    def _build_res5_block(cls, cfg):
        options = read_resnet_config(cfg, "PaperRes5ROIHeads")
        if "res5" in options["out_features"]:
            raise ValueError(
                f"MODEL.RESNETS.OUT_FEATURES={options['out_features']} includes res5, but with "
                "MODEL.ROI_HEADS.NAME=PaperRes5ROIHeads res5 runs per RoI in the head; "
                "stop the backbone at res4"
            )
        return make_res5_head(**options)


def _make_res5_call(record):
    """`L(make_res5)(...)` with the backbone's fields that make_res5 takes, as text."""
    taken = inspect.signature(make_res5).parameters
    arguments = [f"{field.argument}={record[field.name]!r}" for field in FIELDS
                 if field.argument in taken and field.name in record]
    return f"L(make_res5)({', '.join(arguments)})"


def check_head_fits(model, naming=YACS):
    """Raise ValueError when `model` (a detector, built or a skeleton built under
    `with torch.device("meta"):`, by any route) has a C4 head whose res5 does not continue its
    backbone: the block type, plain or residual, shortcut option, stride placement, number of
    blocks or input channels of `describe_res5(roi_heads.res5)` differ from the backbone's own
    conv5_x (Detectron2's `Res5ROIHeads` after ResNet-18/34, a plain net or shortcut A/C). The
    message names the setting to change as `naming` names it. Models without a res5 head, and
    backbones or heads `describe` does not know, pass."""
    model = getattr(model, "module", model)
    heads = getattr(model, "roi_heads", None)
    res5 = getattr(heads, "res5", None)
    backbone = describe(getattr(model, "backbone", None))
    if res5 is None or backbone is None:
        return
    expected, built = continuing_res5(backbone), describe_res5(res5)
    if expected is None or built is None:
        return
    differences = [f"{name} {built.get(name)!r} where the backbone's conv5_x has {value!r}"
                   for name, value in expected.items() if built.get(name) != value]
    if not differences:
        return
    if naming.lazy:
        fix = (f"Set {naming.lazy_prefix}.roi_heads.res5 to {_make_res5_call(backbone)} (from "
               "resnet_backbone.modeling.roi_heads: the backbone's fields), whose output has "
               f"{expected['out_channels']} channels")
    else:
        fix = ("Set MODEL.ROI_HEADS.NAME PaperRes5ROIHeads, which builds res5 from the "
               "backbone's own settings")
    raise ValueError(
        f"the res5 of the RoI heads ({type(heads).__name__}) does not continue the backbone "
        f"({backbone['arch']}): it has {'; '.join(differences)}, so the head would not be this "
        f"network's conv5_x. {fix}"
    )
