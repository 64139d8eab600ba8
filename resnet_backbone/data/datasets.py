"""Every dataset name the reproduction uses, registered in Detectron2's catalogs.

VOC splits are read by `load_voc_split` (errors name the xml file); Detectron2's builtin COCO
entries are re-pointed with their class metadata kept. Added: voc_2012_test (images only),
voc_2007_2012_trainval (07+12), voc_0712pp_trainval (07++12), synthetic_shapes_{train,val} (COCO
form) and synthetic_shapes_voc_{train,val} (VOC form), generated on first use.
"""
import os
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASS_NAMES
from detectron2.structures import BoxMode
from PIL import Image

from . import synthetic
from .layout import (
    PAPER_SPLITS,
    SHAPE_CLASSES,
    SYNTHETIC_COCO_SPLITS,
    SYNTHETIC_VOC_DIRNAME,
    SYNTHETIC_VOC_SPLITS,
    VOC_07_12,
    VOC_07PP_12,
    COCOSplit,
    datasets_root,
    synthetic_root,
)

# Single-name versions of the paper's VOC training sets (Detectron2 also accepts the tuples).
VOC_COMBOS: Dict[str, Sequence[str]] = {
    "voc_2007_2012_trainval": VOC_07_12,
    "voc_0712pp_trainval": VOC_07PP_12,
}


class VOCAnnotationError(ValueError):
    """A VOC xml file cannot be used; the message names the file."""


def read_ids(path: str) -> List[str]:
    """The image ids of a VOC split file, one per line."""
    ids = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            words = line.split()
            if len(words) > 1:  # Detectron2's own loader would take it apart as well
                raise VOCAnnotationError(
                    f"{path}, line {number}: {line.strip()!r} is not one image id: VOC ids "
                    "are file names without whitespace (rename the image and its xml)")
            ids += words
    return ids


def _parse_voc_xml(xml_file: str) -> ET.ElementTree:
    try:
        tree = ET.parse(xml_file)
    except ET.ParseError as e:
        raise VOCAnnotationError(f"{xml_file}: not well-formed XML ({e})") from e
    try:
        width, height = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
    except (TypeError, ValueError):
        raise VOCAnnotationError(
            f"{xml_file}: no integer <size><width> and <height>") from None
    if width <= 0 or height <= 0:
        raise VOCAnnotationError(f"{xml_file}: size {width}x{height} is not positive")
    return tree


