"""Bad data is found before training starts, with a message naming the dataset, the file and the
entry (resnet_backbone/data/validation.py), or dropped with a count (unusable boxes)."""
import json
import logging
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances, register_pascal_voc
from PIL import Image

from resnet_backbone.data import (
    SHAPE_CLASSES,
    DatasetError,
    register_voc,
    validate_dataset,
)
from resnet_backbone.data.validation import drop_bad_boxes

@pytest.fixture
def tree(datasets_dir, tmp_path):
    """A private copy of the shared synthetic tree (6 train, 3 val) that a test may break."""
    root = tmp_path / "synthetic_shapes"
    shutil.copytree(datasets_dir / "synthetic_shapes", root)
    return root


_NAMES = []


def _register_coco(root, split="train"):
    name = f"bad_data_coco_{len(_NAMES)}"
    _NAMES.append(name)
    register_coco_instances(name, {}, str(root / "annotations" / f"instances_{split}.json"),
                            str(root / "images"))
    return name


def _register_voc(root, split="train", register=register_voc):
    """A VOC-form split of the tree, registered with this package's or Detectron2's function."""
    name = f"bad_data_voc_{len(_NAMES)}"
    _NAMES.append(name)
    if register is register_voc:
        register_voc(name, str(root / "VOCshapes"), split, SHAPE_CLASSES)
    else:
        register_pascal_voc(name, str(root / "VOCshapes"), split, 2007, SHAPE_CLASSES)
    return name


@pytest.fixture(autouse=True)
def _unregister():
    yield
    while _NAMES:
        name = _NAMES.pop()
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _edit_json(root, edit, split="train"):
    path = root / "annotations" / f"instances_{split}.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def test_intact_data_passes(tree):
    summary = validate_dataset(_register_coco(tree))
    assert summary["images"] == 6 and summary["boxes"] > 0 and summary["bad_boxes"] == 0
    assert validate_dataset(_register_voc(tree))["images"] == 6


def test_missing_image_is_named(tree):
    (tree / "images" / "train_000002.jpg").unlink()
    with pytest.raises(DatasetError) as error:
        validate_dataset(_register_coco(tree))
    message = str(error.value)
    assert "1 of 6 images cannot be used" in message
    assert f"{tree / 'images' / 'train_000002.jpg'} (image_id 3): image file does not exist" \
        in message


def test_corrupt_image_is_named(tree):
    (tree / "images" / "train_000004.jpg").write_bytes(b"\x00not a jpeg at all")
    with pytest.raises(DatasetError, match=r"train_000004\.jpg \(image_id 5\): image is not "
                                           r"readable \(UnidentifiedImageError"):
        validate_dataset(_register_coco(tree))


def test_image_size_differing_from_annotation_is_named(tree):
    def edit(data):
        data["images"][1]["width"] += 7

    _edit_json(tree, edit)
    with pytest.raises(DatasetError, match=r"train_000001\.jpg \(image_id 2\): image is \d+x\d+ "
                                           r"but its annotation says \d+x\d+"):
        validate_dataset(_register_coco(tree))


def test_unusable_boxes_are_dropped_with_a_count_or_stop_the_run(tree, caplog):
    def edit(data):
        data["annotations"][0]["bbox"] = [10, 10, 0, 5]  # zero width
        data["annotations"][1]["bbox"] = [5000, 5000, 10, 10]  # outside the image
        data["annotations"][2]["bbox"] = [-5, -5, 20, 20]  # partly outside: clipped, kept

    _edit_json(tree, edit)
    name = _register_coco(tree)
    with pytest.raises(DatasetError) as error:
        validate_dataset(name, bad_boxes="error")
    message = str(error.value)
    assert "2 unusable boxes" in message and "zero or negative area" in message
    assert "lies outside the" in message and "train_000000.jpg (image_id 1), annotation 0" \
        in message

    with caplog.at_level(logging.INFO, logger="resnet_backbone"):
        summary = validate_dataset(name, bad_boxes="drop")
    assert summary["bad_boxes"] == 2 and summary["partly_outside"] == 1
    dicts = DatasetCatalog.get(name)
    kept = drop_bad_boxes(dicts, "training set")
    assert sum(len(d["annotations"]) for d in kept) == summary["boxes"] - 2
    assert "dropped 2 unusable boxes" in caplog.text


def _edit_xml(root, file_id, old, new):
    xml = root / "VOCshapes" / "Annotations" / f"{file_id}.xml"
    text = xml.read_text()
    assert old in text
    xml.write_text(text.replace(old, new, 1))
    return xml


@pytest.mark.parametrize("register", [register_voc, register_pascal_voc],
                         ids=["this_package", "detectron2"])
def test_malformed_voc_xml_is_named(tree, register):
    xml = _edit_xml(tree, "train_000002", "</annotation>", "<annotation")
    with pytest.raises(DatasetError, match=rf"{xml}: not well-formed XML \(unclosed token"):
        validate_dataset(_register_voc(tree, register=register))


