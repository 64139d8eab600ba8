"""Checks of the datasets a run uses, before any training starts (and for
datasets/check_datasets.py): every problem Detectron2 would crash on hours later, or silently get
wrong, stops with a `DatasetError` naming the dataset, the file and the entry. Unusable boxes are
dropped from training (RESNET_BACKBONE_DATA.BAD_BOXES "drop", logged) or refused ("error").
"""
import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from .datasets import (
    VOCAnnotationError,
    dataset_location,
    load_voc_split,
    prepare_dataset,
    read_ids,
)

logger = logging.getLogger(__name__)

_EXAMPLES = 10
_EXIF_ORIENTATION = 0x0112
# PIL modes that Detectron2's read_image (`Image.convert("RGB")`) clips to 255 instead of scaling.
_HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_VOC_EVALUATOR_FIELDS = ("pose", "truncated", "difficult")


class DatasetError(ValueError):
    """A dataset cannot be used as it is; the message names the file and the entry."""


def _entry(record):
    return f"{record.get('file_name')} (image_id {record.get('image_id')!r})"


def _listing(problems):
    shown = "\n  ".join(problems[:_EXAMPLES])
    more = f"\n  ... and {len(problems) - _EXAMPLES} more" if len(problems) > _EXAMPLES else ""
    return f"\n  {shown}{more}"


def _coco_problems(data):
    """What in a parsed COCO json Detectron2's load_coco_json would fail on or silently get
    wrong (pycocotools merges images with the same id)."""
    missing = [k for k in ("images", "annotations", "categories")
               if not isinstance(data.get(k), list)]
    if missing:
        return [f"no list {missing}"]
    problems = []
    for i, image in enumerate(data["images"]):
        absent = [k for k in ("id", "file_name", "width", "height") if k not in image]
        if absent:
            problems.append(f"images[{i}] (id {image.get('id')!r}, file_name "
                            f"{image.get('file_name')!r}) has no {', '.join(absent)}")
    for key in ("images", "annotations"):
        ids = Counter(item.get("id") for item in data[key])
        duplicates = sorted((i for i, n in ids.items() if n > 1), key=str)
        if duplicates:
            problems.append(f"{key} ids are not unique: " + ", ".join(
                f"id {i!r} ({ids[i]} times)" for i in duplicates[:_EXAMPLES]))
    image_ids = {image.get("id") for image in data["images"]}
    category_ids = {c.get("id") for c in data["categories"]}
    for a in data["annotations"]:
        box = a.get("bbox")
        if a.get("image_id") not in image_ids:
            problems.append(f"annotation {a.get('id')}: unknown image_id {a.get('image_id')!r}")
        elif a.get("category_id") not in category_ids:
            problems.append(
                f"annotation {a.get('id')}: unknown category_id {a.get('category_id')!r}")
        elif not (isinstance(box, list) and len(box) == 4):
            problems.append(f"annotation {a.get('id')}: bbox {box!r} is not [x, y, w, h]")
    return problems


def check_coco_json(json_file, dataset=""):
    """Raise DatasetError for a missing, unparsable or malformed COCO json."""
    where = f"dataset {dataset!r}: " if dataset else ""
    if not os.path.isfile(json_file):
        raise DatasetError(f"{where}annotation file {json_file} does not exist")
    try:
        with open(json_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{where}{json_file} is not readable JSON: {e}") from e
    problems = _coco_problems(data) if isinstance(data, dict) else ["not a JSON object"]
    if problems:
        raise DatasetError(f"{where}{json_file}: {problems[0]}" if len(problems) == 1
                           else f"{where}{json_file}: {len(problems)} problems:"
                           + _listing(problems))


def _voc_evaluation_problems(dirname, split):
    """Objects without the fields Detectron2's PascalVOCDetectionEvaluator reads."""
    problems = []
    for file_id in read_ids(os.path.join(dirname, "ImageSets", "Main", split + ".txt")):
        xml_file = os.path.join(dirname, "Annotations", file_id + ".xml")
        for obj in ET.parse(xml_file).iterfind("object"):
            absent = [k for k in _VOC_EVALUATOR_FIELDS if obj.find(k) is None]
            if absent:
                problems.append(f"{xml_file}: object {obj.findtext('name')!r} has no "
                                + ", ".join(f"<{k}>" for k in absent))
    return problems


class ImageProblem(ValueError):
    """Why an image file cannot be used, without its name (callers prefix the file or entry)."""


def read_image_header(path):
    """(width, height) of the image at `path` as Detectron2's read_image gives it (after the
    EXIF rotation it applies), from the header alone: nothing is decoded. ImageProblem when the
    file is not a readable image or has pixels read_image gets wrong (16-bit or float modes)."""
    try:
        with Image.open(path) as im:
            (width, height), mode = im.size, im.mode
            try:
                rotated = im.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8)
            except Exception:  # as Detectron2's read_image, which then does not rotate
                rotated = False
    except Exception as e:
        raise ImageProblem(f"image is not readable ({type(e).__name__}: {e})") from e
    if mode in _HIGH_BIT_DEPTH_MODES:
        raise ImageProblem(
            f"image has {mode!r} pixels (16-bit or float); Detectron2 reads these as 255 "
            "everywhere. Convert it to 8 bits per channel (e.g. "
            "Image.fromarray((np.asarray(im) >> 8).astype(np.uint8)) for 16-bit)")
    return (height, width) if rotated else (width, height)


