"""A config pairing Detectron2's Res5ROIHeads with a backbone whose res5 it cannot build (basic
blocks, plain, shortcut A/C) stops in build_model, naming MODEL.ROI_HEADS.NAME and the head to
use; configs Res5ROIHeads can serve, and models without RoI heads, still build."""
import pytest
from detectron2.config import get_cfg
from detectron2.modeling import ROI_HEADS_REGISTRY, build_model
from detectron2.modeling.roi_heads import Res5ROIHeads

import resnet_backbone.classification  # noqa: F401 (the classifiers' configs need their keys)
from resnet_backbone import add_resnet_backbone_config, model_zoo


@ROI_HEADS_REGISTRY.register()
class _TestHeadsKeepingDetectron2Res5(Res5ROIHeads):
    """A user's Res5ROIHeads subclass that changes something other than res5."""


@ROI_HEADS_REGISTRY.register()
class _TestHeadsWithTheirOwnRes5(Res5ROIHeads):
    """Old-style code: its own res5 builder, a plain function (Detectron2 accepts that)."""

    def _build_res5_block(cls, cfg):  # noqa: N805 (no @classmethod, as old code had it)
        return Res5ROIHeads._build_res5_block(cfg)


def detector_cfg(depth, heads, **paper_options):
    cfg = add_resnet_backbone_config(get_cfg())
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_paper_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64 if depth < 50 else 256
    cfg.MODEL.ROI_HEADS.NAME = heads
    for key, value in paper_options.items():
        setattr(cfg.MODEL.RESNET_BACKBONE, key, value)
    return cfg


@pytest.mark.parametrize("depth, options, named", [
    (18, {}, "MODEL.RESNETS.DEPTH=18 (basic blocks)"),
    (34, {"SHORTCUT": "A"}, "MODEL.RESNETS.DEPTH=34 (basic blocks); "
                            "MODEL.RESNET_BACKBONE.SHORTCUT='A'"),
    (50, {"RESIDUAL": False}, "MODEL.RESNET_BACKBONE.RESIDUAL=False (a plain net"),
    (50, {"SHORTCUT": "A"}, "MODEL.RESNET_BACKBONE.SHORTCUT='A'"),
    (101, {"SHORTCUT": "C"}, "MODEL.RESNET_BACKBONE.SHORTCUT='C'"),
])
@pytest.mark.parametrize("heads", ["Res5ROIHeads", "_TestHeadsKeepingDetectron2Res5"])
def test_detectron2_res5_with_a_backbone_it_cannot_continue_stops(depth, options, named, heads):
    cfg = detector_cfg(depth, heads, **options)
    with pytest.raises(ValueError) as error:
        build_model(cfg)
    message = str(error.value)
    assert message.startswith(f"MODEL.ROI_HEADS.NAME='{heads}' builds Detectron2's res5")
    assert named in message
    assert "Set MODEL.ROI_HEADS.NAME PaperRes5ROIHeads" in message
    cfg.MODEL.ROI_HEADS.NAME = "PaperRes5ROIHeads"  # the fix the message gives
    res5 = build_model(cfg).roi_heads.res5
    assert type(res5[0]).__name__ == ("BasicBlock" if depth < 50 else "BottleneckBlock")


def test_configs_detectron2_res5_can_serve_still_build():
    model = build_model(detector_cfg(50, "Res5ROIHeads"))  # R-50, shortcut B: the same res5
    assert type(model.roi_heads) is Res5ROIHeads
    # Heads that build no res5 of their own, and a meta-architecture without RoI heads
    fpn = detector_cfg(18, "StandardROIHeads", RESIDUAL=False)
    fpn.MODEL.BACKBONE.NAME = "build_paper_resnet_fpn_backbone"
    fpn.MODEL.RESNETS.OUT_FEATURES = fpn.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    fpn.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
    fpn.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    fpn.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    fpn.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    build_model(fpn)
    build_model(detector_cfg(50, "_TestHeadsWithTheirOwnRes5", SHORTCUT="A"))  # its own business
    proposals = detector_cfg(18, "Res5ROIHeads")
    proposals.MODEL.META_ARCHITECTURE = "ProposalNetwork"
    build_model(proposals)


def test_classifiers_ignore_the_default_roi_heads_name():
    cfg = model_zoo.get_config("ImageNet-Classification/plain18.yaml")
    assert cfg.MODEL.ROI_HEADS.NAME == "Res5ROIHeads"  # Detectron2's default, never built
    cfg.MODEL.DEVICE = "cpu"
    build_model(cfg)
