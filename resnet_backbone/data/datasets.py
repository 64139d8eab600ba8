"""Registration of every dataset the reproduction uses into Detectron2's catalogs.

Detectron2's own `detectron2.data.datasets.builtin` already registers, under
`$DETECTRON2_DATASETS` as it was when Detectron2 was imported, voc_2007_{trainval,train,val,test},
voc_2012_{trainval,train,val} and the coco_2014_* / coco_2017_* instance splits; those entries are
reused as they are. Added here:

    voc_2012_test                 images only (labels are on the evaluation server)
    voc_2007_2012_trainval        VOC 07+12  = VOC_07_12 concatenated (paper Table 7, VOC 07 test)
    voc_0712pp_trainval           VOC 07++12 = VOC_07PP_12 concatenated (Table 7, VOC 12 test)
    synthetic_shapes_{train,val}      COCO form of the embedded synthetic data
    synthetic_shapes_voc_{train,val}  VOC form of the same samples

`register_all(root)` is idempotent: called again with the same root it does nothing; with another
root it re-points every name above (the builtin ones included) at that root, which is what tests
and tools that take a `--datasets-root` need, since the builtin paths were fixed at import.

The synthetic splits generate their data on first use (`ensure_synthetic` defaults) when the tree
is missing; a tree already there is used whatever parameters made it.
"""
import logging
import os
import shutil
import tempfile
import warnings
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json, register_coco_instances
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASS_NAMES
from detectron2.structures import BoxMode
from PIL import Image

from .layout import (
    PAPER_SPLITS,
    SHAPE_CLASSES,
    SYNTHETIC_COCO_SPLITS,
    SYNTHETIC_VOC_DIRNAME,
    SYNTHETIC_VOC_SPLITS,
    VOC_07_12,
    VOC_07PP_12,
    COCOSplit,
    VOCSplit,
    datasets_root,
    synthetic_root,
)

__all__ = [
    "VOC_CLASS_NAMES",
    "VOC_07_12",
    "VOC_07PP_12",
    "VOC_COMBOS",
    "load_voc_split",
    "register_all",
    "register_paper_datasets",
    "register_voc_combos",
    "register_synthetic",
]

logger = logging.getLogger(__name__)

# Single-name versions of the paper's VOC training sets (Detectron2 also accepts the tuples).
VOC_COMBOS: Dict[str, Sequence[str]] = {
    "voc_2007_2012_trainval": VOC_07_12,
    "voc_0712pp_trainval": VOC_07PP_12,
}


