"""Evaluator choice and the metrics on known detections; VOC 2012 submission files round-trip."""
import os
import tarfile

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluators, PascalVOCDetectionEvaluator
from detectron2.structures import Boxes, BoxMode, Instances
from PIL import Image

import resnet_backbone.data as data
from resnet_backbone.data import evaluation


@pytest.fixture(scope="module")
def synthetic_val(tmp_path_factory):
    """$DETECTRON2_DATASETS, set after the names were registered, holds a small synthetic tree."""
    datasets = str(tmp_path_factory.mktemp("d2"))
    root = data.ensure_synthetic(data.synthetic_root(datasets), seed=0, num_train=1, num_val=8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETECTRON2_DATASETS", datasets)
        yield root


def _gt(record):
    return [(a["category_id"], BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS))
            for a in record["annotations"]]


def _output(record, detections):
    """detections: [(class, [x0, y0, x1, y1], score)] -> a model output dict."""
    inst = Instances((record["height"], record["width"]))
    boxes = torch.tensor([d[1] for d in detections], dtype=torch.float32).reshape(-1, 4)
    inst.pred_boxes = Boxes(boxes)
    inst.scores = torch.tensor([d[2] for d in detections], dtype=torch.float32)
    inst.pred_classes = torch.tensor([d[0] for d in detections], dtype=torch.int64)
    return {"instances": inst}


def _run(evaluator, records, detections_per_record):
    evaluator.reset()
    for record, dets in zip(records, detections_per_record):
        evaluator.process([record], [_output(record, dets)])
    return evaluator.evaluate()


def _perfect(records):
    return [[(c, box, 1.0) for c, box in _gt(r)] for r in records]


def test_every_class_is_in_the_small_val_split(synthetic_val):
    records = DatasetCatalog.get("synthetic_shapes_val")
    classes = {a["category_id"] for r in records for a in r["annotations"]}
    assert classes == set(range(len(data.SHAPE_CLASSES)))  # else VOC mAP of perfect boxes < 100


def test_synthetic_coco_split_reports_coco_ap_and_voc07_map(synthetic_val, tmp_path):
    evaluator = data.build_evaluator(None, "synthetic_shapes_val", str(tmp_path))
    assert isinstance(evaluator, DatasetEvaluators)
    records = DatasetCatalog.get("synthetic_shapes_val")

    perfect = _run(evaluator, records, _perfect(records))
    assert perfect["bbox"]["AP50"] == pytest.approx(100.0)
    assert perfect["bbox"]["AP"] == pytest.approx(100.0)
    assert perfect["bbox_voc07"]["AP50"] == pytest.approx(100.0)

    nothing = _run(evaluator, records, [[] for _ in records])
    assert nothing["bbox"]["AP50"] == 0.0 and nothing["bbox"]["AP"] == 0.0
    assert nothing["bbox_voc07"]["AP50"] == 0.0


def test_synthetic_voc_split_uses_the_voc07_metric(synthetic_val, tmp_path):
    evaluator = data.build_evaluator(None, "synthetic_shapes_voc_val", str(tmp_path))
    assert isinstance(evaluator, PascalVOCDetectionEvaluator)
    records = DatasetCatalog.get("synthetic_shapes_voc_val")
    assert _run(evaluator, records, _perfect(records))["bbox"]["AP50"] == pytest.approx(100.0)
    assert _run(evaluator, records, [[] for _ in records])["bbox"]["AP50"] == 0.0


def test_voc07_metric_on_coco_form_equals_detectron2s_on_voc_form(synthetic_val):
    """Imperfect detections: shifted boxes, misses, duplicates and false alarms."""
    rng = np.random.default_rng(0)
    coco_records = DatasetCatalog.get("synthetic_shapes_val")
    voc_records = {r["image_id"]: r for r in DatasetCatalog.get("synthetic_shapes_voc_val")}
    scores = iter(rng.permutation(900) / 1000 + 0.05)  # distinct at the 3 decimals Detectron2 keeps
    dets = []
    for r in coco_records:
        mine = []
        for c, (x0, y0, x1, y1) in _gt(r):
            if rng.random() < 0.15:
                continue  # missed
            dx, dy = rng.integers(-8, 9, 2)
            mine.append((c, [x0 + dx, y0 + dy, x1 + dx, y1 + dy], next(scores)))
            if rng.random() < 0.2:
                mine.append((c, [x0, y0, x1, y1], next(scores)))  # duplicate
        for _ in range(2):  # false alarms
            x, y = rng.integers(0, 100, 2)
            mine.append((int(rng.integers(5)), [x, y, x + 30, y + 30], next(scores)))
        dets.append(mine)
    ours = _run(evaluation.VOC07Evaluator("synthetic_shapes_val"), coco_records, dets)
    theirs_records = [voc_records[os.path.basename(r["file_name"])[:-4]] for r in coco_records]
    theirs = _run(PascalVOCDetectionEvaluator("synthetic_shapes_voc_val"), theirs_records, dets)
    assert 20 < ours["bbox_voc07"]["AP50"] < 95
    assert ours["bbox_voc07"]["AP50"] == pytest.approx(theirs["bbox"]["AP50"], abs=1e-6)


