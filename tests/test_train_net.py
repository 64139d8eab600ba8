"""tools/train_net.py end to end on a tiny synthetic split: a few iterations, the final
evaluation (COCO AP + VOC07 mAP), --eval-only, and a pixel-format mismatch stopping start-up."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_backbone.data import ensure_synthetic

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "1",
    "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", "96",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.RPN.POST_NMS_TOPK_TEST", "20",
    "DATALOADER.NUM_WORKERS", "0", "SEED", "1",
]


def train_net(*args, datasets):
    env = dict(os.environ, DETECTRON2_DATASETS=str(datasets), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py"), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    ensure_synthetic(str(root / "synthetic_shapes"), num_train=6, num_val=3)
    return root


def test_train_then_eval_only(datasets, tmp_path):
    config = str(REPO / "configs" / "Demo" / "resnet18_c4_synthetic.yaml")
    train_dir = tmp_path / "train"
    result = train_net("--config-file", config, *TINY, "OUTPUT_DIR", str(train_dir),
                       datasets=datasets)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (train_dir / "model_final.pth").is_file()
    metrics = json.loads((train_dir / "final_metrics.json").read_text())
    results = metrics["synthetic_shapes_val"]
    assert {"AP", "AP50"} <= set(results["bbox"])
    assert "AP50" in results["bbox_voc07"]  # the VOC07 11-point mAP of the same predictions

    eval_dir = tmp_path / "eval"
    result = train_net("--config-file", config, "--eval-only", *TINY,
                       "MODEL.WEIGHTS", str(train_dir / "model_final.pth"),
                       "OUTPUT_DIR", str(eval_dir), datasets=datasets)
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads((eval_dir / "final_metrics.json").read_text())["synthetic_shapes_val"]
    assert again["bbox"]["AP50"] == pytest.approx(results["bbox"]["AP50"], abs=1e-6)


def test_pixel_format_mismatch_stops_before_training(datasets, tmp_path):
    import torch
    import torchvision

    from resnet_backbone.checkpoint import make_metadata, save_converted
    from resnet_backbone.convert import convert_torchvision_resnet

    torch.manual_seed(0)
    state = convert_torchvision_resnet(torchvision.models.resnet18().state_dict())
    weights = tmp_path / "r18_torchvision.pth"
    save_converted(str(weights), state, make_metadata("resnet18", "torchvision"))
    out = tmp_path / "out"
    result = train_net(
        "--config-file", str(REPO / "configs" / "Demo" / "resnet18_c4_synthetic.yaml"), *TINY,
        "MODEL.WEIGHTS", str(weights), "INPUT.FORMAT", "BGR",
        "MODEL.PIXEL_MEAN", "[103.53, 116.28, 123.675]", "MODEL.PIXEL_STD", "[1.0, 1.0, 1.0]",
        "OUTPUT_DIR", str(out), datasets=datasets,
    )
    assert result.returncode != 0
    assert "WeightsConfigMismatchError" in result.stderr and "r18_torchvision.pth" in result.stderr
    assert not (out / "model_final.pth").exists()
