"""Every YAML in configs/ merges and builds on CPU; leaves name registered data and weights whose
pixel format the config matches."""
from pathlib import Path

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

import resnet_backbone  # noqa: F401  (registers datasets and builders)
from resnet_backbone import add_resnet_backbone_config
from resnet_backbone.weights import KNOWN_WEIGHTS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
ALL_CONFIGS = sorted(CONFIG_DIR.rglob("*.yaml"))
LEAVES = [p for p in ALL_CONFIGS if not p.name.startswith("Base-")]


def load(path):
    cfg = add_resnet_backbone_config(get_cfg())
    cfg.merge_from_file(str(path))
    return cfg


def test_there_is_a_config_for_every_paper_row():
    names = {p.relative_to(CONFIG_DIR).as_posix() for p in LEAVES}
    for row in (
        "PascalVOC-Detection/vgg16_voc0712.yaml",
        "PascalVOC-Detection/resnet101_c4_voc0712.yaml",
        "PascalVOC-Detection/vgg16_voc07pp12.yaml",
        "PascalVOC-Detection/resnet101_c4_voc07pp12.yaml",
        "COCO-Detection/vgg16_coco2014.yaml",
        "COCO-Detection/resnet101_c4_coco2014.yaml",
    ):
        assert row in names


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: p.relative_to(CONFIG_DIR).as_posix())
def test_config_merges_and_builds_on_cpu(path):
    cfg = load(path)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    torch.manual_seed(0)
    model = build_model(cfg)
    model.eval()
    with torch.no_grad():
        outputs = model([{"image": torch.zeros(3, 64, 80, dtype=torch.uint8)}])
    assert "instances" in outputs[0]


@pytest.mark.parametrize("path", LEAVES, ids=lambda p: p.relative_to(CONFIG_DIR).as_posix())
def test_leaf_data_is_registered_and_weights_match_pixel_format(path):
    cfg = load(path)
    registered = set(DatasetCatalog.list())
    for name in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        assert name in registered, f"{path.name}: dataset {name} is not registered"
    if not cfg.MODEL.WEIGHTS.startswith("imagenet://"):
        return
    weights = KNOWN_WEIGHTS[cfg.MODEL.WEIGHTS[len("imagenet://"):]]
    fmt = weights.pixel_format
    assert cfg.INPUT.FORMAT == fmt.input_format
    assert cfg.MODEL.PIXEL_MEAN == pytest.approx(list(fmt.pixel_mean))
    assert cfg.MODEL.PIXEL_STD == pytest.approx(list(fmt.pixel_std))
    if weights.arch.startswith("resnet"):
        assert cfg.MODEL.BACKBONE.NAME.startswith("build_paper_resnet")
        assert weights.arch == f"resnet{cfg.MODEL.RESNETS.DEPTH}"
        assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 == fmt.stride_in_1x1
    else:
        assert cfg.MODEL.BACKBONE.NAME.startswith("build_vgg16")
