"""A config pairing Detectron2's Res5ROIHeads with a backbone whose res5 it cannot build (basic
blocks, plain, shortcut A/C) stops in build_model, naming MODEL.ROI_HEADS.NAME and the head to
use; configs Res5ROIHeads can serve, and models without RoI heads, still build."""
import pytest
from detectron2.modeling import ROI_HEADS_REGISTRY, build_model
from detectron2.modeling.roi_heads import Res5ROIHeads

from conftest import fast_subset


@ROI_HEADS_REGISTRY.register()
class _TestHeadsKeepingDetectron2Res5(Res5ROIHeads):
    """A user's Res5ROIHeads subclass that changes something other than res5."""


@ROI_HEADS_REGISTRY.register()
class _TestHeadsWithTheirOwnRes5(Res5ROIHeads):
    """Old-style code: its own res5 builder, a plain function (Detectron2 accepts that)."""

    def _build_res5_block(cls, cfg):  # noqa: N805 (no @classmethod, as old code had it)
        return Res5ROIHeads._build_res5_block(cfg)


def detector_cfg(shipped_config, depth, heads, *options):
    """The shipped C4 detector of `depth` with RoI heads `heads` and `options` (KEY value ...)."""
    return shipped_config(f"PascalVOC-Detection/resnet{depth}_c4_voc0712.yaml",
                          "MODEL.ROI_HEADS.NAME", heads, *options)


SHORTCUT, RESIDUAL = "MODEL.RESNET_BACKBONE.SHORTCUT", "MODEL.RESNET_BACKBONE.RESIDUAL"


BACKBONES = [
    (18, (), "MODEL.RESNETS.DEPTH=18 (basic blocks)"),
    (34, (SHORTCUT, "A"), "MODEL.RESNETS.DEPTH=34 (basic blocks); "
                          "MODEL.RESNET_BACKBONE.SHORTCUT='A'"),
    (50, (RESIDUAL, False), "MODEL.RESNET_BACKBONE.RESIDUAL=False (a plain net"),
    (50, (SHORTCUT, "A"), "MODEL.RESNET_BACKBONE.SHORTCUT='A'"),
    (101, (SHORTCUT, "C"), "MODEL.RESNET_BACKBONE.SHORTCUT='C'"),
]
HEADS = ["Res5ROIHeads", "_TestHeadsKeepingDetectron2Res5"]


# Every backbone with both heads under `make test`; in the fast subset every backbone with
# Detectron2's Res5ROIHeads and one with the subclass.
@pytest.mark.parametrize("heads, depth, options, named", fast_subset(
    [(heads, *backbone) for heads in HEADS for backbone in BACKBONES],
    fast=[(HEADS[0], *backbone) for backbone in BACKBONES] + [(HEADS[1], *BACKBONES[0])]),
    ids=[f"{heads}-{depth}-" + ("plain" if RESIDUAL in options else (options or "_B")[1])
         for heads in HEADS for depth, options, _ in BACKBONES])
def test_detectron2_res5_with_a_backbone_it_cannot_continue_stops(shipped_config, heads, depth,
                                                                   options, named):
    cfg = detector_cfg(shipped_config, depth, heads, *options)
    with pytest.raises(ValueError) as error:
        build_model(cfg)
    message = str(error.value)
    assert message.startswith(f"MODEL.ROI_HEADS.NAME='{heads}' builds Detectron2's res5")
    assert named in message
    assert "Set MODEL.ROI_HEADS.NAME PaperRes5ROIHeads" in message
    cfg.MODEL.ROI_HEADS.NAME = "PaperRes5ROIHeads"  # the fix the message gives
    res5 = build_model(cfg).roi_heads.res5
    assert type(res5[0]).__name__ == ("BasicBlock" if depth < 50 else "BottleneckBlock")


def test_configs_detectron2_res5_can_serve_still_build(shipped_config):
    # R-50, shortcut B: the same res5
    model = build_model(detector_cfg(shipped_config, 50, "Res5ROIHeads"))
    assert type(model.roi_heads) is Res5ROIHeads
    # Heads that build no res5 of their own, and a meta-architecture without RoI heads
    fpn = shipped_config("PascalVOC-Detection/resnet50_fpn_voc0712.yaml", RESIDUAL, False)
    assert fpn.MODEL.ROI_HEADS.NAME == "StandardROIHeads"
    build_model(fpn)
    build_model(detector_cfg(shipped_config, 50, "_TestHeadsWithTheirOwnRes5",
                             SHORTCUT, "A"))  # its own business
    build_model(detector_cfg(shipped_config, 18, "Res5ROIHeads",
                             "MODEL.META_ARCHITECTURE", "ProposalNetwork"))


def test_classifiers_ignore_the_default_roi_heads_name(shipped_config):
    cfg = shipped_config("ImageNet-Classification/plain18.yaml")
    assert cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeads"  # Detectron2's default, never built
    build_model(cfg)
