"""Checks of the datasets a run uses, before any training starts.

`validate_datasets(cfg)` (run by tools/train_net.py before the trainer is built, and before
anything is written to OUTPUT_DIR) loads DATASETS.TRAIN and DATASETS.TEST and stops with a
`DatasetError` naming the dataset, the file and the entry for:

* a COCO json that is missing or has duplicate image or annotation ids,
* a loader error (e.g. an unknown class name in a VOC xml, a missing xml),
* an empty split,
* a missing or unreadable image, or one whose size differs from its annotation (only the
  image header is read, with PIL, in a few threads; RESNET_BACKBONE_DATA.READ_IMAGE_HEADERS
  False skips this for huge datasets),
* with RESNET_BACKBONE_DATA.BAD_BOXES "error": a box with zero or negative (or non-finite) area,
  or entirely outside its image.

With BAD_BOXES "drop" (the default) such boxes are removed from the training set and the number
dropped is logged with the first few examples (Detectron2 itself would drop them silently after
clipping); boxes only partly outside the image are clipped by Detectron2 and only counted.
RESNET_BACKBONE_DATA.VALIDATE False skips the whole pass.
"""
import json
import logging
import math
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

logger = logging.getLogger(__name__)

_EXAMPLES = 10
_EXIF_ORIENTATION = 0x0112


class DatasetError(ValueError):
    """A dataset cannot be used as it is; the message names the file and the entry."""


def _entry(record):
    return f"{record.get('file_name')} (image_id {record.get('image_id')!r})"


def _listing(problems):
    shown = "\n  ".join(problems[:_EXAMPLES])
    more = f"\n  ... and {len(problems) - _EXAMPLES} more" if len(problems) > _EXAMPLES else ""
    return f"\n  {shown}{more}"


def check_coco_json(json_file, dataset=""):
    """Raise DatasetError for a missing/unparsable COCO json or duplicate image/annotation ids
    (pycocotools would silently merge images with the same id)."""
    where = f"dataset {dataset!r}: " if dataset else ""
    if not os.path.isfile(json_file):
        raise DatasetError(f"{where}annotation file {json_file} does not exist")
    try:
        with open(json_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{where}{json_file} is not readable JSON: {e}") from e
    for key in ("images", "annotations"):
        ids = Counter(item.get("id") for item in data.get(key, []))
        duplicates = sorted((i for i, n in ids.items() if n > 1), key=str)
        if duplicates:
            raise DatasetError(
                f"{where}{json_file}: {key} ids are not unique: "
                + ", ".join(f"id {i!r} ({ids[i]} times)" for i in duplicates[:_EXAMPLES])
            )


def image_size(path):
    """(width, height) from the header, after EXIF rotation as Detectron2's read_image applies."""
    with Image.open(path) as im:
        width, height = im.size
        try:
            orientation = im.getexif().get(_EXIF_ORIENTATION)
        except Exception:
            orientation = None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _image_problem(record):
    path = record.get("file_name")
    if not path or not os.path.isfile(path):
        return f"{_entry(record)}: image file does not exist"
    try:
        width, height = image_size(path)
    except Exception as e:
        return f"{_entry(record)}: image is not readable ({type(e).__name__}: {e})"
    expected = (record.get("width"), record.get("height"))
    if None not in expected and (width, height) != tuple(expected):
        return (f"{_entry(record)}: image is {width}x{height} but its annotation says "
                f"{expected[0]}x{expected[1]} (width x height)")
    return None


def box_problem(annotation, width, height):
    """Why a box is unusable (None if it is fine)."""
    try:
        x0, y0, x1, y1 = BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"],
                                         BoxMode.XYXY_ABS)
    except Exception as e:
        return f"box {annotation.get('bbox')} cannot be read ({e})"
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        return f"box {[x0, y0, x1, y1]} is not finite"
    if x1 <= x0 or y1 <= y0:
        return f"box {[x0, y0, x1, y1]} (XYXY) has zero or negative area"
    if width and height and (x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height):
        return f"box {[x0, y0, x1, y1]} (XYXY) lies outside the {width}x{height} image"
    return None


def _partly_outside(annotation, width, height):
    x0, y0, x1, y1 = BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"],
                                     BoxMode.XYXY_ABS)
    return bool(width and height) and (x0 < 0 or y0 < 0 or x1 > width or y1 > height)