def _read_ids(path: str) -> List[str]:
    with open(path, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def load_voc_split(
    dirname: str, split: str, class_names: Sequence[str], annotated: bool = True
) -> List[Dict]:
    """Read a VOC-layout split into Detectron2 dicts.

    The records match `detectron2.data.datasets.pascal_voc.load_voc_instances`: image_id is the
    file id, boxes are XYXY_ABS with the 1-based inclusive VOC corners mapped to [xmin - 1,
    ymin - 1, xmax, ymax], and "difficult" objects are kept for training. With
    `annotated=False` (VOC 2012 test) the records have no "annotations" key and the size comes
    from Annotations/<id>.xml when one exists, else from the JPEG header.
    """
    ids = _read_ids(os.path.join(dirname, "ImageSets", "Main", split + ".txt"))
    records = []
    for file_id in ids:
        image_file = os.path.join(dirname, "JPEGImages", file_id + ".jpg")
        xml_file = os.path.join(dirname, "Annotations", file_id + ".xml")
        record = {"file_name": image_file, "image_id": file_id}
        if annotated or os.path.isfile(xml_file):
            tree = ET.parse(xml_file)
            record["height"] = int(tree.findtext("size/height"))
            record["width"] = int(tree.findtext("size/width"))
        else:
            with Image.open(image_file) as im:
                record["width"], record["height"] = im.size
        if annotated:
            annotations = []
            for obj in tree.iterfind("object"):
                box = obj.find("bndbox")
                xmin, ymin, xmax, ymax = (
                    float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")
                )
                class_name = (obj.findtext("name") or "").strip()
                if class_name not in class_names:
                    raise ValueError(
                        f"{xml_file} (image_id {file_id!r}): unknown class name "
                        f"{class_name!r}; known: {list(class_names)}"
                    )
                annotations.append(
                    {
                        "category_id": class_names.index(class_name),
                        "bbox": [xmin - 1.0, ymin - 1.0, xmax, ymax],
                        "bbox_mode": BoxMode.XYXY_ABS,
                    }
                )
            record["annotations"] = annotations
        records.append(record)
    return records


_D2_VOC_LOADER_WORKS: Optional[bool] = None


def _detectron2_voc_loader_works() -> bool:
    """Whether Detectron2's `load_voc_instances` runs with this numpy.

    v0.6 calls `np.loadtxt(..., dtype=np.str)`, and `np.str` is gone from numpy >= 1.24; later
    Detectron2 fixed it. Probed once on an empty split rather than guessed from version strings.
    """
    global _D2_VOC_LOADER_WORKS
    if _D2_VOC_LOADER_WORKS is None:
        from detectron2.data.datasets.pascal_voc import load_voc_instances

        tmp = tempfile.mkdtemp(prefix="voc_probe_")
        try:
            os.makedirs(os.path.join(tmp, "ImageSets", "Main"))
            open(os.path.join(tmp, "ImageSets", "Main", "probe.txt"), "w").close()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy's FutureWarning about np.str
                load_voc_instances(tmp, "probe", VOC_CLASS_NAMES)
            _D2_VOC_LOADER_WORKS = True
        except AttributeError:
            _D2_VOC_LOADER_WORKS = False
        except Exception:  # any other failure on an empty file: not ours to judge, reuse it
            _D2_VOC_LOADER_WORKS = True
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if not _D2_VOC_LOADER_WORKS:
            logger.info(
                "Detectron2's load_voc_instances fails with this numpy (np.str); "
                "its VOC splits are served by resnet_backbone.data.load_voc_split"
            )
    return _D2_VOC_LOADER_WORKS


# Names whose catalog entries this module made, with the location they point at.
_OURS: Dict[str, tuple] = {}


def _replace(name: str) -> None:
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
    if name in MetadataCatalog:
        MetadataCatalog.remove(name)
    _OURS.pop(name, None)


def _register_voc(name: str, dirname: str, split: str, year: int, class_names, annotated: bool,
                  evaluator_type: str) -> None:
    location = ("voc", dirname, split)
    if _OURS.get(name) == location:
        return
    if name in DatasetCatalog and name not in _OURS:  # Detectron2's builtin entry
        meta = MetadataCatalog.get(name)
        if (meta.get("dirname") == dirname and meta.get("split") == split
                and _detectron2_voc_loader_works()):
            return  # reuse it as it is
    _replace(name)
    classes = tuple(class_names)
    DatasetCatalog.register(
        name, lambda: load_voc_split(dirname, split, classes, annotated=annotated)
    )
    MetadataCatalog.get(name).set(
        thing_classes=list(classes), dirname=dirname, year=year, split=split,
        evaluator_type=evaluator_type,
    )
    _OURS[name] = location


def _register_coco(name: str, json_file: str, image_root: str) -> None:
    location = ("coco", json_file, image_root)
    if _OURS.get(name) == location:
        return
    meta = MetadataCatalog.get(name) if name in DatasetCatalog else None
    if meta is not None and name not in _OURS:
        if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
            return  # Detectron2's builtin entry, reused
    # Keep the class metadata Detectron2 attached to its builtin COCO names.
    keep = {}
    if meta is not None:
        class_keys = ("thing_classes", "thing_dataset_id_to_contiguous_id", "thing_colors")
        keep = {k: v for k, v in meta.as_dict().items() if k in class_keys}
    _replace(name)
    register_coco_instances(name, keep, json_file, image_root)
    _OURS[name] = location


def register_paper_datasets(root: Optional[str] = None) -> None:
    """Point every split of `layout.PAPER_SPLITS` under `root` (default $DETECTRON2_DATASETS)."""
    root = datasets_root() if root is None else root
    for name, spec in PAPER_SPLITS.items():
        if isinstance(spec, VOCSplit):
            _register_voc(
                name, os.path.join(root, spec.dirname), spec.split, spec.year, VOC_CLASS_NAMES,
                annotated=spec.annotated,
                evaluator_type="pascal_voc" if spec.annotated else "pascal_voc_submission",
            )
        elif isinstance(spec, COCOSplit):
            _register_coco(
                name, os.path.join(root, spec.json_file), os.path.join(root, spec.image_root)
            )
        else:  # pragma: no cover - layout table typo
            raise TypeError(f"{name}: unknown split spec {spec!r}")


def _concatenation(parts: Sequence[str]):
    def load():
        return [record for part in parts for record in DatasetCatalog.get(part)]

    return load


def register_voc_combos() -> None:
    """Register `VOC_COMBOS` (training only; the parts are looked up when loaded)."""
    for name, parts in VOC_COMBOS.items():
        if _OURS.get(name) == ("concat", tuple(parts)):
            continue
        _replace(name)
        DatasetCatalog.register(name, _concatenation(tuple(parts)))
        MetadataCatalog.get(name).set(thing_classes=list(VOC_CLASS_NAMES), parts=list(parts))
        _OURS[name] = ("concat", tuple(parts))


def _with_synthetic_data(root: str, load):
    """Wrap a loader so that a missing synthetic tree is generated (defaults) before loading."""

    def wrapped():
        from .synthetic import ensure_synthetic, is_complete

        if not is_complete(root):
            ensure_synthetic(root)
        return load()

    return wrapped


def register_synthetic(root: Optional[str] = None) -> None:
    """Register the synthetic splits on the tree at `root` (default: `synthetic_root()`)."""
    root = synthetic_root() if root is None else root
    voc_dir = os.path.join(root, SYNTHETIC_VOC_DIRNAME)
    for name, split in SYNTHETIC_COCO_SPLITS.items():
        json_file = os.path.join(root, "annotations", f"instances_{split}.json")
        image_root = os.path.join(root, "images")
        if _OURS.get(name) == ("coco", json_file, image_root):
            continue
        _replace(name)
        DatasetCatalog.register(
            name,
            _with_synthetic_data(
                root, lambda j=json_file, i=image_root, n=name: load_coco_json(j, i, n)
            ),
        )
        MetadataCatalog.get(name).set(
            json_file=json_file,
            image_root=image_root,
            evaluator_type="coco",
            thing_classes=list(SHAPE_CLASSES),
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(SHAPE_CLASSES))},
            synthetic_root=root,
        )
        _OURS[name] = ("coco", json_file, image_root)
    for name, split in SYNTHETIC_VOC_SPLITS.items():
        if _OURS.get(name) == ("voc", voc_dir, split):
            continue
        _replace(name)
        DatasetCatalog.register(
            name,
            _with_synthetic_data(
                root, lambda s=split: load_voc_split(voc_dir, s, SHAPE_CLASSES)
            ),
        )
        # year=2007 makes PascalVOCDetectionEvaluator use the VOC07 11-point AP.
        MetadataCatalog.get(name).set(
            thing_classes=list(SHAPE_CLASSES), dirname=voc_dir, year=2007, split=split,
            evaluator_type="pascal_voc", synthetic_root=root,
        )
        _OURS[name] = ("voc", voc_dir, split)


def register_all(root: Optional[str] = None) -> None:
    """Register (or re-point) every dataset name of the project under `root`.

    `root` defaults to `$DETECTRON2_DATASETS` (or `datasets`), read now. Idempotent.
    """
    root = datasets_root() if root is None else root
    register_paper_datasets(root)
    register_voc_combos()
    register_synthetic(synthetic_root(root))
