"""Your own data through DATASETS.USER: a VOC tree with your class names and a COCO json train and
evaluate with tools/train_net.py (one process and two), and bad declarations stop at start-up."""
import json
import math

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image, ImageDraw

from resnet_backbone.data.custom import check_user_datasets, register_user_datasets
from resnet_backbone.engine.trainer import FINAL_METRICS, Trainer
from resnet_backbone.engine.startup import check_evaluators

CLASSES = ("apple", "pear")
SIZES = [(96, 80), (80, 96), (96, 96), (88, 72), (72, 88), (96, 64)]


def _objects(index, width, height):
    """Two boxes per image, one of each class: (class, x0, y0, x1, y1), pixel corners."""
    a = 4 + 3 * index
    return [(CLASSES[0], a, a, a + 30, a + 24), (CLASSES[1], width - 40, height - 36,
                                                   width - 6, height - 6)]


def _draw(path, index, width, height):
    image = Image.new("RGB", (width, height), (200, 200, 200))
    draw = ImageDraw.Draw(image)
    for name, x0, y0, x1, y1 in _objects(index, width, height):
        fill = (220, 30, 30) if name == CLASSES[0] else (30, 160, 30)
        (draw.ellipse if name == CLASSES[0] else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    image.save(path)


def _voc_xml(index, width, height):
    objects = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, x0, y0, x1, y1 in _objects(index, width, height))
    return (f"<annotation><filename>{index:04d}.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objects}</annotation>")


@pytest.fixture(scope="module")
def fruit(tmp_path_factory):
    """A VOC tree (`voc/`, splits train and test) and COCO jsons (`coco/`) of the same images."""
    root = tmp_path_factory.mktemp("fruit")
    voc = root / "voc"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (voc / sub).mkdir(parents=True)
    images, annotations = [], []
    for index, (width, height) in enumerate(SIZES):
        _draw(voc / "JPEGImages" / f"{index:04d}.jpg", index, width, height)
        (voc / "Annotations" / f"{index:04d}.xml").write_text(_voc_xml(index, width, height))
        images.append({"id": index + 1, "file_name": f"{index:04d}.jpg", "width": width,
                       "height": height})
        for name, x0, y0, x1, y1 in _objects(index, width, height):
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1,
                                "category_id": CLASSES.index(name) + 1, "iscrowd": 0,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
    (voc / "ImageSets/Main/train.txt").write_text("".join(f"{i:04d}\n" for i in range(4)))
    (voc / "ImageSets/Main/test.txt").write_text("".join(f"{i:04d}\n" for i in range(4, 6)))
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CLASSES)]
    (root / "coco").mkdir()
    for split, ids in (("train", range(4)), ("val", range(4, 6))):
        (root / "coco" / f"{split}.json").write_text(json.dumps({
            "images": [images[i] for i in ids], "categories": categories,
            "annotations": [a for a in annotations if a["image_id"] - 1 in ids]}))
    return root


def _voc_entry(root, split):
    return {"FORMAT": "voc", "DIRNAME": str(root / "voc"), "SPLIT": split,
            "CLASSES": list(CLASSES)}


def _coco_entry(root, split):
    return {"FORMAT": "coco", "JSON": str(root / "coco" / f"{split}.json"),
            "IMAGE_ROOT": str(root / "voc" / "JPEGImages")}


def _config(directory, base, user, train, test, num_classes=len(CLASSES)):
    """A leaf config (JSON is YAML) declaring `user` datasets, training on one, testing one."""
    path = directory / "fruit.yaml"
    path.write_text(json.dumps({
        "_BASE_": str(base), "DATASETS": {"USER": user, "TRAIN": [train], "TEST": [test]},
        "MODEL": {"ROI_HEADS": {"NUM_CLASSES": num_classes}}}))
    return path


def _strict_metrics(run_dir):
    def refuse(constant):
        raise ValueError(constant)

    return json.loads((run_dir / FINAL_METRICS).read_text(), parse_constant=refuse)


