"""Every shipped config trains at the paper's learning rate per image, scaled linearly to its
batch (Goyal et al. 2017): CIFAR-10 0.1 at batch 128 and ImageNet 0.1 at batch 256 (He et al.
2015), VGG-16 on ImageNet 0.01 at batch 256 (Simonyan & Zisserman 2015: without BN it does not
train at 0.1), detection 0.02 at batch 16 (the full-scale VOC and COCO configs, Detectron2's
tested rate).
The laptop demos train with small batches; at a higher rate per image the deeper nets of the
classification demo stalled near chance on some seeds, and the detection demo's Plain-18 fell
far behind ResNet-18."""
from pathlib import Path

import pytest

import resnet_backbone.classification  # noqa: F401 (the classifiers' configs need their keys)
from resnet_backbone import model_zoo
from resnet_backbone.engine import lazy
from resnet_backbone.model_zoo import config_root

RATE_PER_IMAGE = {"CIFAR-10": 0.1 / 128, "ImageNet": 0.1 / 256, "ImageNet, VGG-16": 0.01 / 256,
                  "detection": 0.02 / 16}
YAML_LEAVES = [name for name in model_zoo.list_configs()
               if name.endswith(".yaml") and not Path(name).name.startswith("Base-")]
DEMO_LAZY_LEAVES = sorted(str(p.relative_to(config_root())) for p in
                          (config_root() / "Demo").glob("*.py"))


def family_of(cfg):
    if cfg.MODEL.META_ARCHITECTURE != "ImageClassifier":
        return "detection"
    if "cifar" in cfg.MODEL.BACKBONE.NAME:
        return "CIFAR-10"
    return "ImageNet, VGG-16" if "vgg16" in cfg.MODEL.BACKBONE.NAME else "ImageNet"


def test_the_demos_are_among_the_configs_checked():
    assert {"Demo/resnet18_c4_synthetic.yaml", "Demo/plain34_c4_synthetic.yaml",
            "Demo-Classification/resnet56.yaml"} <= set(YAML_LEAVES)
    assert "Demo/resnet34_c4_synthetic.py" in DEMO_LAZY_LEAVES


@pytest.mark.parametrize("name", YAML_LEAVES)
def test_yaml_config_keeps_the_papers_rate_per_image(name):
    cfg = model_zoo.get_config(name)
    rate = cfg.SOLVER.BASE_LR / cfg.SOLVER.IMS_PER_BATCH
    assert rate == pytest.approx(RATE_PER_IMAGE[family_of(cfg)], rel=1e-9), (
        f"{name}: BASE_LR {cfg.SOLVER.BASE_LR} at IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH}")


@pytest.mark.parametrize("name", DEMO_LAZY_LEAVES)
def test_lazy_demo_keeps_the_papers_rate_per_image(name):
    config = lazy.load(str(config_root() / name))
    rate = config.optimizer.lr / config.dataloader.train.total_batch_size
    assert rate == pytest.approx(RATE_PER_IMAGE["detection"], rel=1e-9), name
