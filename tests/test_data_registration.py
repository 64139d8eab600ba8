"""Every dataset name is registered once and loads from a tiny fake tree at the root of the
moment; the tree checker finds faults."""
import importlib.util
import json
import os
import shutil

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES
from detectron2.structures import Boxes, Instances
from PIL import Image

import resnet_backbone.data as data
from resnet_backbone.data.layout import PAPER_SPLITS, SYNTHETIC_COCO_SPLITS, SYNTHETIC_VOC_SPLITS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _jpg(path, w, h, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def _voc(dirname, split, ids, annotated=True, size=(40, 30)):
    w, h = size
    os.makedirs(os.path.join(dirname, "ImageSets", "Main"), exist_ok=True)
    with open(os.path.join(dirname, "ImageSets", "Main", split + ".txt"), "w") as f:
        f.write("".join(i + "\n" for i in ids))
    for k, i in enumerate(ids):
        _jpg(os.path.join(dirname, "JPEGImages", i + ".jpg"), w, h, k)
        if annotated:
            os.makedirs(os.path.join(dirname, "Annotations"), exist_ok=True)
            with open(os.path.join(dirname, "Annotations", i + ".xml"), "w") as f:
                f.write(
                    f"<annotation><filename>{i}.jpg</filename><size><width>{w}</width>"
                    f"<height>{h}</height><depth>3</depth></size><object><name>dog</name>"
                    "<pose>Left</pose><truncated>0</truncated><difficult>0</difficult>"
                    "<bndbox><xmin>3</xmin><ymin>4</ymin><xmax>20</xmax><ymax>25</ymax></bndbox>"
                    "</object></annotation>"
                )


def _coco(root, image_dir, json_name, names, first_id=1):
    things = [c for c in COCO_CATEGORIES if c["isthing"]]
    images, annotations = [], []
    for k, name in enumerate(names):
        _jpg(os.path.join(root, image_dir, name), 32, 24, k)
        images.append({"id": first_id + k, "file_name": name, "width": 32, "height": 24})
        annotations.append({"id": first_id + k, "image_id": first_id + k, "category_id": 18,
                            "bbox": [2, 3, 10, 12], "area": 120, "iscrowd": 0})
    os.makedirs(os.path.join(root, "coco", "annotations"), exist_ok=True)
    categories = [{"id": c["id"], "name": c["name"]} for c in things]
    with open(os.path.join(root, "coco", "annotations", json_name), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def make_fake_tree(root):
    """A miniature $DETECTRON2_DATASETS: every part the paper uses, two images per split."""
    root = str(root)
    _voc(os.path.join(root, "VOC2007"), "trainval", ["000005", "000007"])
    _voc(os.path.join(root, "VOC2007"), "test", ["000001", "000002"])
    _voc(os.path.join(root, "VOC2012"), "trainval", ["2008_000002", "2008_000003"])
    _voc(os.path.join(root, "VOC2012"), "test", ["2008_000001", "2008_000004"], annotated=False,
         size=(50, 36))
    _coco(root, "coco/train2014", "instances_train2014.json", ["a.jpg", "b.jpg"])
    _coco(root, "coco/val2014", "instances_val2014.json", ["c.jpg", "d.jpg"], first_id=10)
    _coco(root, "coco/val2014", "instances_minival2014.json", ["c.jpg"], first_id=10)
    _coco(root, "coco/val2014", "instances_valminusminival2014.json", ["d.jpg"], first_id=11)
    _coco(root, "coco/train2017", "instances_train2017.json", ["e.jpg", "f.jpg"])
    _coco(root, "coco/val2017", "instances_val2017.json", ["g.jpg", "h.jpg"])
    data.ensure_synthetic(data.synthetic_root(root), num_train=3, num_val=2)
    return root


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    root = make_fake_tree(tmp_path / "d2")
    monkeypatch.setenv("DETECTRON2_DATASETS", root)
    return root


def test_default_root_keeps_detectron2s_coco_entries_and_voc_paths():
    root = data.datasets_root()
    for name in ("coco_2014_train", "coco_2014_val", "coco_2017_val"):
        expected = os.path.join(root, PAPER_SPLITS[name].json_file)
        assert MetadataCatalog.get(name).json_file == expected
    assert MetadataCatalog.get("voc_2007_test").dirname == os.path.join(root, "VOC2007")
    assert MetadataCatalog.get("voc_2007_test").evaluator_type == "pascal_voc"


def test_every_name_loads_from_a_given_root(fake_root):
    names = list(PAPER_SPLITS) + list(data.VOC_COMBOS)
    names += list(SYNTHETIC_COCO_SPLITS) + list(SYNTHETIC_VOC_SPLITS)
    for name in names:
        records = DatasetCatalog.get(name)
        assert records, name
        for r in records:
            assert r["file_name"].startswith(fake_root) and os.path.isfile(r["file_name"]), name
            assert r["height"] > 0 and r["width"] > 0
    voc = DatasetCatalog.get("voc_2007_trainval")
    assert voc[0]["image_id"] == "000005"
    assert voc[0]["annotations"][0]["bbox"] == [2.0, 3.0, 20.0, 25.0]  # VOC 1-based -> 0-based
    assert voc[0]["annotations"][0]["category_id"] == data.VOC_CLASS_NAMES.index("dog")
    coco = DatasetCatalog.get("coco_2014_train")
    classes = MetadataCatalog.get("coco_2014_train").thing_classes
    assert classes[coco[0]["annotations"][0]["category_id"]] == "dog"


def test_voc_2012_test_has_images_and_sizes_but_no_labels(fake_root):
    records = DatasetCatalog.get("voc_2012_test")
    assert [r["image_id"] for r in records] == ["2008_000001", "2008_000004"]
    assert all((r["width"], r["height"]) == (50, 36) and "annotations" not in r for r in records)
    meta = MetadataCatalog.get("voc_2012_test")
    assert (meta.year, meta.split, meta.evaluator_type) == (2012, "test", "pascal_voc_submission")
    assert len(meta.thing_classes) == 20


def test_voc_combos_concatenate_their_parts(fake_root):
    for name, parts in data.VOC_COMBOS.items():
        ids = [r["image_id"] for r in DatasetCatalog.get(name)]
        assert ids == [r["image_id"] for p in parts for r in DatasetCatalog.get(p)]
    assert len(DatasetCatalog.get("voc_0712pp_trainval")) == 6


def _perfect_output(record):
    """A model output holding exactly the ground-truth boxes of `record`."""
    inst = Instances((record["height"], record["width"]))
    inst.pred_boxes = Boxes(torch.tensor([a["bbox"] for a in record["annotations"]]))
    inst.scores = torch.ones(len(record["annotations"]))
    inst.pred_classes = torch.tensor([a["category_id"] for a in record["annotations"]])
    return {"instances": inst}


def test_each_name_is_registered_once_and_follows_the_root(fake_root, tmp_path, monkeypatch):
    """Registered at import; a $DETECTRON2_DATASETS set later is read when a split is loaded
    and when its evaluator is built, the catalogs' entries staying as they are."""
    names = DatasetCatalog.list()
    entries = {name: (DatasetCatalog[name], MetadataCatalog.get(name)) for name in names}
    other = make_fake_tree(tmp_path / "other")
    shutil.rmtree(fake_root)  # what is found now can only come from `other`
    monkeypatch.setenv("DETECTRON2_DATASETS", other)

    for name in ("voc_2007_test", "coco_2014_val", "synthetic_shapes_val", "voc_0712pp_trainval"):
        assert all(r["file_name"].startswith(other) for r in DatasetCatalog.get(name)), name
    assert data.dataset_location("voc_2007_test") == {"dirname": os.path.join(other, "VOC2007")}
    assert MetadataCatalog.get("coco_2014_val").json_file == os.path.join(
        other, "coco", "annotations", "instances_val2014.json")

    voc = data.build_evaluator(None, "voc_2007_test", str(tmp_path / "voc_eval"))
    voc.reset()
    for record in DatasetCatalog.get("voc_2007_test"):
        voc.process([record], [_perfect_output(record)])
    # other's xml files read: dog's AP is 100, the 19 classes without boxes count 0
    assert voc.evaluate()["bbox"]["AP50"] == pytest.approx(100.0 / 20)
    coco = data.build_evaluator(None, "coco_2014_val", str(tmp_path / "coco_eval"))
    assert sorted(coco._coco_api.getImgIds()) == [10, 11]  # opened other's json

    assert DatasetCatalog.list() == names
    for name, (load, meta) in entries.items():  # the same objects: nothing re-registered
        assert DatasetCatalog[name] is load and MetadataCatalog.get(name) is meta, name


def test_synthetic_metadata_serves_both_evaluators(fake_root):
    coco = MetadataCatalog.get("synthetic_shapes_val")
    assert coco.json_file.startswith(fake_root) and os.path.isfile(coco.json_file)
    assert coco.thing_classes == list(data.SHAPE_CLASSES)
    voc = MetadataCatalog.get("synthetic_shapes_voc_val")
    assert (voc.year, voc.split, voc.thing_classes) == (2007, "val", list(data.SHAPE_CLASSES))
    assert os.path.isdir(os.path.join(voc.dirname, "Annotations"))


def test_build_evaluator_rejects_unknown_and_training_only_names(tmp_path):
    with pytest.raises(KeyError, match="no_such_dataset"):
        data.build_evaluator(None, "no_such_dataset", str(tmp_path))
    with pytest.raises(ValueError, match="voc_2007_2012_trainval.*training set"):
        data.build_evaluator(None, "voc_2007_2012_trainval", str(tmp_path))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # numpy's note on np.str
def test_voc_loader_matches_detectron2s(fake_root, monkeypatch):
    from detectron2.data.datasets.pascal_voc import load_voc_instances

    monkeypatch.setattr(np, "str", str, raising=False)  # v0.6 still calls np.str

    dirname = os.path.join(fake_root, "VOC2007")
    ours = data.load_voc_split(dirname, "test", data.VOC_CLASS_NAMES)
    assert ours == load_voc_instances(dirname, "test", data.VOC_CLASS_NAMES)


# ---- datasets/check_datasets.py ------------------------------------------------------------------


def _checker():
    spec = importlib.util.spec_from_file_location(
        "check_datasets", os.path.join(REPO, "datasets", "check_datasets.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checker_accepts_a_complete_tree_and_names_what_breaks(tmp_path, capsys):
    check = _checker()
    root = make_fake_tree(tmp_path / "d2")
    assert check.main(["--root", root]) == 0
    out = capsys.readouterr().out
    assert "warning: voc_2007_test: 2 images, the official release has 4952" in out

    os.remove(os.path.join(root, "VOC2007", "JPEGImages", "000002.jpg"))
    broken_xml = os.path.join(root, "VOC2012", "Annotations", "2008_000003.xml")
    with open(broken_xml, "w") as f:
        f.write("<annotation><size>")
    os.remove(os.path.join(root, "coco", "val2017", "h.jpg"))
    assert check.main(["--root", root]) == 1
    out = capsys.readouterr().out
    assert "3 part(s) with problems: voc2007, voc2012, coco2017" in out
    missing = os.path.join(root, "VOC2007", "JPEGImages", "000002.jpg")
    assert f"{missing} (image_id '000002'): image file does not exist" in out
    assert f"{broken_xml}: not well-formed XML" in out
    h_jpg = os.path.join(root, "coco", "val2017", "h.jpg")
    assert f"{h_jpg} (image_id 2): image file does not exist" in out
    assert check.main(["--root", root, "coco2014", "synthetic"]) == 0
    assert check.main(["--root", root, "nonsense"]) == 2


def test_checker_points_at_an_unlinked_vocdevkit(tmp_path, capsys):
    _voc(str(tmp_path / "VOCdevkit" / "VOC2007"), "trainval", ["000005", "000007"])
    assert _checker().main(["--root", str(tmp_path), "voc2007"]) == 1
    assert "ln -s VOCdevkit/VOC2007" in capsys.readouterr().out


def test_checker_checks_the_user_datasets_of_a_config(tmp_path, capsys):
    """--config-file: the config's DATASETS.TRAIN/TEST, DATASETS.USER registered from it."""
    root = make_fake_tree(tmp_path / "d2")
    voc = os.path.join(root, "VOC2007")
    config = tmp_path / "mine.yaml"
    user = {"MINE_TRAIN": {"FORMAT": "voc", "DIRNAME": voc, "SPLIT": "trainval",
                           "CLASSES": list(data.VOC_CLASS_NAMES)}}
    config.write_text(json.dumps({
        "_BASE_": os.path.join(REPO, "configs", "Demo", "resnet18_c4_synthetic.yaml"),
        "DATASETS": {"USER": user, "TRAIN": ["MINE_TRAIN"], "TEST": []}}))
    check = _checker()
    assert check.main(["--config-file", str(config)]) == 0
    assert "MINE_TRAIN:" in capsys.readouterr().out
    with open(os.path.join(voc, "ImageSets", "Main", "trainval.txt")) as f:
        first = f.readline().strip() + ".jpg"
    os.remove(os.path.join(voc, "JPEGImages", first))
    assert check.main(["--config-file", str(config), "SOLVER.MAX_ITER", "3"]) == 1
    out = capsys.readouterr().out
    assert "image file does not exist" in out and first in out


def test_a_user_dataset_name_is_registered_once(tmp_path, monkeypatch):
    from detectron2.config import CfgNode, get_cfg

    from resnet_backbone import add_resnet_backbone_config
    from resnet_backbone.data.custom import register_user_datasets

    def declare(dirname):
        cfg = add_resnet_backbone_config(get_cfg())
        cfg.DATASETS.USER["mine_once"] = CfgNode(
            {"FORMAT": "voc", "DIRNAME": dirname, "SPLIT": "test", "CLASSES": ["dog"]})
        register_user_datasets(cfg)

    declare("mine")
    declare("mine")  # the same declaration again (every set-up of a process): nothing happens
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert data.dataset_location("mine_once") == {"dirname": str(tmp_path / "mine")}
    with pytest.raises(ValueError, match="DATASETS.USER.mine_once: .*registered once"):
        declare("yours")
