"""Bad configurations stop tools/train_net.py at start-up with a message naming the key or
file, and leave an existing OUTPUT_DIR exactly as it was."""
import os

import pytest

pytestmark = pytest.mark.slow  # each test starts tools/train_net.py


@pytest.fixture
def previous_run(tmp_path):
    """An OUTPUT_DIR holding the files of an earlier run."""
    out = tmp_path / "previous"
    out.mkdir()
    for name in ("config.yaml", "log.txt", "metrics.json", "final_metrics.json",
                 "model_final.pth", "last_checkpoint"):
        (out / name).write_text(f"earlier run's {name}\n")
    os.utime(out / "log.txt", (1_000_000, 1_000_000))
    return out


def _snapshot(directory):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


@pytest.fixture
def refused(train_net, tiny, demo_config, previous_run):
    """Run train_net with `args` on `previous_run`; it must fail without touching it."""

    def run(*args, flags=(), config=demo_config):
        before = _snapshot(previous_run)
        result = train_net(*flags, *tiny, *args, "OUTPUT_DIR", str(previous_run), config=config)
        assert result.returncode != 0
        assert _snapshot(previous_run) == before, "a failed start-up touched OUTPUT_DIR"
        return result.stderr

    return run


def test_unknown_config_key_is_named(refused):
    stderr = refused("SOLVER.BASE_LRR", "0.1")
    assert "KeyError" in stderr and "Non-existent key: SOLVER.BASE_LRR" in stderr


def test_unknown_key_in_config_file_is_named(refused, demo_config, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(f'_BASE_: "{demo_config}"\nSOLVER:\n  MAX_ITERS: 5\n')
    stderr = refused(config=config)
    assert "KeyError" in stderr and "Non-existent config key: SOLVER.MAX_ITERS" in stderr


def test_missing_weights_file_is_named(refused, tmp_path):
    missing = tmp_path / "no_such_weights.pth"
    stderr = refused("MODEL.WEIGHTS", str(missing))
    assert f"FileNotFoundError: MODEL.WEIGHTS: file {missing} does not exist" in stderr


def test_weights_of_another_architecture_are_refused(refused, tmp_path):
    import torch
    import torchvision

    from resnet_backbone.weights.checkpoint import make_metadata, save_converted
    from resnet_backbone.weights.convert import convert_torchvision_resnet

    torch.manual_seed(0)
    weights = tmp_path / "r34_torchvision.pth"
    save_converted(str(weights), convert_torchvision_resnet(torchvision.models.resnet34()
                                                            .state_dict()),
                   make_metadata("resnet34", "torchvision"))
    stderr = refused("MODEL.WEIGHTS", str(weights))
    assert "WeightsConfigMismatchError" in stderr
    assert "r34_torchvision.pth" in stderr and "MODEL.RESNETS.DEPTH=18" in stderr


def test_batch_not_divisible_by_processes_is_refused_before_spawning(refused):
    stderr = refused("SOLVER.IMS_PER_BATCH", "3", flags=("--num-gpus", "2", "--dist-url", "auto"))
    assert "SOLVER.IMS_PER_BATCH=3 is not divisible by the number of processes (2)" in stderr
    assert "ProcessRaisedException" not in stderr  # stopped in the parent: nothing was spawned


def test_schedule_past_max_iter_is_refused(refused):
    stderr = refused("SOLVER.STEPS", "(2,)")
    assert "Milestone must be smaller than total number of updates" in stderr


def test_sync_bn_in_several_cpu_processes_is_refused_naming_the_key(refused):
    stderr = refused("MODEL.RESNETS.NORM", "SyncBN", "MODEL.DEVICE", "cpu",
                     flags=("--num-gpus", "2", "--dist-url", "auto"))
    assert "MODEL.RESNETS.NORM=SyncBN: SyncBatchNorm works on CUDA only" in stderr
    assert "MODEL.RESNETS.NORM BN" in stderr
    assert "ProcessRaisedException" not in stderr


def test_classification_config_points_to_pretrain_net(refused):
    from conftest import REPO

    stderr = refused(config=REPO / "configs" / "Demo-Classification" / "resnet20.yaml")
    assert "resnet20.yaml is a classification config" in stderr
    assert "tools/pretrain_net.py" in stderr


def test_own_checkpoint_of_another_network_is_refused_naming_both(refused, shipped_config,
                                                                  tmp_path):
    import torch

    from resnet_backbone.engine.trainer import AtomicCheckpointer

    from resnet_backbone.modeling.resnet import make_resnet

    # A run's checkpoint records the network it holds: a ResNet-50 (up to res4, as the C4
    # detector's backbone) fed the config's pixels.
    cfg = shipped_config("PascalVOC-Detection/resnet50_c4_voc0712.yaml")
    model = torch.nn.Module()
    model.backbone = make_resnet(50, out_features=["res4"])
    model.input_format = cfg.INPUT.FORMAT
    model.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN))
    model.register_buffer("pixel_std", torch.tensor(cfg.MODEL.PIXEL_STD))
    AtomicCheckpointer(model, str(tmp_path), cfg=cfg).save("model_final")
    stderr = refused("MODEL.WEIGHTS", str(tmp_path / "model_final.pth"))
    assert "WeightsConfigMismatchError" in stderr
    assert "they are resnet50 weights but MODEL.RESNETS.DEPTH=18" in stderr