def _voc_object(obj, xml_file: str, class_names: Sequence[str]) -> Dict:
    class_name = (obj.findtext("name") or "").strip()
    if class_name not in class_names:
        raise VOCAnnotationError(
            f"{xml_file}: unknown class name {class_name!r}; known: {list(class_names)}")
    try:
        xmin, ymin, xmax, ymax = (
            float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (TypeError, ValueError):
        raise VOCAnnotationError(
            f"{xml_file}: object {class_name!r} has no numeric <bndbox>") from None
    return {
        "category_id": class_names.index(class_name),
        "bbox": [xmin - 1.0, ymin - 1.0, xmax, ymax],
        "bbox_mode": BoxMode.XYXY_ABS,
    }


def load_voc_split(
    dirname: str, split: str, class_names: Sequence[str], annotated: bool = True
) -> List[Dict]:
    """Detectron2's `load_voc_instances`, but a malformed xml raises `VOCAnnotationError`
    naming it. With `annotated=False` (VOC 2012 test) records have no "annotations" and their
    size comes from the xml when there is one, else from the image."""
    records = []
    for file_id in read_ids(os.path.join(dirname, "ImageSets", "Main", split + ".txt")):
        image_file = os.path.join(dirname, "JPEGImages", file_id + ".jpg")
        xml_file = os.path.join(dirname, "Annotations", file_id + ".xml")
        record = {"file_name": image_file, "image_id": file_id}
        if annotated or os.path.isfile(xml_file):
            tree = _parse_voc_xml(xml_file)
            record["height"] = int(tree.findtext("size/height"))
            record["width"] = int(tree.findtext("size/width"))
        else:
            with Image.open(image_file) as im:
                record["width"], record["height"] = im.size
        if annotated:
            record["annotations"] = [
                _voc_object(obj, xml_file, class_names) for obj in tree.iterfind("object")]
        records.append(record)
    return records


def prepare_dataset(name: str) -> None:
    """Generate the synthetic data behind `name` if it is not there yet (any parameters)."""
    root = MetadataCatalog.get(name).get("synthetic_root") if name in MetadataCatalog else None
    if root and not synthetic.is_complete(root):
        synthetic.ensure_synthetic(root)


# Names whose catalog entries this module made, with the location they point at.
_OURS: Dict[str, tuple] = {}


def register_dataset(name: str, location: tuple, load, **metadata) -> None:
    """(Re)register `name` unless it already points at `location`; loading runs
    `prepare_dataset` first."""
    if _OURS.get(name) == location and name in DatasetCatalog:
        return
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
    if name in MetadataCatalog:
        MetadataCatalog.remove(name)

    def prepared_load():
        prepare_dataset(name)
        return load()

    DatasetCatalog.register(name, prepared_load)
    MetadataCatalog.get(name).set(**metadata)
    _OURS[name] = location


def register_voc(name: str, dirname: str, split: str, class_names: Sequence[str], *,
                 year: int = 2007, annotated: bool = True, evaluator_type: str = "pascal_voc",
                 **metadata) -> None:
    """Register a VOC-layout split (year 2007: the VOC07 11-point AP when evaluated)."""
    classes = tuple(class_names)
    register_dataset(name, ("voc", dirname, split, classes, year, annotated, evaluator_type),
                     lambda: load_voc_split(dirname, split, classes, annotated=annotated),
                     thing_classes=list(classes), dirname=dirname, year=year, split=split,
                     evaluator_type=evaluator_type, **metadata)


def register_coco(name: str, json_file: str, image_root: str, **metadata) -> None:
    """Register a COCO json split (Detectron2's `register_coco_instances`, re-pointable)."""
    register_dataset(name, ("coco", json_file, image_root),
                     lambda: load_coco_json(json_file, image_root, name),
                     json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata)


# Class metadata of Detectron2's builtin COCO entries, kept when they are re-pointed.
_COCO_CLASS_KEYS = ("thing_classes", "thing_dataset_id_to_contiguous_id", "thing_colors")


def register_paper_datasets(root: Optional[str] = None) -> None:
    """Point every split of `layout.PAPER_SPLITS` under `root` (default $DETECTRON2_DATASETS)."""
    root = datasets_root() if root is None else root
    for name, spec in PAPER_SPLITS.items():
        if isinstance(spec, COCOSplit):
            meta = MetadataCatalog.get(name).as_dict() if name in DatasetCatalog else {}
            register_coco(name, os.path.join(root, spec.json_file),
                          os.path.join(root, spec.image_root),
                          **{k: v for k, v in meta.items() if k in _COCO_CLASS_KEYS})
        else:
            register_voc(
                name, os.path.join(root, spec.dirname), spec.split, VOC_CLASS_NAMES,
                year=spec.year, annotated=spec.annotated,
                evaluator_type="pascal_voc" if spec.annotated else "pascal_voc_submission",
            )


def register_synthetic(root: Optional[str] = None) -> None:
    """Register the synthetic splits on the tree at `root` (default: `synthetic_root()`)."""
    root = synthetic_root() if root is None else root
    image_root = os.path.join(root, "images")
    for name, split in SYNTHETIC_COCO_SPLITS.items():
        register_coco(
            name, os.path.join(root, "annotations", f"instances_{split}.json"), image_root,
            thing_classes=list(SHAPE_CLASSES),
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(SHAPE_CLASSES))},
            synthetic_root=root,
        )
    for name, split in SYNTHETIC_VOC_SPLITS.items():
        register_voc(name, os.path.join(root, SYNTHETIC_VOC_DIRNAME), split, SHAPE_CLASSES,
                     synthetic_root=root)


def register_all(root: Optional[str] = None) -> None:
    """Register (or re-point) every dataset name of the project under `root` (default
    `$DETECTRON2_DATASETS`, read now). Idempotent."""
    root = datasets_root() if root is None else root
    register_paper_datasets(root)
    for name, parts in VOC_COMBOS.items():  # training only; the parts are looked up when loaded
        register_dataset(name, ("concat", parts),
                         lambda parts=parts: [r for p in parts for r in DatasetCatalog.get(p)],
                         thing_classes=list(VOC_CLASS_NAMES), parts=list(parts))
    register_synthetic(synthetic_root(root))
