"""The embedded classification set `synthetic_shapes_cls_{train,val}`: a 32x32 crop around every
object of the synthetic shapes images, labelled by its shape class, written in CIFAR-10's python
format under `$DETECTRON2_DATASETS/synthetic_shapes_cls/` when first loaded (same bytes for the
same parameters, numpy and Pillow).
"""
import math
import os
import pickle

import numpy as np
from PIL import Image

from ..data.datasets import register_dataset
from ..data.layout import SHAPE_CLASSES
from ..data.shapes import SyntheticParams, render_sample
from ..files import atomic_write
from ..weights.safe_load import read_pickle
from .data import EVALUATOR_TYPE, load_cifar_batches

DIRNAME = "synthetic_shapes_cls"
CROP_SIZE = 32
CONTEXT = 1.25  # side of the square crop / longer side of the object's box
# Small source images (objects 17..64 px across) make about 2.65 objects each: about 4,000
# training and 530 validation crops, drawn in about 25 s.
SOURCE = SyntheticParams(seed=0, num_train=1500, num_val=200, min_side=96, max_side=128)
SPLITS = {"synthetic_shapes_cls_train": "train", "synthetic_shapes_cls_val": "val"}
PICKLE_PROTOCOL = 4


def crop_object(image, bbox, size=CROP_SIZE):
    """The size x size (bilinear) resize of the square of side CONTEXT x the box's longer side
    centred on the box; image borders are extended by their edge pixels."""
    x0, y0, x1, y1 = bbox
    side = max(math.ceil(CONTEXT * max(x1 - x0, y1 - y0)), 2)
    left = int(round((x0 + x1 - side) / 2)) + side
    top = int(round((y0 + y1 - side) / 2)) + side
    padded = np.pad(image, ((side, side), (side, side), (0, 0)), mode="edge")
    square = padded[top:top + side, left:left + side]
    return np.asarray(Image.fromarray(square).resize((size, size), Image.BILINEAR))


def batch_label(split, params):
    """What made a batch; a batch whose label differs is regenerated."""
    return f"{DIRNAME} {split} crop={CROP_SIZE} context={CONTEXT} {params}"


def render_batch(split, params=SOURCE):
    """{"batch_label", "data" (N x 3072 planar RGB rows, uint8), "labels"} of every object of
    the split's images, in image order."""
    crops, labels = [], []
    for index in range(params.num_train if split == "train" else params.num_val):
        image, objects = render_sample(params, split, index)
        for obj in objects:
            crops.append(crop_object(image, obj["bbox"]))
            labels.append(obj["category_id"])
    data = np.stack(crops).transpose(0, 3, 1, 2).reshape(len(crops), -1)
    return {"batch_label": batch_label(split, params), "data": np.ascontiguousarray(data),
            "labels": labels}


def ensure_batch(directory, split, params=SOURCE):
    """Write directory/<split>_batch unless it holds this split made with `params`; its name."""
    name = f"{split}_batch"
    path = os.path.join(directory, name)
    if os.path.isfile(path) and read_pickle(path).get("batch_label") == batch_label(split, params):
        return name
    os.makedirs(directory, exist_ok=True)
    batch = render_batch(split, params)
    atomic_write(path, lambda f: pickle.dump(batch, f, protocol=PICKLE_PROTOCOL))
    return name


def load_shapes_crops(directory, split, params=SOURCE):
    return load_cifar_batches(directory, [ensure_batch(directory, split, params)])


def register_shapes_crops():
    """Register the two splits, in $DETECTRON2_DATASETS/synthetic_shapes_cls when loaded."""
    for name, split in SPLITS.items():
        register_dataset(name, lambda at, split=split: load_shapes_crops(at["dirname"], split),
                         {"dirname": DIRNAME}, evaluator_type=EVALUATOR_TYPE,
                         thing_classes=list(SHAPE_CLASSES))


register_shapes_crops()
