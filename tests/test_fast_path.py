"""The fast-path switches (MODEL.FAST_PATH) give the default path's outputs on the CPU, within the
rounding of their number format, and leave checkpoints as they are."""
import os
import sys
from pathlib import Path

# Some virtual machines advertise AMX without enabling it; oneDNN's bfloat16 kernels then die with
# SIGILL (seen on this project's CI machine). Capping oneDNN below AMX avoids them; it has to be
# set before the first oneDNN call of the process, and it changes no float32 kernel.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from resnet_backbone.engine.trainer import Trainer
from resnet_backbone.modeling.fast_path import FoldedNormConv2d, apply_fast_path, fold_batchnorm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from benchmark_lib import synthetic_batch  # noqa: E402  (tools/benchmark_lib.py)


DEMO = "Demo/resnet18_c4_synthetic.yaml"


@pytest.fixture(scope="session")
def c4_cfg(shipped_config):
    """`c4_cfg(*, norm, **fast_path)`: the demo's ResNet-18 C4 detector, small enough for a CPU
    test, with MODEL.RESNETS.NORM `norm` (the frozen BN of the paper's rows by default) and the
    `fast_path` keys (MODEL.FAST_PATH.<KEY>)."""

    def build(*, norm="FrozenBN", **fast_path):
        return shipped_config(
            DEMO, "MODEL.RESNETS.NORM", norm, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16,
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.RPN.POST_NMS_TOPK_TEST", 20,
            *(item for key, value in fast_path.items()
              for item in (f"MODEL.FAST_PATH.{key.upper()}", value)))

    return build


def randomize_norms(model, seed=0):
    """Statistics and affine parameters far from identity, so that a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in model.modules():
            if isinstance(norm, (FrozenBatchNorm2d, torch.nn.BatchNorm2d)):
                channels = norm.running_mean.numel()
                norm.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
                norm.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
                norm.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                norm.bias.copy_(torch.randn(channels, generator=generator) * 0.1)
    return model


def twin_models(cfg, fast_cfg):
    """The default model of `cfg` and the fast-path model of `fast_cfg`, with the same weights."""
    torch.manual_seed(0)
    default = randomize_norms(build_model(cfg))
    fast = apply_fast_path(fast_cfg, build_model(fast_cfg))
    fast.load_state_dict(default.state_dict())
    return default, fast


def training_losses(model, seed=0):
    """Losses of one training step on a fixed batch, with every trainable parameter's gradient."""
    batch = synthetic_batch(2, 96, 128, num_classes=5, seed=seed)
    model.train()
    torch.manual_seed(seed)  # the same anchor and RoI sampling for every model
    with EventStorage():
        losses = model(batch)
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.item() for k, v in losses.items()}, grads


def inference(model):
    model.eval()
    batch = synthetic_batch(1, 96, 128, num_classes=5, seed=1)
    with torch.no_grad():
        return model(batch)[0]["instances"]


@pytest.mark.parametrize("depth", [18, 50])
def test_folded_frozen_batchnorm_gives_the_same_features(shipped_config, depth):
    """The shipped rows with frozen BN: ResNet-18 (torchvision's stride in the 3x3) and ResNet-50
    (MSRA's stride in the 1x1)."""
    cfg = shipped_config(f"PascalVOC-Detection/resnet{depth}_c4_voc0712.yaml")
    assert cfg.MODEL.RESNETS.NORM == "FrozenBN"
    fast_cfg = cfg.clone()
    fast_cfg.MODEL.FAST_PATH.FOLD_FROZEN_BN = True
    default, fast = twin_models(cfg, fast_cfg)
    assert any(isinstance(m, FoldedNormConv2d) for m in fast.backbone.modules())
    assert all(isinstance(m, FoldedNormConv2d) for m in fast.roi_heads.res5.modules()
               if hasattr(m, "norm") and m.norm is not None)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, folded = default.backbone(x)["res4"], fast.backbone(x)["res4"]
    assert not torch.equal(expected, folded)  # really another computation ...
    torch.testing.assert_close(folded, expected, rtol=1e-4, atol=1e-4 * expected.abs().max())