def find_bad_boxes(dicts):
    """[(record index, annotation index, message)] for every unusable box."""
    bad = []
    for i, record in enumerate(dicts):
        for j, annotation in enumerate(record.get("annotations", ())):
            problem = box_problem(annotation, record.get("width"), record.get("height"))
            if problem:
                bad.append((i, j, f"{_entry(record)}, annotation {j}: {problem}"))
    return bad


def drop_bad_boxes(dicts, what="dataset"):
    """The dicts without unusable boxes (records are shallow-copied where changed); logs how
    many were dropped. Records left without boxes are kept (Detectron2's
    DATALOADER.FILTER_EMPTY_ANNOTATIONS decides about those)."""
    bad = find_bad_boxes(dicts)
    if not bad:
        return dicts
    by_record = {}
    for i, j, _ in bad:
        by_record.setdefault(i, set()).add(j)
    out = list(dicts)
    for i, drop in by_record.items():
        record = dict(out[i])
        record["annotations"] = [a for j, a in enumerate(record["annotations"]) if j not in drop]
        out[i] = record
    logger.warning(f"{what}: dropped {len(bad)} unusable boxes in {len(by_record)} images "
                   "(RESNET_BACKBONE_DATA.BAD_BOXES drop):" + _listing([m for *_, m in bad]))
    return out


def validate_dataset(name, *, read_images=True, bad_boxes="drop", num_threads=8):
    """Check one registered dataset; returns a summary dict, raises DatasetError."""
    if bad_boxes not in ("drop", "error"):
        raise DatasetError(f"RESNET_BACKBONE_DATA.BAD_BOXES must be 'drop' or 'error', "
                           f"not {bad_boxes!r}")
    if name not in DatasetCatalog:
        raise DatasetError(f"dataset {name!r} is not registered (DATASETS.TRAIN / DATASETS.TEST)")
    meta = MetadataCatalog.get(name)
    json_file = meta.get("json_file") if hasattr(meta, "json_file") else None
    if json_file:
        check_coco_json(json_file, name)
    try:
        dicts = DatasetCatalog.get(name)
    except Exception as e:
        raise DatasetError(f"dataset {name!r} could not be loaded: {type(e).__name__}: {e}") from e
    if not dicts:
        source = json_file or (f"{meta.get('dirname')}/ImageSets/Main/{meta.get('split')}.txt"
                               if hasattr(meta, "dirname") else "its source")
        raise DatasetError(f"dataset {name!r} is empty: {source} lists no images")
    ids = Counter(str(d.get("image_id")) for d in dicts)
    duplicates = [i for i, n in ids.items() if n > 1]
    if duplicates:
        raise DatasetError(f"dataset {name!r}: image ids are not unique: {duplicates[:_EXAMPLES]}")
    if read_images:
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            problems = [p for p in pool.map(_image_problem, dicts, chunksize=64) if p]
        if problems:
            raise DatasetError(f"dataset {name!r}: {len(problems)} of {len(dicts)} images cannot "
                               "be used:" + _listing(problems))
    bad = find_bad_boxes(dicts)
    partly = sum(
        _partly_outside(a, d.get("width"), d.get("height"))
        for d in dicts for a in d.get("annotations", ())
        if not box_problem(a, d.get("width"), d.get("height"))
    )
    if bad and bad_boxes == "error":
        raise DatasetError(f"dataset {name!r}: {len(bad)} unusable boxes "
                           "(RESNET_BACKBONE_DATA.BAD_BOXES error):" + _listing([m for *_, m in bad]))
    if bad:
        logger.warning(f"dataset {name!r}: {len(bad)} unusable boxes will be dropped from "
                       "training:" + _listing([m for *_, m in bad]))
    if partly:
        logger.info(f"dataset {name!r}: {partly} boxes extend past their image and are clipped")
    num_boxes = sum(len(d.get("annotations", ())) for d in dicts)
    logger.info(f"dataset {name!r}: {len(dicts)} images, {num_boxes} boxes checked")
    return {"images": len(dicts), "boxes": num_boxes, "bad_boxes": len(bad),
            "partly_outside": partly}


def validate_datasets(cfg, names=None):
    """Run `validate_dataset` on `names` (default DATASETS.TRAIN and DATASETS.TEST) unless
    RESNET_BACKBONE_DATA.VALIDATE is False."""
    opts = cfg.RESNET_BACKBONE_DATA
    if not opts.VALIDATE:
        return {}
    if names is None:
        names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST)
    names = list(dict.fromkeys(names))
    return {
        name: validate_dataset(name, read_images=opts.READ_IMAGE_HEADERS,
                               bad_boxes=opts.BAD_BOXES, num_threads=opts.NUM_THREADS)
        for name in names
    }