def _image_problem(record):
    """Why the image of `record` cannot be used, from its header (`read_image_header`; its
    size against the annotation's), or None."""
    path = record.get("file_name")
    if not path or not os.path.isfile(path):
        return f"{_entry(record)}: image file does not exist"
    try:
        width, height = read_image_header(path)
    except ImageProblem as problem:
        return f"{_entry(record)}: {problem}"
    expected = (record.get("width"), record.get("height"))
    if None not in expected and (width, height) != tuple(expected):
        return (f"{_entry(record)}: image is {width}x{height} but its annotation says "
                f"{expected[0]}x{expected[1]} (width x height)")
    return None


def _box_problem(annotation, width, height):
    """(why a box is unusable or None, whether it reaches past the image)."""
    try:
        x0, y0, x1, y1 = BoxMode.convert(list(annotation["bbox"]), annotation["bbox_mode"],
                                         BoxMode.XYXY_ABS)
    except Exception as e:
        return f"box {annotation.get('bbox')} cannot be read ({e})", False
    box = [x0, y0, x1, y1]
    if not all(math.isfinite(v) for v in box):
        return f"box {box} is not finite", False
    if x1 <= x0 or y1 <= y0:
        return f"box {box} (XYXY) has zero or negative area", False
    if width and height and (x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height):
        return f"box {box} (XYXY) lies outside the {width}x{height} image", False
    return None, bool(width and height) and (x0 < 0 or y0 < 0 or x1 > width or y1 > height)


def _check_boxes(dicts):
    """([(record index, annotation index, message)] of every unusable box, the number of usable
    boxes that reach past their image)."""
    bad, partly = [], 0
    for i, record in enumerate(dicts):
        for j, annotation in enumerate(record.get("annotations", ())):
            problem, outside = _box_problem(annotation, record.get("width"), record.get("height"))
            if problem:
                bad.append((i, j, f"{_entry(record)}, annotation {j}: {problem}"))
            partly += outside
    return bad, partly


def drop_bad_boxes(dicts, what="dataset"):
    """The dicts without unusable boxes, logging how many were dropped (records left without
    boxes are kept: DATALOADER.FILTER_EMPTY_ANNOTATIONS decides about those)."""
    bad, _ = _check_boxes(dicts)
    if not bad:
        return dicts
    dropped = {(i, j) for i, j, _ in bad}
    records = {i for i, _ in dropped}
    out = [dict(d, annotations=[a for j, a in enumerate(d["annotations"]) if (i, j) not in dropped])
           if i in records else d for i, d in enumerate(dicts)]
    logger.warning(f"{what}: dropped {len(bad)} unusable boxes in {len(records)} images "
                   "(RESNET_BACKBONE_DATA.BAD_BOXES drop):" + _listing([m for *_, m in bad]))
    return out


def _source(meta, location):
    if location.get("json_file"):
        return location["json_file"]
    if location.get("dirname"):
        return os.path.join(location["dirname"], "ImageSets", "Main", f"{meta.get('split')}.txt")
    return "its source"


