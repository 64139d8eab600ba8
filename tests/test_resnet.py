"""The paper's residual and plain networks: shapes, shortcut options, freezing, config."""
import itertools

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_backbone

from conftest import fast_subset
from resnet_backbone.modeling.resnet import (
    DEPTH_TABLE,
    BasicBlock,
    ZeroPadShortcut,
    make_resnet,
)

ALL_FEATURES = ["stem", "res2", "res3", "res4", "res5"]
VARIANTS = [
    dict(residual=True, shortcut="A"),
    dict(residual=True, shortcut="B"),
    dict(residual=True, shortcut="C"),
    dict(residual=False),
]


# The shipped C4 detector of each depth (Table 7's rows and their siblings).
C4_CONFIGS = {depth: f"PascalVOC-Detection/resnet{depth}_c4_voc0712.yaml"
              for depth in DEPTH_TABLE}


def count_params(module, trainable_only=False):
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# Every depth, variant and stride placement under `make test`; in the fast subset one depth of
# each block type with every variant: ResNet-50 with both placements of the stride, ResNet-18
# with one (basic blocks have no 1x1 conv: the placement changes nothing there).
@pytest.mark.parametrize(
    "depth,variant,stride_in_1x1",
    [pytest.param(d, v, s, marks=() if d == 50 or (d, s) == (18, True) else pytest.mark.slow)
     for d, v, s in itertools.product(DEPTH_TABLE, VARIANTS, (True, False))],
)
def test_output_shape_matches_outputs(depth, variant, stride_in_1x1):
    model = make_resnet(
        depth, out_features=ALL_FEATURES, stride_in_1x1=stride_in_1x1, **variant
    ).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96))
    shapes = model.output_shape()
    assert list(outputs) == ALL_FEATURES == list(shapes)
    for name, tensor in outputs.items():
        spec = shapes[name]
        assert tensor.shape[1] == spec.channels
        assert (64 // spec.stride, 96 // spec.stride) == tuple(tensor.shape[2:])


@pytest.mark.parametrize("depth", sorted(DEPTH_TABLE))
def test_option_a_is_parameter_free_and_c_projects_every_block(depth):
    with torch.device("meta"):  # only the structure is counted: no weights to initialise
        plain = make_resnet(depth, residual=False)
        option_a = make_resnet(depth, shortcut="A")
        option_b = make_resnet(depth, shortcut="B")
        option_c = make_resnet(depth, shortcut="C")
    assert count_params(option_a) == count_params(plain)
    blocks = [b for s in option_c.stage_names for b in getattr(option_c, s)]
    assert all(isinstance(b.shortcut, torch.nn.Conv2d) for b in blocks)
    projections_b = [
        b for s in option_b.stage_names for b in getattr(option_b, s) if b.shortcut is not None
    ]
    # B projects exactly where the shape changes: the first block of every stage except
    # res2 of the basic-block nets, where 64 -> 64 channels at stride 1.
    assert len(projections_b) == (3 if DEPTH_TABLE[depth][0] is BasicBlock else 4)
    extra_c = sum(count_params(b.shortcut) for b in blocks) - sum(
        count_params(b.shortcut) for b in projections_b
    )
    assert count_params(option_c) - count_params(option_b) == extra_c > 0
    shortcuts_a = [b.shortcut for s in option_a.stage_names for b in getattr(option_a, s)]
    assert sum(isinstance(s, ZeroPadShortcut) for s in shortcuts_a) == len(projections_b)


def test_option_a_shortcut_pads_zeros_and_subsamples():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    y = ZeroPadShortcut(2, 5, stride=2)(x)
    assert y.shape == (1, 5, 2, 2)
    assert torch.equal(y[:, :2], x[:, :, ::2, ::2])
    assert not y[:, 2:].any()


def test_plain_net_has_no_shortcut_path():
    model = make_resnet(18, residual=False, norm="BN")
    block = model.res3[1]
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
    block.eval()
    # With a zeroed branch a residual block returns relu(x); a plain block returns zeros.
    assert not block(torch.rand(1, 128, 8, 8)).any()


# Every norm at every FREEZE_AT under `make test`; in the fast subset each norm once with a
# forward and backward pass, and every norm with everything frozen (no pass).
@pytest.mark.parametrize("norm,freeze_at", fast_subset(
    list(itertools.product(["BN", "FrozenBN", "GN"], [0, 1, 2, 3, 5])),
    fast=[("BN", 1), ("FrozenBN", 2), ("GN", 3), ("BN", 5), ("FrozenBN", 5), ("GN", 5)]))
def test_frozen_stages_hold_no_trainable_parameters_and_others_get_gradients(norm, freeze_at):
    model = make_resnet(50, norm=norm, out_features=ALL_FEATURES, freeze_at=freeze_at).train()
    frozen = ["stem", "res2", "res3", "res4", "res5"][:freeze_at]
    for name in frozen:
        module = getattr(model, name)
        assert count_params(module, trainable_only=True) == 0
        if norm != "GN":
            norms = [m for m in module.modules() if "norm" in type(m).__name__.lower()]
            assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    if len(frozen) == len(ALL_FEATURES):
        assert count_params(model, trainable_only=True) == 0
        return
    outputs = model(torch.randn(2, 3, 64, 64))
    sum(o.float().mean() for o in outputs.values()).backward()
    for name, param in model.named_parameters():
        if name.split(".")[0] in frozen:
            assert not param.requires_grad, name
        else:
            assert param.requires_grad and param.grad is not None, name
            assert torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize("depth", sorted(DEPTH_TABLE))
def test_builds_from_config(shipped_config, depth):
    cfg = shipped_config(C4_CONFIGS[depth], "MODEL.RESNETS.OUT_FEATURES", ["res2", "res4"])
    assert cfg.MODEL.RESNETS.DEPTH == depth
    model = build_backbone(cfg, ShapeSpec(channels=3))
    assert model.stage_names == ("res2", "res3", "res4")
    assert {k: v.stride for k, v in model.output_shape().items()} == {"res2": 4, "res4": 16}


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("MODEL.RESNETS.DEPTH", 42, "MODEL.RESNETS.DEPTH"),
        ("MODEL.RESNET_BACKBONE.SHORTCUT", "D", "MODEL.RESNET_BACKBONE.SHORTCUT"),
        ("MODEL.RESNETS.OUT_FEATURES", ["res6"], "MODEL.RESNETS.OUT_FEATURES"),
        ("MODEL.RESNETS.OUT_FEATURES", [], "MODEL.RESNETS.OUT_FEATURES"),
        ("MODEL.BACKBONE.FREEZE_AT", 5, "MODEL.BACKBONE.FREEZE_AT"),
        ("MODEL.BACKBONE.FREEZE_AT", -1, "MODEL.BACKBONE.FREEZE_AT"),
        ("MODEL.RESNETS.NUM_GROUPS", 32, "MODEL.RESNETS.NUM_GROUPS"),
        ("MODEL.RESNETS.DEFORM_ON_PER_STAGE", [False, True, False, False], "DEFORM_ON"),
    ],
)
def test_impossible_configs_name_the_key(shipped_config, key, value, message):
    cfg = shipped_config(C4_CONFIGS[50], key, value)
    with pytest.raises(ValueError, match=message):
        build_backbone(cfg, ShapeSpec(channels=3))


def test_basic_block_depth_needs_64_res2_channels(shipped_config):
    cfg = shipped_config(C4_CONFIGS[18], "MODEL.RESNETS.RES2_OUT_CHANNELS", 256)
    with pytest.raises(ValueError, match="MODEL.RESNETS.RES2_OUT_CHANNELS"):
        build_backbone(cfg, ShapeSpec(channels=3))


def test_fpn_builder_and_bad_fpn_inputs(shipped_config):
    cfg = shipped_config("PascalVOC-Detection/resnet50_fpn_voc0712.yaml")
    assert cfg.MODEL.BACKBONE.NAME == "build_paper_resnet_fpn_backbone"
    fpn = build_backbone(cfg, ShapeSpec(channels=3))
    outputs = fpn(torch.randn(1, 3, 64, 64))
    assert {k: v.stride for k, v in fpn.output_shape().items()} == {
        "p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64
    }
    assert {k: v.shape[-1] for k, v in outputs.items()} == {
        "p2": 16, "p3": 8, "p4": 4, "p5": 2, "p6": 1
    }
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4"]
    with pytest.raises(ValueError, match="MODEL.FPN.IN_FEATURES"):
        build_backbone(cfg, ShapeSpec(channels=3))
