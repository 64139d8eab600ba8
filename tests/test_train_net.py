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


DEMO_CONFIG = str(REPO / "configs" / "Demo" / "resnet18_c4_synthetic.yaml")


@pytest.fixture(scope="module")
def trained_run(datasets, tmp_path_factory):
    train_dir = tmp_path_factory.mktemp("train")
    result = train_net("--config-file", DEMO_CONFIG, *TINY, "OUTPUT_DIR", str(train_dir),
                       datasets=datasets)
    assert result.returncode == 0, result.stderr[-3000:]
    return train_dir


def test_train_then_eval_only(datasets, trained_run, tmp_path):
    train_dir = trained_run
    config = DEMO_CONFIG
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
        "--config-file", DEMO_CONFIG, *TINY,
        "MODEL.WEIGHTS", str(weights), "INPUT.FORMAT", "BGR",
        "MODEL.PIXEL_MEAN", "[103.53, 116.28, 123.675]", "MODEL.PIXEL_STD", "[1.0, 1.0, 1.0]",
        "OUTPUT_DIR", str(out), datasets=datasets,
    )
    assert result.returncode != 0
    assert "WeightsConfigMismatchError" in result.stderr and "r18_torchvision.pth" in result.stderr
    assert not (out / "model_final.pth").exists()


def test_detection_pictures_of_a_trained_run(datasets, trained_run, tmp_path):
    """The demo's pictures: ground truth beside predictions, one PNG per image."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from PIL import Image

    from resnet_backbone import add_resnet_backbone_config
    from resnet_backbone.data import datasets_root, register_all
    from resnet_backbone.visualize import save_detection_pictures

    run = trained_run
    cfg = add_resnet_backbone_config(get_cfg())
    cfg.merge_from_file(str(run / "config.yaml"))
    model = build_model(cfg)
    DetectionCheckpointer(model).load(str(run / "model_final.pth"))
    default_root = datasets_root()
    register_all(str(datasets))
    try:
        paths = save_detection_pictures(model, cfg, "synthetic_shapes_val", str(tmp_path / "pics"),
                                        num_images=2, score_threshold=0.0)
    finally:
        register_all(default_root)
    assert len(paths) == 2
    for path in paths:
        width, height = Image.open(path).size
        assert width >= 2 * 2 * 160 and height >= 2 * 160  # two panels, each scaled 2x
    assert not list((tmp_path / "pics").glob("*.tmp*"))
