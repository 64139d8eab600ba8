"""Every dataset name the reproduction uses, registered once in Detectron2's catalogs when this
module is imported; the datasets root ($DETECTRON2_DATASETS) is read when a split is loaded or
its files are asked for (`dataset_location`), so it may change after the import.

VOC splits are read by `load_voc_split` (errors name the xml file); Detectron2's builtin entries
of the paper's splits are taken over, their COCO class metadata kept. Added: voc_2012_test
(images only), voc_2007_2012_trainval (07+12), voc_0712pp_trainval (07++12),
synthetic_shapes_{train,val} (COCO form) and synthetic_shapes_voc_{train,val} (VOC form),
generated on first use.
"""
import os
import xml.etree.ElementTree as ET
from typing import Callable, Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, Metadata, MetadataCatalog
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
    SYNTHETIC_DIRNAME,
    COCOSplit,
    datasets_root,
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


# Metadata keys naming files, as Detectron2's register_pascal_voc and register_coco_instances set.
PATH_KEYS = ("dirname", "json_file", "image_root")


class LocatedMetadata(Metadata):
    """The metadata of a dataset registered here: `paths` holds its files relative to the
    datasets root (absolute ones are kept), and the attributes of the same names (`dirname`,
    `json_file`, ...) are those paths under the root read when they are asked for.

    Detectron2's evaluators read `meta.dirname` or `meta.json_file` in their constructors, and
    COCOEvaluator opens the json there, so a subclass could not swap the path in afterwards; nor
    can it be set on the metadata when an evaluator is built, as Metadata refuses to change a
    value once set. Computed on access, these attributes give every reader, Detectron2's
    evaluators included, what `dataset_location` resolves at that moment.
    """

    def __getattr__(self, key):
        if key in self.__dict__.get("paths", ()):
            return dataset_location(self.name)[key]
        return super().__getattr__(key)


def dataset_location(name: str) -> Dict[str, str]:
    """The files of the registered dataset `name` ({"dirname": ...} for VOC, {"json_file",
    "image_root"} for COCO, ...): for names registered here, under `datasets_root()` read now;
    for names registered otherwise, the paths their metadata holds."""
    if name not in DatasetCatalog:
        raise KeyError(f"dataset {name!r} is not registered")
    meta = MetadataCatalog.get(name)
    if isinstance(meta, LocatedMetadata):
        root = datasets_root()
        return {key: os.path.join(root, path) for key, path in meta.paths.items()}
    return {key: meta.get(key) for key in PATH_KEYS if meta.get(key)}


def prepare_dataset(name: str) -> None:
    """Generate the synthetic data behind `name` if it is not there yet (any parameters)."""
    root = dataset_location(name).get("synthetic_root") if name in DatasetCatalog else None
    if root and not synthetic.is_complete(root):
        synthetic.ensure_synthetic(root)


def register_dataset(name: str, load: Callable[[Dict[str, str]], List[Dict]],
                     paths: Optional[Dict[str, str]] = None, **metadata) -> None:
    """Register `name` in Detectron2's catalogs (once: a second registration fails as in
    Detectron2). Loading it runs `prepare_dataset`, then `load(dataset_location(name))`; `paths`
    are relative to the datasets root (see `LocatedMetadata`)."""

    def load_now():
        prepare_dataset(name)
        return load(dataset_location(name))

    DatasetCatalog.register(name, load_now)
    MetadataCatalog[name] = LocatedMetadata(name=name, paths=dict(paths or {}))
    MetadataCatalog.get(name).set(**metadata)


def register_voc(name: str, dirname: str, split: str, class_names: Sequence[str], *,
                 year: int = 2007, annotated: bool = True, evaluator_type: str = "pascal_voc",
                 more_paths: Optional[Dict[str, str]] = None, **metadata) -> None:
    """Register a VOC-layout split at `dirname` (relative to the datasets root, or absolute);
    year 2007 selects the VOC07 11-point AP when it is evaluated."""
    classes = tuple(class_names)
    register_dataset(
        name, lambda at: load_voc_split(at["dirname"], split, classes, annotated=annotated),
        {"dirname": dirname, **(more_paths or {})}, thing_classes=list(classes), year=year,
        split=split, evaluator_type=evaluator_type, **metadata)


def register_coco(name: str, json_file: str, image_root: str, *,
                  more_paths: Optional[Dict[str, str]] = None, **metadata) -> None:
    """Register a COCO json split (Detectron2's `register_coco_instances`, with paths relative
    to the datasets root or absolute)."""
    register_dataset(
        name, lambda at: load_coco_json(at["json_file"], at["image_root"], name),
        {"json_file": json_file, "image_root": image_root, **(more_paths or {})},
        evaluator_type="coco", **metadata)


# Class metadata of Detectron2's builtin COCO entries, kept when they are taken over.
_COCO_CLASS_KEYS = ("thing_classes", "thing_dataset_id_to_contiguous_id", "thing_colors")


def _take_over(name: str) -> Dict:
    """Drop Detectron2's builtin entry of `name` (registered when detectron2.data was imported,
    at the root of that moment), keeping its class metadata for ours."""
    if name not in DatasetCatalog:
        return {}
    kept = {k: v for k, v in MetadataCatalog.get(name).as_dict().items() if k in _COCO_CLASS_KEYS}
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)
    return kept


def _register_project_datasets() -> None:
    """Register every dataset name of the project, once, when this module is imported."""
    for name, spec in PAPER_SPLITS.items():
        kept = _take_over(name)
        if isinstance(spec, COCOSplit):
            register_coco(name, spec.json_file, spec.image_root, **kept)
        else:
            register_voc(name, spec.dirname, spec.split, VOC_CLASS_NAMES, year=spec.year,
                         annotated=spec.annotated,
                         evaluator_type="pascal_voc" if spec.annotated
                         else "pascal_voc_submission")
    for name, parts in VOC_COMBOS.items():  # training only; the parts are looked up when loaded
        register_dataset(name, lambda _, parts=parts: [r for p in parts
                                                       for r in DatasetCatalog.get(p)],
                         thing_classes=list(VOC_CLASS_NAMES), parts=list(parts))
    located = {"synthetic_root": SYNTHETIC_DIRNAME}
    for name, split in SYNTHETIC_COCO_SPLITS.items():
        register_coco(
            name, os.path.join(SYNTHETIC_DIRNAME, "annotations", f"instances_{split}.json"),
            os.path.join(SYNTHETIC_DIRNAME, "images"), more_paths=located,
            thing_classes=list(SHAPE_CLASSES),
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(SHAPE_CLASSES))},
        )
    for name, split in SYNTHETIC_VOC_SPLITS.items():
        register_voc(name, os.path.join(SYNTHETIC_DIRNAME, SYNTHETIC_VOC_DIRNAME), split,
                     SHAPE_CLASSES, more_paths=located)


_register_project_datasets()
