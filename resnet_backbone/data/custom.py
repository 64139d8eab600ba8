"""Your own datasets, declared under `DATASETS.USER` (voc, coco or imagefolder entries; the
README shows the YAML) and registered in every process. Relative paths are under
$DETECTRON2_DATASETS; VOC07_METRIC: True gives a VOC entry the 11-point AP.
"""
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog

from .datasets import register_coco, register_voc
from .layout import datasets_root

# FORMAT -> (required keys, optional keys) of an entry.
FORMATS = {"voc": ({"DIRNAME", "SPLIT", "CLASSES"}, {"VOC07_METRIC"}),
           "coco": ({"JSON", "IMAGE_ROOT"}, set()), "imagefolder": ({"ROOT"}, set())}

_USER_NAMES = set()  # names this module registered


def _check_entry(name, entry):
    where = f"DATASETS.USER.{name}"
    if not hasattr(entry, "get"):
        raise ValueError(f"{where} must be a mapping of FORMAT, paths and CLASSES, not {entry!r}")
    kind = str(entry.get("FORMAT", "")).lower()
    if kind not in FORMATS:
        raise ValueError(f"{where}.FORMAT={entry.get('FORMAT')!r}: use one of {sorted(FORMATS)}")
    required, optional = FORMATS[kind]
    known = {"FORMAT"} | required | optional
    unknown, missing = set(entry) - known, required - set(entry)
    if unknown or missing:
        raise KeyError(f"{where} ({kind}): unknown keys {sorted(unknown)}, missing keys "
                       f"{sorted(missing)}; a {kind} entry takes {sorted(known)}")
    classes = entry.get("CLASSES")
    if kind == "voc" and (not classes or len(set(classes)) != len(classes)
                          or not all(isinstance(c, str) and c for c in classes)):
        raise ValueError(f"{where}.CLASSES={classes!r}: give a list of distinct class names")
    return kind


def _path(path):
    return os.path.join(datasets_root(), path)  # an absolute path is kept as it is


def register_user_datasets(cfg):
    """Register every `cfg.DATASETS.USER` entry into Detectron2's catalogs (idempotent)."""
    for name, entry in cfg.DATASETS.USER.items():
        kind = _check_entry(name, entry)
        if name in DatasetCatalog and name not in _USER_NAMES:
            raise ValueError(f"DATASETS.USER.{name}: the name {name!r} is already registered "
                             "(a builtin or project dataset); give your dataset another name")
        if kind == "voc":
            register_voc(name, _path(entry.DIRNAME), entry.SPLIT, tuple(entry.CLASSES),
                         year=2007 if entry.get("VOC07_METRIC", False) else 2012)
        elif kind == "imagefolder":
            from ..classification.data import register_image_folder

            register_image_folder(name, _path(entry.ROOT))
        else:
            register_coco(name, _path(entry.JSON), _path(entry.IMAGE_ROOT))
        _USER_NAMES.add(name)


def check_user_datasets(cfg):
    """MODEL.ROI_HEADS.NUM_CLASSES must equal the class count of each user dataset in use."""
    used = set(cfg.DATASETS.TRAIN) | set(cfg.DATASETS.TEST)
    for name, entry in cfg.DATASETS.USER.items():
        kind = entry.FORMAT.lower()
        if name not in used or kind == "imagefolder":  # classes: the classifier's own check
            continue
        if kind == "voc":
            classes, source = entry.CLASSES, f"DATASETS.USER.{name}.CLASSES"
        else:
            json_file = MetadataCatalog.get(name).json_file
            if not os.path.isfile(json_file):
                raise FileNotFoundError(f"DATASETS.USER.{name}.JSON: file {json_file} does not "
                                        "exist")
            with open(json_file, encoding="utf-8") as f:
                categories = json.load(f).get("categories") or []
            classes = [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
            source = f"the categories of {json_file}"
        if len(classes) != cfg.MODEL.ROI_HEADS.NUM_CLASSES:
            raise ValueError(
                f"MODEL.ROI_HEADS.NUM_CLASSES={cfg.MODEL.ROI_HEADS.NUM_CLASSES} but dataset "
                f"{name} has {len(classes)} classes ({source}: {list(classes)}); set "
                f"MODEL.ROI_HEADS.NUM_CLASSES {len(classes)}"
            )
