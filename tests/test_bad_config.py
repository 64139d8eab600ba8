"""Bad configurations stop tools/train_net.py at start-up with a message naming the key or
file, and leave an existing OUTPUT_DIR exactly as it was."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_backbone.data import ensure_synthetic

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "Demo" / "resnet18_c4_synthetic.yaml")
TINY = ["SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "INPUT.MIN_SIZE_TRAIN", "(96,)",
        "DATALOADER.NUM_WORKERS", "0", "SEED", "1"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    ensure_synthetic(str(root / "synthetic_shapes"), num_train=6, num_val=3)
    return root


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


def train_net(*args, datasets, output_dir, flags=()):
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets), OMP_NUM_THREADS="1")
    before = _snapshot(output_dir)
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", CONFIG, *flags,
         *TINY, *args, "OUTPUT_DIR", str(output_dir)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )
    assert result.returncode != 0
    assert _snapshot(output_dir) == before, "a failed start-up touched OUTPUT_DIR"
    return result.stderr


def test_unknown_config_key_is_named(datasets, previous_run):
    stderr = train_net("SOLVER.BASE_LRR", "0.1", datasets=datasets, output_dir=previous_run)
    assert "KeyError" in stderr and "Non-existent key: SOLVER.BASE_LRR" in stderr


def test_unknown_key_in_config_file_is_named(datasets, previous_run, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(f'_BASE_: "{CONFIG}"\nSOLVER:\n  MAX_ITERS: 5\n')
    stderr = train_net(datasets=datasets, output_dir=previous_run,
                       flags=("--config-file", str(config)))
    assert "KeyError" in stderr and "Non-existent config key: SOLVER.MAX_ITERS" in stderr


def test_missing_weights_file_is_named(datasets, previous_run, tmp_path):
    missing = tmp_path / "no_such_weights.pth"
    stderr = train_net("MODEL.WEIGHTS", str(missing), datasets=datasets, output_dir=previous_run)
    assert f"FileNotFoundError: MODEL.WEIGHTS: file {missing} does not exist" in stderr


def test_weights_of_another_architecture_are_refused(datasets, previous_run, tmp_path):
    import torch
    import torchvision

    from resnet_backbone.checkpoint import make_metadata, save_converted
    from resnet_backbone.convert import convert_torchvision_resnet

    torch.manual_seed(0)
    weights = tmp_path / "r34_torchvision.pth"
    save_converted(str(weights), convert_torchvision_resnet(torchvision.models.resnet34()
                                                            .state_dict()),
                   make_metadata("resnet34", "torchvision"))
    stderr = train_net("MODEL.WEIGHTS", str(weights), datasets=datasets, output_dir=previous_run)
    assert "WeightsConfigMismatchError" in stderr
    assert "r34_torchvision.pth" in stderr and "MODEL.RESNETS.DEPTH=18" in stderr


def test_batch_not_divisible_by_processes_is_refused_before_spawning(datasets, previous_run):
    stderr = train_net("SOLVER.IMS_PER_BATCH", "3", datasets=datasets, output_dir=previous_run,
                       flags=("--num-gpus", "2", "--dist-url", "auto"))
    assert "SOLVER.IMS_PER_BATCH=3 is not divisible by the number of processes (2)" in stderr
    assert "ProcessRaisedException" not in stderr  # stopped in the parent: nothing was spawned


def test_schedule_past_max_iter_is_refused(datasets, previous_run):
    stderr = train_net("SOLVER.STEPS", "(2,)", datasets=datasets, output_dir=previous_run)
    assert "Milestone must be smaller than total number of updates" in stderr
