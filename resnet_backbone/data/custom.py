"""Your own datasets, declared under `DATASETS.USER` (voc and coco entries; imagefolder too once
the classification half is imported; docs/own_data.md shows the YAML) and registered in every
process, each name once. Relative paths are under $DETECTRON2_DATASETS, read when the data is
loaded; VOC07_METRIC: True gives a VOC entry the 11-point AP.
"""
import json
import os
from typing import Callable, NamedTuple, Set

from detectron2.data import DatasetCatalog

from .datasets import dataset_location, register_coco, register_voc


class UserFormat(NamedTuple):
    """What a DATASETS.USER entry of one FORMAT holds and how it is registered."""

    required: Set[str]
    optional: Set[str]
    register: Callable  # register(name, entry)
    detection: bool  # a detection set: its classes must match MODEL.ROI_HEADS.NUM_CLASSES


def _register_voc_entry(name, entry):
    register_voc(name, entry.DIRNAME, entry.SPLIT, tuple(entry.CLASSES),
                 year=2007 if entry.get("VOC07_METRIC", False) else 2012)


def _register_coco_entry(name, entry):
    register_coco(name, entry.JSON, entry.IMAGE_ROOT)


FORMATS = {
    "voc": UserFormat({"DIRNAME", "SPLIT", "CLASSES"}, {"VOC07_METRIC"}, _register_voc_entry,
                      detection=True),
    "coco": UserFormat({"JSON", "IMAGE_ROOT"}, set(), _register_coco_entry, detection=True),
}
# Formats that other parts of the package add (see `add_user_format`), listed in errors whether
# or not those parts are loaded, and named when used without them.
_ADDED_BY = {"imagefolder": "the classification half (tools/pretrain_net.py, "
                            "resnet_backbone.classification)"}


def add_user_format(kind, user_format):
    """Let DATASETS.USER entries take FORMAT `kind` (the classification half adds
    "imagefolder")."""
    FORMATS[kind] = user_format


_USER_ENTRIES = {}  # name -> the DATASETS.USER entry this module registered it from


def _check_entry(name, entry):
    where = f"DATASETS.USER.{name}"
    if not hasattr(entry, "get"):
        raise ValueError(f"{where} must be a mapping of FORMAT, paths and CLASSES, not {entry!r}")
    kind = str(entry.get("FORMAT", "")).lower()
    if kind not in FORMATS:
        needs = f" ({kind} sets are read by {_ADDED_BY[kind]})" if kind in _ADDED_BY else ""
        raise ValueError(f"{where}.FORMAT={entry.get('FORMAT')!r}: use one of "
                         f"{sorted(set(FORMATS) | set(_ADDED_BY))}{needs}")
    required, optional = FORMATS[kind].required, FORMATS[kind].optional
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


def register_user_datasets(cfg):
    """Register every `cfg.DATASETS.USER` entry into Detectron2's catalogs; an entry registered
    before (the same declaration) is left as it is."""
    for name, entry in cfg.DATASETS.USER.items():
        kind = _check_entry(name, entry)
        if _USER_ENTRIES.get(name) == entry:
            continue
        if name in _USER_ENTRIES:
            raise ValueError(f"DATASETS.USER.{name}: this process registered {name!r} from "
                             f"another declaration ({_USER_ENTRIES[name]}); a dataset "
                             "name is registered once, so give this one another name")
        if name in DatasetCatalog:
            raise ValueError(f"DATASETS.USER.{name}: the name {name!r} is already registered "
                             "(a builtin or project dataset); give your dataset another name")
        FORMATS[kind].register(name, entry)
        _USER_ENTRIES[name] = dict(entry)


def check_user_datasets(cfg):
    """MODEL.ROI_HEADS.NUM_CLASSES must equal the class count of each user dataset in use."""
    used = set(cfg.DATASETS.TRAIN) | set(cfg.DATASETS.TEST)
    for name, entry in cfg.DATASETS.USER.items():
        kind = entry.FORMAT.lower()
        if name not in used or not FORMATS[kind].detection:  # e.g. the classifier's own check
            continue
        if kind == "voc":
            classes, source = entry.CLASSES, f"DATASETS.USER.{name}.CLASSES"
        else:
            json_file = dataset_location(name)["json_file"]
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
