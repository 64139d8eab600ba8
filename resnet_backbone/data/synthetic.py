"""The synthetic shapes dataset on disk, the project's embedded default data: the samples of
`shapes.render_sample` as COCO (<root>/annotations, images/) and VOC (<root>/VOCshapes) trees
with the same boxes, and <root>/manifest.json (parameters, format version) written last. A seed
gives byte-identical files; the tree is built beside its place and renamed into it, so an
interrupted run never leaves a tree that looks complete. CLI: tools/make_synthetic_data.py.
"""
import dataclasses
import io
import json
import os
import shutil
import tempfile
from typing import Dict, List, Optional

from PIL import Image

from .layout import SHAPE_CLASSES, SYNTHETIC_VOC_DIRNAME, synthetic_root
from .shapes import SPLIT_CODES, SyntheticParams, render_sample

# Bump when the drawing or file format changes, so trees made by older code are regenerated.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS = ("train", "val")


def _voc_xml(file_id: str, width: int, height: int, objects: List[Dict]) -> str:
    lines = [
        "<annotation>",
        f"  <folder>{SYNTHETIC_VOC_DIRNAME}</folder>",
        f"  <filename>{file_id}.jpg</filename>",
        "  <source><database>resnet_backbone synthetic shapes</database></source>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
        "  <segmented>0</segmented>",
    ]
    for obj in objects:
        x0, y0, x1, y1 = obj["bbox"]
        lines += [
            "  <object>",
            f"    <name>{SHAPE_CLASSES[obj['category_id']]}</name>",
            "    <pose>Unspecified</pose>",
            f"    <truncated>{obj['truncated']}</truncated>",
            f"    <occluded>{obj['occluded']}</occluded>",
            "    <difficult>0</difficult>",
            f"    <bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>",
            "  </object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _write_tree(root: str, params: SyntheticParams) -> Dict:
    voc = os.path.join(root, SYNTHETIC_VOC_DIRNAME)
    for d in ("annotations", "images"):
        os.makedirs(os.path.join(root, d))
    for d in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(voc, d))
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"}
                  for i, name in enumerate(SHAPE_CLASSES)]
    summary = {}
    all_ids = []
    for split in SPLITS:
        count = params.num_train if split == "train" else params.num_val
        images, annotations, ids = [], [], []
        per_class = [0] * len(SHAPE_CLASSES)
        for i in range(count):
            file_id = f"{split}_{i:06d}"
            image_id = SPLIT_CODES[split] * 1_000_000 + i + 1
            image, objects = render_sample(params, split, i)
            h, w = image.shape[:2]
            jpeg = io.BytesIO()
            Image.fromarray(image).save(jpeg, format="JPEG", quality=params.jpeg_quality)
            for d in (os.path.join(root, "images"), os.path.join(voc, "JPEGImages")):
                with open(os.path.join(d, file_id + ".jpg"), "wb") as f:
                    f.write(jpeg.getvalue())
            _write_text(os.path.join(voc, "Annotations", file_id + ".xml"),
                        _voc_xml(file_id, w, h, objects))
            images.append({"id": image_id, "file_name": file_id + ".jpg", "width": w, "height": h})
            for obj in objects:
                x0, y0, x1, y1 = obj["bbox"]
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": obj["category_id"] + 1,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": obj["area"],
                                    "iscrowd": 0})
                per_class[obj["category_id"]] += 1
            ids.append(file_id)
        coco = {"info": {"description": f"resnet_backbone synthetic shapes, {split} split",
                         "version": str(FORMAT_VERSION)},
                "licenses": [], "categories": categories, "images": images,
                "annotations": annotations}
        _write_text(os.path.join(root, "annotations", f"instances_{split}.json"),
                    json.dumps(coco, sort_keys=True, separators=(",", ":")) + "\n")
        _write_text(os.path.join(voc, "ImageSets", "Main", f"{split}.txt"),
                    "".join(x + "\n" for x in ids))
        all_ids += ids
        summary[split] = {"images": count, "objects": len(annotations),
                          "objects_per_class": dict(zip(SHAPE_CLASSES, per_class))}
    _write_text(os.path.join(voc, "ImageSets", "Main", "trainval.txt"),
                "".join(x + "\n" for x in all_ids))
    manifest = {"generator": "resnet_backbone.data.synthetic", "format_version": FORMAT_VERSION,
                "classes": list(SHAPE_CLASSES), "params": dataclasses.asdict(params),
                "splits": summary}
    _write_text(os.path.join(root, MANIFEST), json.dumps(manifest, sort_keys=True, indent=2) + "\n")
    return manifest


def read_manifest(root: str) -> Optional[Dict]:
    """The tree's manifest, or None if there is none (or it cannot be read)."""
    try:
        with open(os.path.join(root, MANIFEST), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_complete(root: str, params: Optional[SyntheticParams] = None) -> bool:
    """Whether `root` holds a finished tree from this generator version (with these params)."""
    manifest = read_manifest(root)
    if not manifest or manifest.get("format_version") != FORMAT_VERSION:
        return False
    if params is not None and manifest.get("params") != dataclasses.asdict(params):
        return False
    voc_sets = os.path.join(root, SYNTHETIC_VOC_DIRNAME, "ImageSets", "Main")
    return all(
        os.path.isfile(os.path.join(root, "annotations", f"instances_{s}.json"))
        and os.path.isfile(os.path.join(voc_sets, f"{s}.txt"))
        for s in SPLITS
    )


def write_synthetic(root: str, params: SyntheticParams, force: bool = False) -> Dict:
    """(Re)generate the tree at `root`, atomically; returns the manifest. Only an empty `root`
    or one this generator wrote is replaced; a tree another process published first with the
    same parameters is kept unless `force`."""
    params.validate()
    root = os.path.abspath(root)
    if os.path.exists(root) and os.listdir(root) and read_manifest(root) is None:
        raise FileExistsError(
            f"{root} exists and is not a synthetic_shapes tree (no {MANIFEST}); "
            "refusing to replace it. Move it away or pick another --root."
        )
    parent, base = os.path.split(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
    aside = None
    try:
        manifest = _write_tree(tmp, params)
        if not force and is_complete(root, params):
            return manifest  # identical tree already published; readers may be using it
        if os.path.exists(root):
            aside = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rename(root, os.path.join(aside, base))
        try:
            os.rename(tmp, root)
        except OSError:
            # Another process published a tree between our check and rename; keep it if it is
            # the one we were asked for.
            if not is_complete(root, params):
                raise
    finally:
        for d in (tmp, aside):
            if d is not None and os.path.exists(d):
                shutil.rmtree(d, ignore_errors=True)
    return manifest


def ensure_synthetic(root: Optional[str] = None, *, force: bool = False, **params) -> str:
    """Generate the tree at `root` (default `synthetic_root()`) unless it is there with these
    `SyntheticParams`; returns the root."""
    root = synthetic_root() if root is None else root
    params = SyntheticParams(**params).validate()
    if force or not is_complete(root, params):
        write_synthetic(root, params, force=force)
    return root
