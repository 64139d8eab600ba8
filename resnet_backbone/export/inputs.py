"""The images an export is traced and checked on, prepared as the model sees them at test time."""
import os

import torch
import torch.nn.functional as F

import detectron2.data.transforms as T
from detectron2.data import DatasetCatalog, detection_utils


def first_test_image(cfg):
    """The file of the first image of DATASETS.TEST[0] (what Detectron2's export traces on when
    given no --sample-image)."""
    if not cfg.DATASETS.TEST:
        raise ValueError("DATASETS.TEST is empty, so there is no image to trace on; pass "
                         "--sample-image IMAGE")
    name = cfg.DATASETS.TEST[0]
    try:
        records = DatasetCatalog.get(name)
    except Exception as error:  # unregistered name, or its files are missing
        raise ValueError(f"DATASETS.TEST[0]={name!r} gives no image to trace on ({error}); "
                         "pass --sample-image IMAGE") from error
    if not records:
        raise ValueError(f"DATASETS.TEST[0]={name!r} has no images; pass --sample-image IMAGE")
    return records[0]["file_name"]


def read_sample_image(cfg, path):
    """The image at `path` read in INPUT.FORMAT and resized as Detectron2's DefaultPredictor
    does (shorter side INPUT.MIN_SIZE_TEST, longer side at most INPUT.MAX_SIZE_TEST): a float
    (3, H, W) tensor on MODEL.DEVICE."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--sample-image {path}: no such file")
    try:
        image = detection_utils.read_image(path, format=cfg.INPUT.FORMAT)
    except Exception as error:
        raise ValueError(f"--sample-image {path}: not a readable image ({error})") from error
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    image = resize.get_transform(image).apply_image(image)
    tensor = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
    return tensor.to(cfg.MODEL.DEVICE)


def rescaled(image, factor):
    """`image` (3, H, W) resized by `factor`: a second input size for checking an export."""
    height, width = (round(side * factor) for side in image.shape[1:])
    return F.interpolate(image[None], size=(height, width), mode="bilinear",
                         align_corners=False)[0]