def test_fast_coco_eval_only_with_compiled_ops():
    from detectron2 import _C

    compiled = _C.__file__.endswith((".so", ".pyd"))
    assert evaluation.fast_coco_eval_available() == compiled


# ---- VOC 2012 test: submission files -------------------------------------------------------------


@pytest.fixture
def voc2012_test(tmp_path, monkeypatch):
    root = tmp_path / "d2"
    voc = root / "VOC2012"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    ids = ["2008_000001", "2008_000009", "2010_003999"]
    (voc / "ImageSets" / "Main" / "test.txt").write_text("".join(i + "\n" for i in ids))
    for i in ids:
        Image.new("RGB", (64, 48)).save(voc / "JPEGImages" / f"{i}.jpg")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    return str(root)


def _submission_run(out_dir):
    records = DatasetCatalog.get("voc_2012_test")
    rng = np.random.default_rng(1)
    dets = []
    for _ in records:
        mine = []
        for _ in range(4):
            x0, y0 = rng.uniform(0, 30, 2).round(2)
            box = [x0, y0, x0 + 20.5, y0 + 15.25]
            mine.append((int(rng.integers(20)), box, float(rng.random())))
        dets.append(mine)
    writer = data.build_evaluator(None, "voc_2012_test", out_dir)
    assert isinstance(writer, data.VOC2012SubmissionWriter)
    assert isinstance(writer, PascalVOCDetectionEvaluator)  # its detection lines, its gathering
    assert _run(writer, records, dets) == {}
    return records, dets


def test_voc2012_submission_files_parse_back_to_the_predictions(voc2012_test, tmp_path):
    out = str(tmp_path / "inference")
    records, dets = _submission_run(out)
    main = os.path.join(out, "results", "VOC2012", "Main")
    expected_files = sorted(f"comp4_det_test_{c}.txt" for c in data.VOC_CLASS_NAMES)
    assert sorted(os.listdir(main)) == expected_files
    first = open(os.path.join(main, "comp4_det_test_aeroplane.txt")).read().splitlines()
    assert all(len(line.split()) == 6 for line in first)

    archive = os.path.join(out, "voc_2012_test_comp4_results.tar.gz")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == sorted(
            f"results/VOC2012/Main/comp4_det_test_{c}.txt" for c in data.VOC_CLASS_NAMES
        )
    with tarfile.open(archive) as tar:
        packed = {os.path.basename(m.name): tar.extractfile(m).read().decode() for m in tar}
    assert packed == {f: open(os.path.join(main, f)).read() for f in expected_files}
    parsed = {}  # class -> [(image_id, score, XYXY box)], inverting the devkit's 1-based corners
    for name, text in packed.items():
        cls = name[len("comp4_det_test_"):-len(".txt")]
        parsed[cls] = []
        for line in text.splitlines():
            image_id, score, xmin, ymin, xmax, ymax = line.split()
            box = (float(xmin) - 1, float(ymin) - 1, float(xmax), float(ymax))
            parsed[cls].append((image_id, float(score), box))

    expected = {}
    for record, mine in zip(records, dets):
        for cls, box, score in mine:
            name = data.VOC_CLASS_NAMES[cls]
            expected.setdefault(name, []).append((record["image_id"], score, box))
    for name in data.VOC_CLASS_NAMES:
        got = sorted(parsed[name])
        want = sorted(expected.get(name, []))
        assert [g[0] for g in got] == [w[0] for w in want]
        for (_, gs, gbox), (_, ws, wbox) in zip(got, want):
            # Detectron2's (and py-faster-rcnn's) lines: scores to 3 decimals, corners to 1
            assert gs == pytest.approx(ws, abs=5e-4 + 1e-9)
            assert gbox == pytest.approx(wbox, abs=0.05 + 1e-4)


def test_voc2012_archive_is_reproducible(voc2012_test, tmp_path):
    _submission_run(str(tmp_path / "a"))
    _submission_run(str(tmp_path / "b"))
    name = "voc_2012_test_comp4_results.tar.gz"
    assert open(tmp_path / "a" / name, "rb").read() == open(tmp_path / "b" / name, "rb").read()
