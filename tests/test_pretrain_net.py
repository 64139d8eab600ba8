"""tools/pretrain_net.py end to end on a tiny ImageFolder declared in the config: trains with the
paper's recipe, evaluates with 10-crop testing, resumes, and exports a backbone that
tools/train_net.py's pixel-format check and Detectron2's checkpointer accept."""
import functools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from conftest import REPO
from resnet_backbone import model_zoo
from resnet_backbone.weights.checkpoint import (
    WeightsConfigMismatchError,
    check_weights_match_config,
)
from resnet_backbone.engine.trainer import FINAL_METRICS

pytestmark = pytest.mark.slow

PRETRAIN_NET = REPO / "tools" / "pretrain_net.py"
CLASSES = ("blue", "red")


@pytest.fixture(scope="module")
def leaves_config(tmp_path_factory):
    """A config declaring train/ and val/ ImageFolder trees of reddish and bluish 48x56
    images (ResNet-18, the paper's ImageNet recipe)."""
    root = tmp_path_factory.mktemp("leaves")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 3)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for index in range(count):
                image = rng.integers(0, 80, size=(48, 56, 3), dtype=np.uint8)
                image[..., 2 if name == "blue" else 0] += 150
                Image.fromarray(image).save(root / split / name / f"{index}.png")
    base = model_zoo.get_config_file("ImageNet-Classification/resnet18.yaml")
    lines = [f'_BASE_: "{base}"', "DATASETS:", "  USER:"]
    for split in ("train", "val"):
        lines.append(f'    leaves_{split}: {{FORMAT: "imagefolder", ROOT: "{root / split}"}}')
    lines += ['  TRAIN: ("leaves_train",)', '  TEST: ("leaves_val",)']
    config = root / "resnet18_leaves.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def overrides(output_dir, max_iter=4):
    return (
        "MODEL.CLASSIFIER.NUM_CLASSES", "2", "INPUT.CLS.SHORT_SIDE_RANGE", "[40, 48]",
        "INPUT.CLS.CROP", "32", "MODEL.CLASSIFIER.TEST_RESIZE", "40",
        "MODEL.CLASSIFIER.TEST_CROP", "32", "SOLVER.IMS_PER_BATCH", "4", "SOLVER.BASE_LR", "0.01",
        "SOLVER.STEPS", "()", "SOLVER.MAX_ITER", str(max_iter), "SOLVER.CHECKPOINT_PERIOD", "2",
        "TEST.PRECISE_BN.NUM_ITER", "2", "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu",
        "OUTPUT_DIR", str(output_dir),
    )


@pytest.fixture(scope="module")
def pretrained(train_net, leaves_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    result = train_net(*overrides(out), config=leaves_config, script=PRETRAIN_NET)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_training_evaluates_with_ten_crops_and_writes_the_metrics(pretrained):
    metrics = json.loads((pretrained / FINAL_METRICS).read_text())["leaves_val"]
    result = metrics["classification"]
    assert result["num_images"] == 6
    assert 0 <= result["top1_err"] <= 100 and result["top5_err"] == 0  # 2 classes: top-5 is all
    assert (pretrained / "model_final.pth").is_file()


def test_resumed_run_continues_from_its_checkpoint(pretrained, train_net, leaves_config,
                                                   tmp_path):
    out = tmp_path / "resumed"
    out.mkdir()
    for name in ("model_0000001.pth", "last_checkpoint"):
        (out / name).write_bytes((pretrained / name).read_bytes())
    (out / "last_checkpoint").write_text("model_0000001.pth")
    result = train_net("--resume", *overrides(out), config=leaves_config, script=PRETRAIN_NET)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "resuming from" in log and "at iteration 2" in log
    assert (out / "model_final.pth").is_file()


def test_exported_backbone_carries_the_runs_pixel_format_into_detection(pretrained):
    exported = pretrained / "model_final_backbone.pth"
    detection = model_zoo.get_config("Demo/resnet18_c4_synthetic.yaml")
    detection.MODEL.DEVICE = "cpu"
    with pytest.raises(WeightsConfigMismatchError, match="INPUT.FORMAT BGR"):
        check_weights_match_config(detection, str(exported))  # the demo is torchvision's RGB
    detection.INPUT.FORMAT = "BGR"
    detection.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
    detection.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]
    assert check_weights_match_config(detection, str(exported))["arch"] == "resnet18"

    model = build_model(detection)
    DetectionCheckpointer(model).load(str(exported))
    classifier = torch.load(pretrained / "model_final.pth", map_location="cpu",
                            weights_only=True)["model"]
    assert torch.equal(model.backbone.res4[0].conv1.weight,
                       classifier["backbone.res4.0.conv1.weight"])
    assert torch.equal(model.roi_heads.res5[1].conv2.norm.running_var,
                       classifier["backbone.res5.1.conv2.norm.running_var"])


def test_train_net_takes_a_training_step_from_the_exported_backbone(pretrained, train_net, tiny,
                                                                   tmp_path):
    bgr = ("INPUT.FORMAT", "BGR", "MODEL.PIXEL_MEAN", "[103.530, 116.280, 123.675]",
           "MODEL.PIXEL_STD", "[1.0, 1.0, 1.0]")
    weights = ("MODEL.WEIGHTS", str(pretrained / "model_final_backbone.pth"))
    refused = train_net(*tiny, *weights, "OUTPUT_DIR", str(tmp_path / "refused"))
    assert refused.returncode != 0 and "INPUT.FORMAT BGR" in refused.stderr
    assert not (tmp_path / "refused").exists()
    result = train_net(*tiny, *weights, *bgr, "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()",
                       "OUTPUT_DIR", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "model_final.pth").is_file()


def test_a_detection_config_is_refused_before_anything_runs(train_net, tmp_path):
    result = train_net("OUTPUT_DIR", str(tmp_path / "out"), script=PRETRAIN_NET)
    assert result.returncode != 0
    assert "MODEL.META_ARCHITECTURE=GeneralizedRCNN" in result.stderr
    assert not (tmp_path / "out").exists()


def test_killed_plain_net_run_resumes_to_the_same_weights(train_net, leaves_config, tmp_path):
    """Plain-18 (no shortcuts) killed with SIGKILL after its first checkpoint, then --resume:
    the same final weights as a run that was never interrupted (PreciseBN included)."""
    plain = ("MODEL.RESNET_BACKBONE.RESIDUAL", "False", "SEED", "3", "DATASETS.TEST", "()")
    run = functools.partial(train_net, config=leaves_config, script=PRETRAIN_NET)
    straight = tmp_path / "straight"
    result = run(*overrides(straight, max_iter=6), *plain)
    assert result.returncode == 0, result.stderr[-3000:]

    killed = tmp_path / "killed"
    train_net.kill_after_first_checkpoint(killed, *overrides(killed, max_iter=6), *plain,
                                          config=leaves_config, script=PRETRAIN_NET)

    result = run("--resume", *overrides(killed, max_iter=6), *plain)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = torch.load(straight / "model_final.pth", map_location="cpu",
                          weights_only=True)["model"]
    final = torch.load(killed / "model_final.pth", map_location="cpu", weights_only=True)["model"]
    assert not any("shortcut" in key for key in final)
    different = [k for k in expected if not torch.equal(expected[k], final[k])]
    assert not different, f"weights differ after the resume: {different[:5]}"
