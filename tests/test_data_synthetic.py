"""The synthetic dataset generator: determinism, idempotence, atomic writes, both forms loading."""
import dataclasses
import filecmp
import importlib.util
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from detectron2.structures import BoxMode

import resnet_backbone.data as data
from resnet_backbone.data import synthetic
from resnet_backbone.data.layout import (
    SHAPE_CLASSES,
    SYNTHETIC_COCO_SPLITS,
    SYNTHETIC_VOC_DIRNAME,
    SYNTHETIC_VOC_SPLITS,
)

TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                    "make_synthetic_data.py")

SMALL = dict(num_train=6, num_val=3)


def _files(root):
    out = []
    for dirpath, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, n), root) for n in names]
    return sorted(out)


def test_render_is_deterministic_per_seed():
    params = synthetic.SyntheticParams(seed=3)
    a_img, a_obj = synthetic.render_sample(params, "train", 5)
    b_img, b_obj = synthetic.render_sample(params, "train", 5)
    assert np.array_equal(a_img, b_img) and a_obj == b_obj
    c_img, _ = synthetic.render_sample(synthetic.SyntheticParams(seed=4), "train", 5)
    assert a_img.shape != c_img.shape or not np.array_equal(a_img, c_img)
    d_img, _ = synthetic.render_sample(params, "val", 5)  # other split, other sample
    assert a_img.shape != d_img.shape or not np.array_equal(a_img, d_img)


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = data.ensure_synthetic(str(tmp_path / "a"), seed=0, **SMALL)
    b = data.ensure_synthetic(str(tmp_path / "b"), seed=0, **SMALL)
    c = data.ensure_synthetic(str(tmp_path / "c"), seed=1, **SMALL)
    names = _files(a)
    assert names == _files(b) == _files(c)
    assert len(names) == 1 + 2 + 2 * 9 + 9 + 3  # manifest, 2 json, 2 copies of 9 jpg, 9 xml, 3 txt
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors
    _, differ, _ = filecmp.cmpfiles(a, c, names, shallow=False)
    assert "annotations/instances_train.json" in differ
    assert sum(n.endswith(".jpg") for n in differ) == 18


