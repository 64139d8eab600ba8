"""The shipped configs, loaded by name through resnet_backbone.model_zoo: every detection leaf
builds and runs on CPU, names registered data with its class count, and the paper's comparisons
(plain vs residual, VGG-16 vs ResNet-101) differ only in the network. That each config's pixel
format fits its weights is tests/test_weights.py's. The fast subset builds one detection leaf of
each network design; `make test` builds them all."""
from pathlib import Path

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

import resnet_backbone.classification  # noqa: F401 (the classifiers' configs need their keys)
from conftest import fast_subset
from resnet_backbone import model_zoo

LEAVES = [name for name in model_zoo.list_configs()
          if name.endswith(".yaml") and not Path(name).name.startswith("Base-")]
DETECTION_LEAVES = [name for name in LEAVES if "-Detection/" in name or name.startswith("Demo/")]
PLAIN_LEAVES = [name for name in LEAVES if Path(name).name.startswith("plain")]
# One leaf per network design (basic and bottleneck blocks, plain, SyncBN, FPN, VGG-16); the
# other leaves differ from one of these in depth, data or schedule.
REPRESENTATIVE_LEAVES = ("Demo/resnet18_c4_synthetic.yaml", "Demo/plain18_c4_synthetic.yaml",
                         "PascalVOC-Detection/resnet50_c4_voc0712.yaml",
                         "PascalVOC-Detection/resnet18_c4_scratch_voc0712.yaml",
                         "PascalVOC-Detection/resnet50_fpn_voc0712.yaml",
                         "PascalVOC-Detection/vgg16_voc0712.yaml")
PAPER_ROWS = {
    "Table 7, VOC 07 test": ("PascalVOC-Detection/vgg16_voc0712.yaml",
                             "PascalVOC-Detection/resnet101_c4_voc0712.yaml"),
    "Table 7, VOC 12 test": ("PascalVOC-Detection/vgg16_voc07pp12.yaml",
                             "PascalVOC-Detection/resnet101_c4_voc07pp12.yaml"),
    "Table 8, COCO val": ("COCO-Detection/vgg16_coco2014.yaml",
                          "COCO-Detection/resnet101_c4_coco2014.yaml"),
}


def differences(a, b, prefix=""):
    """Dotted keys whose values differ between two configs."""
    keys = set(a) | set(b)
    found = set()
    for key in keys:
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            found |= differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            found.add(prefix + key)
    return found


@pytest.mark.parametrize("name", fast_subset(DETECTION_LEAVES, fast=REPRESENTATIVE_LEAVES))
def test_detection_config_builds_and_runs_on_cpu(shipped_config, name):
    cfg = shipped_config(name, "MODEL.WEIGHTS", "")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        outputs = model([{"image": torch.zeros(3, 64, 80, dtype=torch.uint8)}])
    assert "instances" in outputs[0]


@pytest.mark.parametrize("name", LEAVES)
def test_leaf_data_is_registered_with_the_configured_classes(name):
    cfg = model_zoo.get_config(name)
    registered = set(DatasetCatalog.list())
    for dataset in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST):
        assert dataset in registered, f"{name}: dataset {dataset} is not registered"
        classes = MetadataCatalog.get(dataset).get("thing_classes")
        if classes and cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
            assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == len(classes), f"{name}: {dataset}"


@pytest.mark.parametrize("name", PLAIN_LEAVES)
def test_plain_net_differs_from_its_residual_twin_only_in_the_shortcuts(name):
    twin = name.replace("/plain", "/resnet")
    assert twin in LEAVES, f"{name} has no residual twin {twin}"
    plain, residual = model_zoo.get_config(name), model_zoo.get_config(twin)
    assert not plain.MODEL.RESNET_BACKBONE.RESIDUAL and residual.MODEL.RESNET_BACKBONE.RESIDUAL
    assert differences(plain, residual) <= {"MODEL.RESNET_BACKBONE.RESIDUAL", "OUTPUT_DIR"}


@pytest.mark.parametrize("row", PAPER_ROWS, ids=str)
def test_vgg16_and_resnet101_rows_differ_only_in_the_network(row):
    """Everything but the network, its weights and their pixel format is shared, as in the
    paper's Tables 7 and 8."""
    vgg, resnet = (model_zoo.get_config(name) for name in PAPER_ROWS[row])
    network = ("MODEL.BACKBONE.NAME", "MODEL.WEIGHTS", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD",
               "INPUT.FORMAT", "MODEL.RPN.IN_FEATURES", "MODEL.ROI_HEADS.NAME",
               "MODEL.ROI_HEADS.IN_FEATURES", "MODEL.ROI_BOX_HEAD.NAME",
               "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", "MODEL.RESNETS.DEPTH")
    assert differences(vgg, resnet) <= set(network)
    assert vgg.MODEL.BACKBONE.NAME == "build_vgg16_backbone"
    assert resnet.MODEL.RESNETS.DEPTH == 101


def test_unknown_config_name_lists_the_shipped_ones():
    with pytest.raises(FileNotFoundError) as error:
        model_zoo.get_config_file("PascalVOC-Detection/resnet101_c4_voc2007.yaml")
    assert "PascalVOC-Detection/resnet101_c4_voc0712.yaml" in str(error.value)