def test_voc_xml_without_size_is_named(tree):
    xml = tree / "VOCshapes" / "Annotations" / "train_000001.xml"
    xml.write_text("\n".join(line for line in xml.read_text().splitlines()
                              if "<size>" not in line))
    with pytest.raises(DatasetError, match=rf"{xml}: no integer <size><width> and <height>"):
        validate_dataset(_register_voc(tree))


@pytest.mark.parametrize("register", [register_voc, register_pascal_voc],
                         ids=["this_package", "detectron2"])
def test_unknown_voc_class_is_named(tree, register):
    text = (tree / "VOCshapes" / "Annotations" / "train_000003.xml").read_text()
    first = next(c for c in SHAPE_CLASSES if f"<name>{c}</name>" in text)
    xml = _edit_xml(tree, "train_000003", f"<name>{first}</name>", "<name>hexagon</name>")
    with pytest.raises(DatasetError, match=rf"{xml}: unknown class name 'hexagon'"):
        validate_dataset(_register_voc(tree, register=register))


def test_voc_fields_the_evaluator_reads_are_checked_for_evaluation(tree):
    xml = _edit_xml(tree, "val_000001", "<pose>Unspecified</pose>", "")
    name = _register_voc(tree, split="val")
    assert validate_dataset(name)["images"] == 3  # training does not read <pose>
    with pytest.raises(DatasetError, match=rf"{xml}: object '\w+' has no <pose>"):
        validate_dataset(name, evaluation=True)


def test_16_bit_png_is_named(tree):
    """Detectron2's read_image turns a 16-bit grey PNG into 255 everywhere."""
    def edit(data):
        image = data["images"][2]
        path = tree / "images" / image["file_name"].replace(".jpg", ".png")
        pixels = np.full((image["height"], image["width"]), 1000, dtype=np.uint16)
        Image.fromarray(pixels).save(path)
        image["file_name"] = path.name

    _edit_json(tree, edit)
    with pytest.raises(DatasetError, match=r"train_000002\.png \(image_id 3\): image has "
                                           r"'I;16' pixels \(16-bit or float\)"):
        validate_dataset(_register_coco(tree))


def test_coco_image_without_size_is_named(tree):
    def edit(data):
        del data["images"][4]["height"]

    path = _edit_json(tree, edit)
    with pytest.raises(DatasetError, match=rf"{path}: images\[4\] \(id 5, file_name "
                                           r"'train_000004.jpg'\) has no height"):
        validate_dataset(_register_coco(tree))


def test_training_split_without_boxes_is_named(tree):
    def edit(data):
        data["annotations"] = []

    path = _edit_json(tree, edit)
    name = _register_coco(tree)
    assert validate_dataset(name)["boxes"] == 0  # fine to evaluate on
    with pytest.raises(DatasetError, match=rf"{name}' has no usable box to train on .*{path}"):
        validate_dataset(name, training=True)


def test_empty_split_is_named(tree):
    (tree / "VOCshapes" / "ImageSets" / "Main" / "train.txt").write_text("")
    with pytest.raises(DatasetError, match=r"is empty: .*ImageSets/Main/train\.txt lists no "
                                           "images"):
        validate_dataset(_register_voc(tree))


def test_coco_duplicate_ids_are_named(tree):
    def duplicate_image(data):
        data["images"][3]["id"] = data["images"][2]["id"]

    path = _edit_json(tree, duplicate_image)
    with pytest.raises(DatasetError, match=rf"{path}: (?s:.*)images ids are not unique: "
                                           r"id 3 \(2 times\)"):
        validate_dataset(_register_coco(tree))

    def duplicate_annotation(data):
        data["images"][3]["id"] = 4
        data["annotations"][5]["id"] = data["annotations"][4]["id"]

    _edit_json(tree, duplicate_annotation)
    with pytest.raises(DatasetError, match=r"annotations ids are not unique: id 5 \(2 times\)"):
        validate_dataset(_register_coco(tree))


@pytest.mark.slow
def test_train_net_stops_before_training_and_leaves_output_dir_alone(train_net, tiny, tree,
                                                                     tmp_path):
    (tree / "images" / "val_000001.jpg").unlink()  # the test split is checked too
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("earlier run\n")
    result = type(train_net)(tree.parent)(*tiny, "OUTPUT_DIR", str(out))
    assert result.returncode != 0
    assert "DatasetError: dataset 'synthetic_shapes_val'" in result.stderr
    assert "val_000001.jpg (image_id 1000002): image file does not exist" in result.stderr
    assert [p.name for p in out.iterdir()] == ["metrics.json"]
    assert (out / "metrics.json").read_text() == "earlier run\n"


def test_voc_id_with_whitespace_is_named_with_its_line(tree):
    split_file = tree / "VOCshapes" / "ImageSets" / "Main" / "train.txt"
    lines = split_file.read_text().splitlines()
    lines[1] = "my photo 2"
    split_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"{split_file}, line 2: 'my photo 2' is not one "
                                           "image id: VOC ids are file names without whitespace"):
        validate_dataset(_register_voc(tree))
