"""The record of a network read from its built modules (description.py), the checkpoint metadata
and weights check built on it, the wrong-head guard on any route, and the message for a
Detectron2 config without this package's keys."""
import itertools
from pathlib import Path

import pytest
import torch

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.modeling import build_backbone, build_model

from resnet_backbone.modeling import description
from resnet_backbone.weights.checkpoint import (
    WeightsConfigMismatchError,
    check_weights_fit,
    make_metadata,
    read_metadata,
    save_converted,
)
from resnet_backbone.modeling.description import YACS, describe, describe_res5, lazy_naming
from resnet_backbone.engine.trainer import AtomicCheckpointer, Trainer
from resnet_backbone.fields import FIELDS
from resnet_backbone.modeling.fpn import make_fpn
from resnet_backbone.weights.metadata import metadata_of_model, required_config
from resnet_backbone.modeling.resnet import DEPTH_TABLE, BottleneckBlock, make_resnet
from resnet_backbone.modeling.roi_heads import check_head_fits, make_res5
from resnet_backbone.engine.startup import check_detection_run, model_skeleton
from resnet_backbone.modeling.vgg import make_vgg16
from resnet_backbone.weights.published import pixel_format_of

DEMO = "Demo/resnet18_c4_synthetic.yaml"
TORCHVISION_PIXELS = ("RGB", [123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
STAGES = ["res2", "res3", "res4", "res5"]


def expected_record(depth, residual, shortcut, stride_in_1x1, norm="FrozenBN"):
    bottleneck = DEPTH_TABLE[depth][0] is BottleneckBlock
    record = {"arch": f"resnet{depth}", "block": "bottleneck" if bottleneck else "basic",
              "depth": depth, "residual": residual, "stem": "basic", "stem_out_channels": 64,
              "res2_out_channels": 256 if bottleneck else 64, "norm": norm}
    if residual:
        record["shortcut"] = shortcut
    if bottleneck:
        record["stride_in_1x1"] = stride_in_1x1
    return record


VARIANTS = [(True, "A"), (True, "B"), (True, "C"), (False, "B")]


@pytest.mark.parametrize("depth", sorted(DEPTH_TABLE))
def test_describe_gives_back_the_arguments_of_every_network(depth):
    """For every depth, residual with shortcut A/B/C or plain, and stride placement: the record
    of the built network (alone, stopped at res4 for a C4 head, under an FPN) is what it was
    built with; building from the record's fields gives the same network; make_res5 with the
    same arguments continues it. All on the meta device: no tensor value is read."""
    for (residual, shortcut), stride_in_1x1 in itertools.product(VARIANTS, (True, False)):
        options = dict(residual=residual, shortcut=shortcut, stride_in_1x1=stride_in_1x1)
        expected = expected_record(depth, residual, shortcut, stride_in_1x1)
        with torch.device("meta"):
            full = make_resnet(depth, out_features=STAGES, **options)
            c4 = make_resnet(depth, out_features=["res4"], **options)
            fpn = make_fpn(make_resnet(depth, out_features=STAGES, **options),
                           in_features=STAGES)
            res5 = make_res5(depth, **options)
            arguments = {field.argument: expected[field.name] for field in FIELDS
                         if field.argument and field.name in expected}
            rebuilt = make_resnet(out_features=["res4"], **arguments)
        assert describe(full) == describe(c4) == describe(fpn) == expected, options
        assert describe(rebuilt) == expected
        res5_record = description.continuing_res5(expected)
        assert describe_res5(res5) == dict(res5_record, norm="FrozenBN")
        if depth >= 50:  # the placement is in the convs: the one field a shape cannot show
            first = c4.res3[0]
            assert (tuple(first.conv1.stride), tuple(first.conv2.stride)) == (
                ((2, 2), (1, 1)) if stride_in_1x1 else ((1, 1), (2, 2)))


def test_describe_reads_detectron2s_own_resnets_vgg_and_nothing_else():
    cfg = get_cfg()  # Detectron2's R-50 C4 defaults: stride in the 1x1, FrozenBN, up to res4
    with torch.device("meta"):
        assert describe(build_backbone(cfg)) == expected_record(50, True, "B", True)
        cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 18, 64
        cfg.MODEL.RESNETS.NORM = "BN"
        assert describe(build_backbone(cfg)) == expected_record(18, True, "B", None, norm="BN")
        cfg.MODEL.RESNETS.DEPTH, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 50, 256
        cfg.MODEL.RESNETS.NUM_GROUPS, cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 32, 4  # ResNeXt
        assert describe(build_backbone(cfg)) is None
        assert describe(make_vgg16()) == {"arch": "vgg16"}
        # a frozen stem and res2 hold FrozenBN: the norm recorded is the trained stages'
        assert describe(make_resnet(34, norm="BN", freeze_at=2))["norm"] == "BN"
        assert describe(make_resnet(50, out_features=["res3"])) is None  # R-50/101/152?
    assert describe(torch.nn.Linear(1, 1)) is None


# What metadata_of_config gave for these shipped configs (before the record was read from the
# model), less the entries that do not apply: a basic block's stride placement, a plain net's
# shortcut option.
BEFORE = {
    DEMO: {"arch": "resnet18", "source": "tools/train_net.py", "pixel_format": "torchvision",
           "input_format": "RGB", "pixel_mean": [123.675, 116.28, 103.53],
           "pixel_std": [58.395, 57.12, 57.375], "residual": True, "shortcut": "B"},
    "Demo/plain18_c4_synthetic.yaml": {
        "arch": "resnet18", "source": "tools/train_net.py", "pixel_format": "torchvision",
        "input_format": "RGB", "pixel_mean": [123.675, 116.28, 103.53],
        "pixel_std": [58.395, 57.12, 57.375], "residual": False},
}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_metadata_of_a_built_yaml_model_is_what_the_config_gave(shipped_config, name):
    model = build_model(shipped_config(name))
    metadata = metadata_of_model(model, "tools/train_net.py")
    assert {key: metadata[key] for key in BEFORE[name]} == BEFORE[name]
    assert "stride_in_1x1" not in metadata  # ResNet-18 has no 1x1 conv to put it in
    assert (metadata["depth"], metadata["stem"], metadata["norm"]) == (18, "basic", "BN")


@pytest.mark.parametrize("key, value, recorded", [
    ("MODEL.RESNET_BACKBONE.SHORTCUT", "C", {"shortcut": "C"}),
    ("MODEL.RESNET_BACKBONE.RESIDUAL", False, {"residual": False}),
])
def test_checkpoints_record_a_non_default_option_of_the_network_built(shipped_config, tmp_path,
                                                                       key, value, recorded):
    cfg = shipped_config(DEMO, key, value)
    AtomicCheckpointer(build_model(cfg), str(tmp_path), cfg=cfg).save("model_final")
    metadata = read_metadata(str(tmp_path / "model_final.pth"))
    assert {k: metadata.get(k) for k in recorded} == recorded
    assert ("shortcut" in metadata) == bool(cfg.MODEL.RESNET_BACKBONE.RESIDUAL)


def test_stride_placement_is_recorded_from_the_convs():
    model = torch.nn.Module()
    model.backbone = make_resnet(50, stride_in_1x1=False, out_features=["res4"])
    model.register_buffer("pixel_mean", torch.tensor(TORCHVISION_PIXELS[1]).view(-1, 1, 1))
    model.register_buffer("pixel_std", torch.tensor(TORCHVISION_PIXELS[2]).view(-1, 1, 1))
    model.input_format = "RGB"
    metadata = metadata_of_model(model, "test")
    assert metadata["stride_in_1x1"] is False and metadata["pixel_format"] == "torchvision"
    assert ("MODEL.RESNETS.STRIDE_IN_1X1", False) in required_config(metadata)
    with pytest.raises(ValueError, match="meta device.*pixel_mean/pixel_std hold no values"):
        metadata_of_model(model.to("meta"), "test")


def test_published_weights_are_described_from_the_network_they_fill():
    metadata = make_metadata("resnet101", "msra")
    assert metadata == dict(metadata, **expected_record(101, True, "B", True, norm="BN"))
    settings = dict(required_config(make_metadata("resnet34", "torchvision")))
    assert settings["MODEL.RESNETS.RES2_OUT_CHANNELS"] == 64
    assert "MODEL.RESNETS.STRIDE_IN_1X1" not in settings and "MODEL.RESNETS.NORM" not in settings


# ------------------------------------------------------------------------------------------
# The weights check against a skeleton, named for the route
# ------------------------------------------------------------------------------------------
class Skeleton(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def torchvision_r50(tmp_path):
    path = tmp_path / "r50.pth"
    save_converted(path, {"stem.conv1.weight": torch.zeros(1)},
                   make_metadata("resnet50", "torchvision"))
    return str(path)


@pytest.mark.parametrize("fpn", [False, True], ids=["c4", "fpn"])
def test_weights_check_names_lazy_fields_for_a_lazy_route(tmp_path, fpn):
    weights = torchvision_r50(tmp_path)
    with torch.device("meta"):
        backbone = make_resnet(18, out_features=STAGES if fpn else ["res4"])
        skeleton = Skeleton(make_fpn(backbone, in_features=STAGES) if fpn else backbone)
    msra = pixel_format_of("BGR", [103.53, 116.28, 123.675], [1, 1, 1])
    with pytest.raises(WeightsConfigMismatchError) as error:
        check_weights_fit(skeleton, msra, weights, lazy_naming())
    message = str(error.value)
    field = "model.backbone.bottom_up" if fpn else "model.backbone"
    for text in (f"{field}.depth=50", f"{field}.res2_out_channels=256",
                 "model.input_format=RGB", 'model.pixel_mean="[123.675, 116.28, 103.53]"',
                 "(model.input_format, model.pixel_mean, model.pixel_std; pixel format 'msra')"):
        assert text in message, text
    assert "MODEL." not in message and "INPUT.FORMAT" not in message
    with pytest.raises(WeightsConfigMismatchError) as error:  # the same, named for YAML
        check_weights_fit(skeleton, msra, weights, YACS)
    assert "MODEL.RESNETS.DEPTH 50" in str(error.value) and "model." not in str(error.value)
    with torch.device("meta"):
        fitting = Skeleton(make_resnet(50, stride_in_1x1=False, out_features=["res4"]))
    tv = pixel_format_of(*TORCHVISION_PIXELS)
    assert check_weights_fit(fitting, tv, weights, lazy_naming())["arch"] == "resnet50"
    with pytest.raises(FileNotFoundError, match="train.init_checkpoint: "):
        check_weights_fit(fitting, tv, str(tmp_path / "absent.pth"), lazy_naming())


def test_checkpointer_checks_against_the_model_it_loads_into_without_a_config(tmp_path):
    from resnet_backbone.weights.checkpoint import ResNetBackboneCheckpointer

    weights = torchvision_r50(tmp_path)
    model = Skeleton(make_resnet(50, out_features=["res4"]))  # stride in the 1x1
    with pytest.raises(WeightsConfigMismatchError, match="STRIDE_IN_1X1 False"):
        ResNetBackboneCheckpointer(model).load(weights)
    with pytest.raises(WeightsConfigMismatchError, match="model.backbone.stride_in_1x1=False"):
        ResNetBackboneCheckpointer(model, naming=lazy_naming()).load(weights)


# ------------------------------------------------------------------------------------------
# The wrong-head guard on every route
# ------------------------------------------------------------------------------------------
def detectron2_backbone_cfg(shipped_config, heads):
    """The demo (ResNet-18) on Detectron2's own build_resnet_backbone, with RoI heads `heads`:
    this package's builder-time guard never runs."""
    return shipped_config(DEMO, "MODEL.BACKBONE.NAME", "build_resnet_backbone",
                          "MODEL.ROI_HEADS.NAME", heads)


def test_head_guard_stops_detectron2_res5_after_resnet18_from_a_yaml_config(shipped_config):
    cfg = detectron2_backbone_cfg(shipped_config, "Res5ROIHeads")
    with pytest.raises(ValueError) as error:
        check_detection_run(cfg, Trainer, world_size=1, validate_data=False)
    message = str(error.value)
    for text in ("res5 of the RoI heads (Res5ROIHeads) does not continue the backbone "
                 "(resnet18)", "block 'bottleneck' where the backbone's conv5_x has 'basic'",
                 "blocks 3 where the backbone's conv5_x has 2",
                 "Set MODEL.ROI_HEADS.NAME PaperRes5ROIHeads"):
        assert text in message, text
    cfg.MODEL.ROI_HEADS.NAME = "PaperRes5ROIHeads"  # the fix the message gives
    check_head_fits(model_skeleton(cfg))
    check_head_fits(model_skeleton(shipped_config(DEMO)))


def detectron2_lazy_c4():
    """Detectron2's own lazy C4 model (its common/models/mask_rcnn_c4.py), without masks."""
    import detectron2

    path = Path(detectron2.__file__).parent / "model_zoo/configs/common/models/mask_rcnn_c4.py"
    model = LazyConfig.load(str(path)).model
    del model.roi_heads.mask_head
    return model


def test_head_guard_stops_a_lazy_model_with_only_the_backbone_swapped():
    model = detectron2_lazy_c4()
    with torch.device("meta"):
        check_head_fits(instantiate(model), lazy_naming())  # Detectron2's R-50: its own res5
        model.backbone = L(make_resnet)(depth=18, out_features=["res4"])
        skeleton = instantiate(model)
    with pytest.raises(ValueError) as error:
        check_head_fits(skeleton, lazy_naming())
    message = str(error.value)
    for text in ("does not continue the backbone (resnet18)", "Set model.roi_heads.res5 to "
                 "L(make_res5)(depth=18, residual=True, shortcut='B', res2_out_channels=64, "
                 "norm='FrozenBN')", "output has 512 channels"):
        assert text in message, text
    assert "MODEL.ROI_HEADS.NAME" not in message
    model.roi_heads.res5 = L(make_res5)(depth=18, res2_out_channels=64)  # the fix it gives
    model.roi_heads.box_predictor.input_shape.channels = 512
    with torch.device("meta"):
        check_head_fits(instantiate(model), lazy_naming())


@pytest.mark.parametrize("options, named", [
    (dict(residual=False), "residual False where the backbone's conv5_x has True"),
    (dict(shortcut="C"), "shortcut 'C' where the backbone's conv5_x has 'B'"),
    (dict(stride_in_1x1=False), "stride_in_1x1 False where the backbone's conv5_x has True"),
])
def test_head_guard_names_any_difference_of_a_package_res5(options, named):
    model = detectron2_lazy_c4()
    model.backbone = L(make_resnet)(depth=50, out_features=["res4"])
    model.roi_heads.res5 = L(make_res5)(depth=50, **options)
    model.roi_heads.box_predictor.input_shape.channels = 2048
    with torch.device("meta"):
        skeleton = instantiate(model)
    with pytest.raises(ValueError, match=named):
        check_head_fits(skeleton)


# ------------------------------------------------------------------------------------------
# A Detectron2 config without this package's keys
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, reader, function", [
    ({"MODEL.BACKBONE.NAME": "build_paper_resnet_backbone"}, "build_paper_resnet_backbone",
     "add_resnet_backbone_config(cfg) (from resnet_backbone)"),
    ({"MODEL.BACKBONE.NAME": "build_paper_resnet_fpn_backbone"},
     "build_paper_resnet_backbone", "add_resnet_backbone_config(cfg) (from resnet_backbone)"),
    ({"MODEL.BACKBONE.NAME": "build_vgg16_backbone"}, "build_vgg16_backbone",
     "add_resnet_backbone_config(cfg) (from resnet_backbone)"),
    ({"MODEL.BACKBONE.NAME": "build_vgg16_fpn_backbone"}, "build_vgg16_backbone",
     "add_resnet_backbone_config(cfg) (from resnet_backbone)"),
    ({"MODEL.ROI_HEADS.NAME": "PaperRes5ROIHeads"}, "PaperRes5ROIHeads",
     "add_resnet_backbone_config(cfg) (from resnet_backbone)"),
    ({"MODEL.ROI_HEADS.NAME": "StandardROIHeads", "MODEL.ROI_HEADS.IN_FEATURES": ["res4"],
      "MODEL.ROI_BOX_HEAD.NAME": "VGG16BoxHead"}, "VGG16BoxHead",
     "add_resnet_backbone_config(cfg) (from resnet_backbone)"),
    ({"MODEL.BACKBONE.NAME": "build_cifar_resnet_backbone"}, "build_cifar_resnet_backbone",
     "add_resnet_backbone_config(cfg) (from resnet_backbone)"),
    ({"MODEL.META_ARCHITECTURE": "ImageClassifier"}, "ImageClassifier",
     "add_classification_config(cfg) (from resnet_backbone.classification)"),
])
def test_a_config_without_the_packages_keys_names_the_function_that_adds_them(settings, reader,
                                                                             function):
    import resnet_backbone.classification  # noqa: F401 (registers the classifier, CIFAR nets)

    cfg = get_cfg()  # Detectron2's tools/train_net.py: no add_resnet_backbone_config
    for key, value in settings.items():
        cfg.merge_from_list([key, value])
    with pytest.raises(ValueError) as error, torch.device("meta"):
        build_model(cfg)
    assert str(error.value).startswith(f"{reader} reads ")
    assert f"Call {function}" in str(error.value)