def test_folded_faster_rcnn_c4_inference_matches(c4_cfg):
    default, fast = twin_models(c4_cfg(), c4_cfg(fold_frozen_bn=True))
    expected, folded = inference(default), inference(fast)
    assert len(expected) > 0
    torch.testing.assert_close(folded.pred_boxes.tensor, expected.pred_boxes.tensor,
                               rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(folded.scores, expected.scores, rtol=1e-4, atol=1e-5)
    assert torch.equal(folded.pred_classes, expected.pred_classes)


def test_batchnorm_folds_at_inference_only(c4_cfg):
    default, fast = twin_models(c4_cfg(norm="BN"), c4_cfg(norm="BN", fold_frozen_bn=True))
    expected, folded = inference(default), inference(fast)
    torch.testing.assert_close(folded.scores, expected.scores, rtol=1e-4, atol=1e-5)
    # In training, BN normalises with the batch statistics: nothing is folded, same numbers.
    losses_default, _ = training_losses(default)
    losses_fast, _ = training_losses(fast)
    assert losses_fast == losses_default
    for name, buffer in default.state_dict().items():
        assert torch.equal(fast.state_dict()[name], buffer), name  # running stats moved alike


def test_fold_keeps_checkpoints_and_uses_weights_loaded_later(c4_cfg):
    cfg = c4_cfg()
    torch.manual_seed(0)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert fold_batchnorm(model) > 0
    after = model.state_dict()
    assert list(after) == list(before)  # conv1.norm.*, shortcut.norm.* ... still saved
    assert all(torch.equal(after[k], before[k]) for k in before)  # unfolded values
    # Weights loaded after folding (a checkpoint, a resume) are the ones used.
    reference = randomize_norms(build_model(cfg), seed=3)
    model.load_state_dict(reference.state_dict())
    torch.testing.assert_close(inference(model).scores, inference(reference).scores,
                               rtol=1e-4, atol=1e-5)


def test_folded_training_step_matches_with_the_same_gradients(c4_cfg):
    default, fast = twin_models(c4_cfg(), c4_cfg(fold_frozen_bn=True))
    losses_default, grads_default = training_losses(default)
    losses_fast, grads_fast = training_losses(fast)
    assert losses_fast == pytest.approx(losses_default, rel=1e-4, abs=1e-5)
    assert set(grads_fast) == set(grads_default)
    for name, grad in grads_default.items():
        assert grads_fast[name] is not None, name
        torch.testing.assert_close(grads_fast[name], grad, rtol=1e-3,
                                   atol=1e-3 * grad.abs().max() + 1e-7)


def test_channels_last_gives_the_same_losses(c4_cfg):
    default, fast = twin_models(c4_cfg(), c4_cfg(channels_last=True))
    assert fast.backbone.stem.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert fast.roi_heads.res5[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    seen = []

    def record_layout(module, inputs, output):
        seen.append(output.is_contiguous(memory_format=torch.channels_last))

    fast.backbone.res4.register_forward_hook(record_layout)
    losses_default, _ = training_losses(default)
    losses_fast, grads = training_losses(fast)
    assert seen == [True]
    assert losses_fast == pytest.approx(losses_default, rel=1e-4, abs=1e-5)
    assert all(g is not None for g in grads.values())


def test_bfloat16_autocast_runs_the_trunk_in_bfloat16(c4_cfg):
    default, fast = twin_models(c4_cfg(),
                                c4_cfg(autocast="bfloat16", channels_last=True,
                                       fold_frozen_bn=True))
    dtypes = {}

    def record_dtype(name):
        def hook(module, inputs, output):
            dtypes[name] = (output[0] if isinstance(output, tuple) else output).dtype
        return hook

    for name, module in (("res4", fast.backbone.res4), ("res5", fast.roi_heads.res5[-1]),
                         ("predictor", fast.roi_heads.box_predictor)):
        module.register_forward_hook(record_dtype(name))
    losses_default, _ = training_losses(default)
    losses_fast, grads = training_losses(fast)
    assert dtypes == {"res4": torch.bfloat16, "res5": torch.bfloat16,
                      "predictor": torch.float32}
    # bfloat16 keeps 8 bits of mantissa. The RPN's losses (anchors sampled from the ground
    # truth alone) agree to a few percent; the RoI losses are not compared, as the slightly
    # different proposals select other RoIs.
    for name in ("loss_rpn_cls", "loss_rpn_loc"):
        assert losses_fast[name] == pytest.approx(losses_default[name], rel=0.05), name
    assert all(g is not None and g.dtype == torch.float32 for g in grads.values())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, features = default.backbone(x)["res4"], fast.backbone(x)["res4"]
    assert features.dtype == torch.float32
    assert (features - expected).norm() / expected.norm() < 0.03


@pytest.mark.parametrize("overrides, message", [
    ({"MODEL.FAST_PATH.AUTOCAST": "half"}, "MODEL.FAST_PATH.AUTOCAST='half'"),
    ({"MODEL.FAST_PATH.AUTOCAST": "float16"}, "SOLVER.AMP.ENABLED=True"),
    ({"SOLVER.AMP.ENABLED": True}, "MODEL.FAST_PATH.AUTOCAST='bfloat16'"),
])
def test_bad_fast_path_settings_are_named(c4_cfg, overrides, message):
    cfg = c4_cfg()
    cfg.merge_from_list([item for pair in overrides.items() for item in pair])
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        Trainer.build_model(cfg)


def test_the_trainer_builds_the_fast_path_of_base_fastpath(shipped_config, c4_cfg, monkeypatch):
    from resnet_backbone import model_zoo

    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, **options: compiled.append((type(self).__name__, options)))
    cfg = shipped_config(DEMO)
    cfg.merge_from_file(model_zoo.get_config_file("Base-FastPath.yaml"))
    assert cfg.MODEL.FAST_PATH.FOLD_FROZEN_BN and cfg.MODEL.FAST_PATH.CHANNELS_LAST
    assert cfg.MODEL.FAST_PATH.AUTOCAST == "bfloat16" and cfg.MODEL.FAST_PATH.COMPILE
    model = Trainer.build_model(cfg)
    assert isinstance(model.backbone.stem.conv1, FoldedNormConv2d)
    assert compiled == [("ResNet", {"dynamic": True}), ("Sequential", {"dynamic": True})]
    default = Trainer.build_model(c4_cfg(norm="BN"))
    assert type(default.backbone.stem.conv1) is not FoldedNormConv2d


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RESNET_BACKBONE_TEST_COMPILE"),
                    reason="compiling the trunk with inductor took over 5 minutes on this "
                    "project's 2-core CPU machine; set RESNET_BACKBONE_TEST_COMPILE=1 to run it "
                    "(the wiring is tested by test_the_trainer_builds_the_fast_path_of_base_fastpath)")
def test_compiled_trunk_gives_the_same_losses(c4_cfg):
    default, fast = twin_models(c4_cfg(), c4_cfg(compile=True))
    losses_default, _ = training_losses(default)
    losses_fast, grads = training_losses(fast)
    assert losses_fast == pytest.approx(losses_default, rel=1e-4, abs=1e-5)
    assert all(g is not None for g in grads.values())