@pytest.mark.slow
def test_your_voc_tree_trains_evaluates_and_reloads_from_the_run_config(train_net, tiny,
                                                                        demo_config, fruit,
                                                                        tmp_path):
    user = {"fruit_train": _voc_entry(fruit, "train"), "fruit_test": _voc_entry(fruit, "test")}
    config = _config(tmp_path, demo_config, user, "fruit_train", "fruit_test")
    run = tmp_path / "run"
    result = train_net(*tiny, "OUTPUT_DIR", str(run), config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert math.isfinite(_strict_metrics(run)["fruit_test"]["bbox"]["AP50"])

    # --eval-only with the config.yaml the run wrote: the datasets travel with the run.
    again = tmp_path / "again"
    result = train_net("--eval-only", "MODEL.WEIGHTS", str(run / "model_final.pth"),
                       "OUTPUT_DIR", str(again), config=run / "config.yaml")
    assert result.returncode == 0, result.stderr[-3000:]
    assert _strict_metrics(again) == _strict_metrics(run)


@pytest.mark.slow
def test_your_coco_json_trains_and_evaluates(train_net, tiny, demo_config, fruit, tmp_path):
    user = {"fruit_coco_train": _coco_entry(fruit, "train"),
            "fruit_coco_val": _coco_entry(fruit, "val")}
    config = _config(tmp_path, demo_config, user, "fruit_coco_train", "fruit_coco_val")
    run = tmp_path / "run"
    result = train_net(*tiny, "OUTPUT_DIR", str(run), config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"AP", "AP50"} <= set(_strict_metrics(run)["fruit_coco_val"]["bbox"])


@pytest.mark.distributed
def test_your_voc_tree_with_two_processes_then_resumed(train_net, tiny, demo_config, fruit,
                                                        tmp_path):
    """Every spawned worker registers the datasets from the config; --resume finds them too."""
    user = {"fruit_train": _voc_entry(fruit, "train"), "fruit_test": _voc_entry(fruit, "test")}
    config = _config(tmp_path, demo_config, user, "fruit_train", "fruit_test")
    run = tmp_path / "run"
    two = ("--num-gpus", "2", "--dist-url", "auto", *tiny, "SOLVER.IMS_PER_BATCH", "4",
           "DATALOADER.ASPECT_RATIO_GROUPING", "False", "OUTPUT_DIR", str(run))
    result = train_net(*two, config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "fruit_test" in _strict_metrics(run)
    result = train_net("--resume", *two, "SOLVER.MAX_ITER", "3", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from" in result.stdout + result.stderr


@pytest.fixture
def _cfg(shipped_config):
    """`_cfg(user, train, test, num_classes)`: the demo config with DATASETS.USER `user`."""

    def build(user, train=(), test=(), num_classes=len(CLASSES)):
        cfg = shipped_config("Demo/resnet18_c4_synthetic.yaml", "DATASETS.TRAIN", tuple(train),
                             "DATASETS.TEST", tuple(test),
                             "MODEL.ROI_HEADS.NUM_CLASSES", num_classes)
        cfg.merge_from_other_cfg(cfg.__class__({"DATASETS": {"USER": user}}))
        return cfg

    return build


def test_registration_gives_your_classes_and_the_voc_evaluator(_cfg, fruit):
    register_user_datasets(_cfg({"fruit_unit": _voc_entry(fruit, "train")}))
    meta = MetadataCatalog.get("fruit_unit")
    assert meta.thing_classes == list(CLASSES) and meta.evaluator_type == "pascal_voc"
    records = DatasetCatalog.get("fruit_unit")
    assert [r["image_id"] for r in records] == ["0000", "0001", "0002", "0003"]
    assert [a["category_id"] for a in records[0]["annotations"]] == [0, 1]


@pytest.mark.parametrize("entry, message", [
    ({"FORMAT": "yolo"}, r"DATASETS.USER.bad.FORMAT='yolo': use one of \['coco', 'imagefolder', 'voc'\]"),
    ({"FORMAT": "voc", "DIRNAME": "d", "SPLIT": "s", "CLASES": ["a"]},
     r"DATASETS.USER.bad \(voc\): unknown keys \['CLASES'\], missing keys \['CLASSES'\]"),
    ({"FORMAT": "voc", "DIRNAME": "d", "SPLIT": "s", "CLASSES": ["a", "a"]},
     r"DATASETS.USER.bad.CLASSES=\['a', 'a'\]: give a list of distinct class names"),
])
def test_bad_declarations_name_the_key(_cfg, entry, message):
    with pytest.raises((KeyError, ValueError), match=message):
        register_user_datasets(_cfg({"bad": entry}))


def test_a_builtin_name_is_not_taken_over(_cfg, fruit):
    with pytest.raises(ValueError, match="voc_2007_test.*already registered"):
        register_user_datasets(_cfg({"voc_2007_test": _voc_entry(fruit, "test")}))


@pytest.mark.parametrize("make_entry", [_voc_entry, _coco_entry])
def test_num_classes_must_match_your_classes(_cfg, fruit, make_entry):
    name = f"fruit_classes_{make_entry.__name__}"
    cfg = _cfg({name: make_entry(fruit, "val" if make_entry is _coco_entry else "test")},
               test=[name], num_classes=5)
    register_user_datasets(cfg)
    with pytest.raises(ValueError, match=rf"NUM_CLASSES=5 but dataset {name} has 2 classes"):
        check_user_datasets(cfg)


def test_a_test_set_without_evaluator_stops_at_start_up(_cfg):
    DatasetCatalog.register("no_evaluator_set", lambda: [])
    try:
        with pytest.raises(ValueError, match="no evaluator for dataset 'no_evaluator_set'"):
            check_evaluators(_cfg({}, test=["no_evaluator_set"]), Trainer)
    finally:
        DatasetCatalog.remove("no_evaluator_set")
        MetadataCatalog.remove("no_evaluator_set")
