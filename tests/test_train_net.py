"""tools/train_net.py end to end on a tiny synthetic split: a few iterations, the final
evaluation (COCO AP + VOC07 mAP) written as strict JSON, --eval-only, and pictures of the result."""
import json
import math

import pytest

from conftest import REPO

from resnet_backbone.engine.trainer import FINAL_METRICS, save_final_metrics


def strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def trained_run(train_net, tiny, tmp_path_factory):
    train_dir = tmp_path_factory.mktemp("train")
    result = train_net(*tiny, "OUTPUT_DIR", str(train_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return train_dir


@pytest.mark.slow
def test_train_then_eval_only(train_net, tiny, trained_run, tmp_path):
    assert (trained_run / "model_final.pth").is_file()
    # what the start-up checks found, logged before log.txt existed, is in it
    log = (trained_run / "log.txt").read_text()
    assert "dataset 'synthetic_shapes_train': 6 images" in log
    assert "dataset 'synthetic_shapes_val': 3 images" in log
    results = strict_json(trained_run / FINAL_METRICS)["synthetic_shapes_val"]
    assert {"AP", "AP50"} <= set(results["bbox"])
    assert "AP50" in results["bbox_voc07"]  # the VOC07 11-point mAP of the same predictions

    eval_dir = tmp_path / "eval"
    result = train_net("--eval-only", *tiny, "MODEL.WEIGHTS", str(trained_run / "model_final.pth"),
                       "OUTPUT_DIR", str(eval_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    again = strict_json(eval_dir / FINAL_METRICS)["synthetic_shapes_val"]
    assert again["bbox"]["AP50"] == pytest.approx(results["bbox"]["AP50"], abs=1e-6)


def test_final_metrics_are_strict_json_with_undefined_metrics_as_null(shipped_config, tmp_path):
    cfg = shipped_config("Demo/resnet18_c4_synthetic.yaml", "OUTPUT_DIR", str(tmp_path),
                         "DATASETS.TEST", ("val",))
    save_final_metrics(cfg, {"bbox": {"AP": 12.5, "APl": math.nan, "APm": math.inf}})
    assert strict_json(tmp_path / FINAL_METRICS) == {
        "val": {"bbox": {"AP": 12.5, "APl": None, "APm": None}}}


@pytest.mark.slow
def test_detection_pictures_of_a_trained_run(train_net, trained_run, tmp_path):
    """The demo's pictures of a trained run: ground truth beside predictions, one PNG each."""
    from PIL import Image

    result = train_net(str(trained_run), "--num-images", "2", "--score-threshold", "0",
                       "--output-dir", str(tmp_path / "pics"), config=None,
                       script=REPO / "tools" / "draw_detections.py")
    assert result.returncode == 0, result.stderr[-3000:]
    paths = sorted((tmp_path / "pics").glob("*.png"))
    assert len(paths) == 2
    for path in paths:
        width, height = Image.open(path).size
        assert width >= 2 * 2 * 160 and height >= 2 * 160  # two panels, each scaled 2x
    assert not list((tmp_path / "pics").glob("*.tmp*"))


@pytest.mark.slow
def test_test_time_augmentation_is_run_and_reported(train_net, tmp_path, tiny):
    """TEST.AUG.ENABLED runs Detectron2's GeneralizedRCNNWithTTA after the plain evaluation,
    as Detectron2's train_net does, and final_metrics.json holds both."""
    out = tmp_path / "out"
    result = train_net("--eval-only", *tiny, "OUTPUT_DIR", str(out), "MODEL.WEIGHTS", "",
                       "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(80, 96)",
                       "TEST.AUG.MAX_SIZE", "160")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "final_metrics.json").read_text())["synthetic_shapes_val"]
    assert "bbox" in metrics and "bbox_TTA" in metrics
    assert (out / "inference_TTA" / "synthetic_shapes_val").is_dir()
