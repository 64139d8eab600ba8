#!/usr/bin/env python
"""Check a dataset tree for the reproduction and say exactly what is missing or malformed.

    python datasets/check_datasets.py                 # every part, under $DETECTRON2_DATASETS
    python datasets/check_datasets.py voc2007 voc2012 --root /data/d2
    python datasets/check_datasets.py --list          # the parts and the dataset names they serve

Exit status: 0 when every checked part is usable, 1 when any has a problem, 2 on bad arguments.
A split whose size differs from the official release is reported as a warning, not a problem.
Needs only the Python standard library (no Detectron2), so it can run before installing anything.
"""
import argparse
import importlib.util
import json
import os
import sys
import xml.etree.ElementTree as ET
from typing import List, Sequence

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load_layout():
    """The path table, read from the source tree without importing the package (or Detectron2)."""
    path = os.path.join(_HERE, os.pardir, "resnet_backbone", "data", "layout.py")
    if os.path.isfile(path):
        spec = importlib.util.spec_from_file_location("_resnet_backbone_layout", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    from resnet_backbone.data import layout  # an installed package without the source tree

    return layout


layout = _load_layout()

# fmt: off
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
# fmt: on
MAX_LISTED = 8  # problems listed per kind before summarising the rest as a count


class Findings:
    def __init__(self):
        self.problems: List[str] = []
        self.warnings: List[str] = []
        self.notes: List[str] = []

    def problem_list(self, what: str, items: Sequence[str]) -> None:
        if items:
            shown = ", ".join(items[:MAX_LISTED])
            more = f" (and {len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            self.problems.append(f"{what} [{len(items)}]: {shown}{more}")


def _rel(root: str, path: str) -> str:
    return os.path.relpath(path, root)


def _listdir(path: str) -> set:
    try:
        return set(os.listdir(path))
    except OSError:
        return set()


def _check_voc_xml(path: str, class_names: Sequence[str]) -> str:
    """'' when the annotation is usable by Detectron2's loader and VOC evaluator, else why not."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as e:
        return f"unparsable ({e})"
    try:
        width, height = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
    except (TypeError, ValueError):
        return "no integer size/width and size/height"
    if width <= 0 or height <= 0:
        return f"bad size {width}x{height}"
    for obj in tree.iterfind("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in class_names:
            return f"unknown class {name!r}"
        for field in ("pose", "truncated", "difficult"):
            if obj.find(field) is None:
                return f"object {name} has no <{field}> (the VOC evaluator reads it)"
        try:
            x0, y0, x1, y1 = (
                int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")
            )
        except (TypeError, ValueError):
            return f"object {name} has no integer bndbox"
        if not (1 <= x0 <= x1 <= width and 1 <= y0 <= y1 <= height):
            return f"object {name} box {x0},{y0},{x1},{y1} outside 1..{width} x 1..{height}"
    return ""


def check_voc_split(root: str, name: str, spec, class_names, expected, out: Findings) -> None:
    dirname = os.path.join(root, spec.dirname)
    if not os.path.isdir(dirname):
        devkit = os.path.join(root, "VOCdevkit", spec.dirname)
        if os.path.isdir(devkit):
            out.problems.append(
                f"{name}: {_rel(root, dirname)}/ is missing but VOCdevkit/{spec.dirname}/ exists; "
                f"Detectron2 expects it directly under the root: "
                f"ln -s VOCdevkit/{spec.dirname} {dirname}"
            )
        else:
            out.problems.append(f"{name}: missing directory {_rel(root, dirname)}/")
        return
    ids_file = os.path.join(dirname, "ImageSets", "Main", spec.split + ".txt")
    if not os.path.isfile(ids_file):
        out.problems.append(f"{name}: missing file {_rel(root, ids_file)}")
        return
    with open(ids_file, encoding="utf-8") as f:
        ids = [line.split()[0] for line in f if line.strip()]
    if not ids:
        out.problems.append(f"{name}: {_rel(root, ids_file)} lists no images")
        return
    images = _listdir(os.path.join(dirname, "JPEGImages"))
    out.problem_list(f"{name}: ids in {spec.split}.txt without JPEGImages/<id>.jpg",
                     [i for i in ids if i + ".jpg" not in images])
    if spec.annotated:
        xmls = _listdir(os.path.join(dirname, "Annotations"))
        out.problem_list(f"{name}: ids in {spec.split}.txt without Annotations/<id>.xml",
                         [i for i in ids if i + ".xml" not in xmls])
        bad = []
        for i in ids:
            if i + ".xml" in xmls:
                why = _check_voc_xml(os.path.join(dirname, "Annotations", i + ".xml"), class_names)
                if why:
                    bad.append(f"{i}.xml: {why}")
        out.problem_list(f"{name}: malformed annotations", bad)
    if len(set(ids)) != len(ids):
        out.problems.append(f"{name}: {spec.split}.txt lists {len(ids) - len(set(ids))} ids twice")
    if expected and len(ids) != expected:
        out.warnings.append(f"{name}: {len(ids)} images, the official release has {expected}")
    out.notes.append(f"{name}: {len(ids)} images")


def check_coco_split(root: str, name: str, spec, expected, out: Findings,
                     num_classes: int = 80) -> None:
    json_file = os.path.join(root, spec.json_file)
    image_root = os.path.join(root, spec.image_root)
    if not os.path.isfile(json_file):
        out.problems.append(f"{name}: missing file {_rel(root, json_file)}")
        return
    if not os.path.isdir(image_root):
        out.problems.append(f"{name}: missing directory {_rel(root, image_root)}/")
        return
    try:
        with open(json_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        out.problems.append(f"{name}: {_rel(root, json_file)} is not readable json ({e})")
        return
    keys = ("images", "annotations", "categories")
    missing_keys = [k for k in keys if not isinstance(data.get(k), list)]
    if missing_keys:
        out.problems.append(f"{name}: {_rel(root, json_file)} has no list {missing_keys}")
        return
    if len(data["categories"]) != num_classes:
        out.problems.append(f"{name}: {len(data['categories'])} categories, expected {num_classes}")
    files = _listdir(image_root)
    out.problem_list(f"{name}: images in the json missing from {_rel(root, image_root)}/",
                     [im.get("file_name", "?") for im in data["images"]
                      if im.get("file_name") not in files])
    image_ids = {im.get("id") for im in data["images"]}
    category_ids = {c.get("id") for c in data["categories"]}
    bad = []
    for a in data["annotations"]:
        box = a.get("bbox")
        if a.get("image_id") not in image_ids:
            bad.append(f"annotation {a.get('id')}: unknown image_id {a.get('image_id')}")
        elif a.get("category_id") not in category_ids:
            bad.append(f"annotation {a.get('id')}: unknown category_id {a.get('category_id')}")
        elif not (isinstance(box, list) and len(box) == 4 and box[2] >= 0 and box[3] >= 0):
            bad.append(f"annotation {a.get('id')}: bad bbox {box}")
    out.problem_list(f"{name}: malformed annotations", bad)
    if expected and len(data["images"]) != expected:
        out.warnings.append(
            f"{name}: {len(data['images'])} images, the official release has {expected}"
        )
    out.notes.append(f"{name}: {len(data['images'])} images, {len(data['annotations'])} boxes")


def check_synthetic(root: str, out: Findings) -> None:
    syn = layout.synthetic_root(root)
    manifest = os.path.join(syn, "manifest.json")
    if not os.path.isfile(manifest):
        out.problems.append(
            f"synthetic: not generated ({_rel(root, manifest)} missing); run "
            "`python -m resnet_backbone.data.synthetic` (training on it also generates it)"
        )
        return
    try:
        with open(manifest, encoding="utf-8") as f:
            params = json.load(f)["params"]
    except (OSError, ValueError, KeyError) as e:
        out.problems.append(f"synthetic: unreadable manifest ({e})")
        return
    out.notes.append(f"synthetic: seed {params.get('seed')}")
    sub = os.path.relpath(syn, root)
    for name, split in layout.SYNTHETIC_COCO_SPLITS.items():
        spec = layout.COCOSplit(f"{sub}/images", f"{sub}/annotations/instances_{split}.json")
        check_coco_split(root, name, spec, None, out, num_classes=len(layout.SHAPE_CLASSES))
    for name, split in layout.SYNTHETIC_VOC_SPLITS.items():
        spec = layout.VOCSplit(f"{sub}/{layout.SYNTHETIC_VOC_DIRNAME}", split, 2007, True)
        check_voc_split(root, name, spec, layout.SHAPE_CLASSES, None, out)


def check_part(root: str, part: str) -> Findings:
    out = Findings()
    if part == "synthetic":
        check_synthetic(root, out)
        return out
    for name, expected in layout.PARTS[part].items():
        spec = layout.PAPER_SPLITS[name]
        if isinstance(spec, layout.VOCSplit):
            check_voc_split(root, name, spec, VOC_CLASSES, expected, out)
        else:
            check_coco_split(root, name, spec, expected, out)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"parts to check (default: all): {', '.join(layout.PARTS)}")
    parser.add_argument("--root", default=None,
                        help="the datasets root (default: $DETECTRON2_DATASETS, else ./datasets)")
    parser.add_argument("--list", action="store_true", help="list the parts and exit")
    args = parser.parse_args(argv)
    if args.list:
        for part, splits in layout.PARTS.items():
            names = list(splits) or [*layout.SYNTHETIC_COCO_SPLITS, *layout.SYNTHETIC_VOC_SPLITS]
            print(f"{part:18s} {', '.join(names)}")
        return 0
    unknown = [p for p in args.parts if p not in layout.PARTS]
    if unknown:
        print(f"unknown part(s) {unknown}; choose from {list(layout.PARTS)}", file=sys.stderr)
        return 2
    root = layout.datasets_root() if args.root is None else args.root
    print(f"Checking {os.path.abspath(root)}")
    failed = []
    for part in args.parts or list(layout.PARTS):
        found = check_part(root, part)
        status = "FAIL" if found.problems else "ok"
        print(f"[{status:4s}] {part}" + (f": {'; '.join(found.notes)}" if found.notes else ""))
        for line in found.problems:
            print(f"       problem: {line}")
        for line in found.warnings:
            print(f"       warning: {line}")
        if found.problems:
            failed.append(part)
    if failed:
        print(f"{len(failed)} part(s) with problems: {', '.join(failed)} (see datasets/README.md)")
        return 1
    print("all checked parts are usable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