def _vocdevkit_hint(location):
    """How to link an unpacked-but-unlinked VOCdevkit/VOC20xx where Detectron2 looks for it."""
    dirname = location.get("dirname")
    if not dirname or os.path.isdir(dirname):
        return ""
    root, base = os.path.split(dirname)
    if not os.path.isdir(os.path.join(root, "VOCdevkit", base)):
        return ""
    return (f". VOCdevkit/{base}/ exists but Detectron2 expects {base}/ directly under the "
            f"datasets root: ln -s VOCdevkit/{base} {dirname}")


def _load(name, meta, location):
    try:
        return DatasetCatalog.get(name)
    except VOCAnnotationError as e:
        raise DatasetError(f"dataset {name!r}: {e}") from e
    except Exception as e:
        # A VOC split registered with Detectron2's own loader: our reader names the file.
        if location.get("dirname") and meta.get("split") and meta.get("thing_classes"):
            try:
                load_voc_split(location["dirname"], meta.split, meta.thing_classes)
            except VOCAnnotationError as named:
                raise DatasetError(f"dataset {name!r}: {named}") from e
            except Exception:
                pass
        raise DatasetError(f"dataset {name!r} could not be loaded: {type(e).__name__}: {e}"
                           + _vocdevkit_hint(location)) from e


def validate_dataset(name, *, read_images=True, bad_boxes="drop", num_threads=8,
                     training=False, evaluation=False):
    """Check one registered dataset; returns a summary dict, raises DatasetError. `training`
    requires a usable box; `evaluation` checks the VOC xml fields the evaluator reads."""
    if bad_boxes not in ("drop", "error"):
        raise DatasetError(f"RESNET_BACKBONE_DATA.BAD_BOXES must be 'drop' or 'error', "
                           f"not {bad_boxes!r}")
    if name not in DatasetCatalog:
        raise DatasetError(f"dataset {name!r} is not registered (DATASETS.TRAIN / DATASETS.TEST)")
    prepare_dataset(name)
    meta, location = MetadataCatalog.get(name), dataset_location(name)
    if location.get("json_file"):
        check_coco_json(location["json_file"], name)
    dicts = _load(name, meta, location)
    if not dicts:
        raise DatasetError(f"dataset {name!r} is empty: {_source(meta, location)} lists no "
                           "images")
    ids = Counter(str(d.get("image_id")) for d in dicts)
    duplicates = [i for i, n in ids.items() if n > 1]
    if duplicates:
        raise DatasetError(f"dataset {name!r}: image ids are not unique: {duplicates[:_EXAMPLES]}")
    if evaluation and meta.get("evaluator_type") == "pascal_voc":
        problems = _voc_evaluation_problems(location["dirname"], meta.split)
        if problems:
            raise DatasetError(f"dataset {name!r}: {len(problems)} objects lack fields the VOC "
                               "evaluator reads:" + _listing(problems))
    if read_images:
        with ThreadPoolExecutor(max(1, num_threads)) as pool:
            problems = [p for p in pool.map(_image_problem, dicts, chunksize=64) if p]
        if problems:
            raise DatasetError(f"dataset {name!r}: {len(problems)} of {len(dicts)} images cannot "
                               "be used:" + _listing(problems))
    bad, partly = _check_boxes(dicts)
    if bad and bad_boxes == "error":
        raise DatasetError(f"dataset {name!r}: {len(bad)} unusable boxes "
                           "(RESNET_BACKBONE_DATA.BAD_BOXES error):"
                           + _listing([m for *_, m in bad]))
    num_boxes = sum(len(d.get("annotations", ())) for d in dicts)
    if training and num_boxes == len(bad):
        raise DatasetError(f"dataset {name!r} has no usable box to train on "
                           f"({num_boxes} boxes, {len(bad)} unusable): "
                           f"{_source(meta, location)}")
    if bad:
        logger.warning(f"dataset {name!r}: {len(bad)} unusable boxes will be dropped from "
                       "training:" + _listing([m for *_, m in bad]))
    if partly:
        logger.info(f"dataset {name!r}: {partly} boxes extend past their image and are clipped")
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
    return {
        name: validate_dataset(name, read_images=opts.READ_IMAGE_HEADERS,
                               bad_boxes=opts.BAD_BOXES, num_threads=opts.NUM_THREADS,
                               training=name in cfg.DATASETS.TRAIN,
                               evaluation=name in cfg.DATASETS.TEST)
        for name in dict.fromkeys(names)
    }
