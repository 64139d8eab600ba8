"""The images an export is traced and checked on, prepared as the model sees them at test time."""
import os

import torch
import torch.nn.functional as F

import detectron2.data.transforms as T
from detectron2.data import DatasetCatalog, detection_utils


def first_test_image(run):
    """The file of the first image of the run's first test set (what Detectron2's export
    traces on when given no --sample-image)."""
    if not run.test_datasets:
        raise ValueError(f"{run.test_datasets_key} is empty, so there is no image to trace "
                         "on; pass --sample-image IMAGE")
    name = run.test_datasets[0]
    try:
        records = DatasetCatalog.get(name)
    except Exception as error:  # unregistered name, or its files are missing
        raise ValueError(f"{run.test_datasets_key}[0]={name!r} gives no image to trace on "
                         f"({error}); pass --sample-image IMAGE") from error
    if not records:
        raise ValueError(f"{run.test_datasets_key}[0]={name!r} has no images; pass "
                         "--sample-image IMAGE")
    return records[0]["file_name"]


def read_sample_image(run, path):
    """The image at `path` read in the run's pixel order and resized by its test-time
    augmentations (as Detectron2's DefaultPredictor does): a float (3, H, W) tensor on the
    run's device."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--sample-image {path}: no such file")
    try:
        image = detection_utils.read_image(path, format=run.input_format)
    except Exception as error:
        raise ValueError(f"--sample-image {path}: not a readable image ({error})") from error
    resized = T.AugInput(image)
    T.AugmentationList(run.test_augmentations())(resized)
    tensor = torch.as_tensor(resized.image.astype("float32").transpose(2, 0, 1))
    return tensor.to(run.device)


def test_resize(run):
    """The test-time resize of `run` as export.json records it: {"shorter_side": ...,
    "longer_side_at_most": ...} of its ResizeShortestEdge, else the augmentations' names."""
    augmentations = run.test_augmentations()
    for augmentation in augmentations:
        if isinstance(augmentation, T.ResizeShortestEdge):
            return {"shorter_side": augmentation.short_edge_length[0],
                    "longer_side_at_most": augmentation.max_size}
    return {"augmentations": [type(a).__name__ for a in augmentations]}


def rescaled(image, factor):
    """`image` (3, H, W) resized by `factor`: a second input size for checking an export."""
    height, width = (round(side * factor) for side in image.shape[1:])
    return F.interpolate(image[None], size=(height, width), mode="bilinear",
                         align_corners=False)[0]