def test_ensure_is_idempotent_and_regenerates_on_new_params(tmp_path):
    root = str(tmp_path / "syn")
    data.ensure_synthetic(root, **SMALL)
    manifest = os.path.join(root, "manifest.json")
    before = os.stat(manifest).st_mtime_ns, os.stat(manifest).st_ino
    data.ensure_synthetic(root, **SMALL)
    assert (os.stat(manifest).st_mtime_ns, os.stat(manifest).st_ino) == before
    # A writer that finds the same tree already published (another rank won) keeps that one.
    synthetic.write_synthetic(root, synthetic.SyntheticParams(**SMALL))
    assert (os.stat(manifest).st_mtime_ns, os.stat(manifest).st_ino) == before
    data.ensure_synthetic(root, force=True, **SMALL)
    assert os.stat(manifest).st_ino != before[1]
    data.ensure_synthetic(root, num_train=2, num_val=1)
    assert synthetic.read_manifest(root)["params"]["num_train"] == 2
    assert len(os.listdir(os.path.join(root, "images"))) == 3
    assert sorted(os.listdir(tmp_path)) == ["syn"]  # no temporary or old trees left behind


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    root = str(tmp_path / "syn")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # as if killed in the middle

    monkeypatch.setattr(synthetic, "_write_text", boom)
    with pytest.raises(KeyboardInterrupt):
        data.ensure_synthetic(root, **SMALL)
    assert not os.path.exists(root)
    assert not synthetic.is_complete(root)
    assert os.listdir(tmp_path) == []


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    (tmp_path / "syn").mkdir()
    (tmp_path / "syn" / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a synthetic_shapes tree"):
        data.ensure_synthetic(str(tmp_path / "syn"), **SMALL)
    assert (tmp_path / "syn" / "precious.txt").read_text() == "keep me"


def test_objects_are_visible_varied_and_occluded():
    params = synthetic.SyntheticParams()
    classes, sizes, occluded = set(), [], 0
    for i in range(40):
        image, objects = synthetic.render_sample(params, "train", i)
        h, w = image.shape[:2]
        assert params.min_side <= min(h, w) and max(h, w) <= params.max_side
        for obj in objects:
            x0, y0, x1, y1 = obj["bbox"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert 0 < obj["area"] <= (x1 - x0) * (y1 - y0)
            classes.add(obj["category_id"])
            sizes.append(max(x1 - x0, y1 - y0))
            occluded += obj["occluded"]
    assert classes == set(range(len(SHAPE_CLASSES)))
    assert max(sizes) > 2.5 * min(sizes)  # scale variation
    assert occluded >= 5  # some objects are partly hidden by later ones


def test_both_forms_load_through_detectron2_with_the_same_boxes(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    data.ensure_synthetic(data.synthetic_root(), **SMALL)
    for split in ("train", "val"):
        coco = DatasetCatalog.get(f"synthetic_shapes_{split}")
        voc = DatasetCatalog.get(f"synthetic_shapes_voc_{split}")
        assert len(coco) == len(voc) == SMALL[f"num_{split}"]
        by_id = {r["image_id"]: r for r in voc}
        for rec in coco:
            file_id = os.path.splitext(os.path.basename(rec["file_name"]))[0]
            other = by_id[file_id]
            assert (rec["height"], rec["width"]) == (other["height"], other["width"])
            assert open(rec["file_name"], "rb").read() == open(other["file_name"], "rb").read()
            boxes_coco = [
                (a["category_id"], BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS))
                for a in rec["annotations"]
            ]
            boxes_voc = [(a["category_id"], a["bbox"]) for a in other["annotations"]]
            assert boxes_coco == boxes_voc


@pytest.fixture
def small_defaults(monkeypatch):
    """Generation with the defaults, made smaller to keep the tests fast; records the roots."""
    calls = []
    real = synthetic.ensure_synthetic

    def small_ensure(root, **kwargs):
        calls.append(root)
        return real(root, **SMALL)

    monkeypatch.setattr(synthetic, "ensure_synthetic", small_ensure)
    return calls


def test_loading_a_missing_tree_generates_it_once(tmp_path, small_defaults, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    root = str(tmp_path / "synthetic_shapes")
    records = DatasetCatalog.get("synthetic_shapes_voc_val")
    assert len(records) == SMALL["num_val"] and small_defaults == [root]
    assert synthetic.is_complete(root)
    DatasetCatalog.get("synthetic_shapes_train")
    assert small_defaults == [root]  # present now: not generated again


def test_start_up_check_of_a_fresh_root_generates_the_data(shipped_config, tmp_path,
                                                           small_defaults, monkeypatch):
    """What `tools/train_net.py --config-file configs/Demo/...` meets in a fresh clone."""
    cfg = shipped_config("Demo/resnet18_c4_synthetic.yaml", "DATASETS.TEST",
                         tuple(SYNTHETIC_COCO_SPLITS)[1:] + tuple(SYNTHETIC_VOC_SPLITS))
    assert cfg.DATASETS.TRAIN == tuple(SYNTHETIC_COCO_SPLITS)[:1]
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    summary = data.validate_datasets(cfg)
    root = data.synthetic_root(str(tmp_path))
    assert small_defaults == [root] and synthetic.is_complete(root)
    assert summary["synthetic_shapes_val"]["images"] == SMALL["num_val"]
    assert summary["synthetic_shapes_train"]["boxes"] > 0


def test_files_match_their_documented_layout(tmp_path):
    root = data.ensure_synthetic(str(tmp_path / "s"), seed=2, num_train=2, num_val=1)
    coco = json.load(open(os.path.join(root, "annotations", "instances_val.json")))
    assert [c["name"] for c in coco["categories"]] == list(SHAPE_CLASSES)
    voc_sets = os.path.join(root, SYNTHETIC_VOC_DIRNAME, "ImageSets", "Main")
    assert open(os.path.join(voc_sets, "trainval.txt")).read().split() == [
        "train_000000", "train_000001", "val_000000",
    ]


def test_command_line(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_synthetic_data", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    root = tmp_path / "s"
    argv = ["--root", str(root), "--num-train", "2", "--num-val", "1", "--seed", "7"]
    assert tool.main(argv) == 0
    assert "written" in capsys.readouterr().out
    assert tool.main(argv + ["--preview", "1"]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert synthetic.read_manifest(str(root))["params"]["seed"] == 7
    assert os.listdir(tmp_path / "s_preview") == ["val_000000.png"]
    assert tool.main(["--root", str(tmp_path / "t"), "--min-side", "8"]) == 2


@pytest.mark.slow
def test_train_net_in_a_fresh_clone_generates_the_data(train_net, tiny, tmp_path):
    """`tools/train_net.py --config-file configs/Demo/resnet18_c4_synthetic.yaml` with no data."""
    fresh_root = tmp_path / "datasets"
    result = type(train_net)(fresh_root)(*tiny, "OUTPUT_DIR", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert synthetic.read_manifest(data.synthetic_root(str(fresh_root)))["params"] == \
        dataclasses.asdict(synthetic.SyntheticParams())
