"""Classification datasets as dataset dicts ({"file_name" or "image", "label", "image_id"}),
registered at import (`imagenet_{train,val}`: ImageFolder trees under `imagenet/`;
`cifar10_{train,test}`: `cifar-10-batches-py/`), and the mapper making training crops or test
images.
"""
import os
import pickle

import numpy as np
import torch
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..data.datasets import register_dataset
from ..data.layout import datasets_root

EVALUATOR_TYPE = "classification"
CIFAR10_DIRNAME = "cifar-10-batches-py"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
# AlexNet's PCA colour augmentation constants are for pixels in 0..1; ours are in 0..255.
_LIGHTING_SCALE = 255.0


def load_image_folder(root):
    """Dicts of every image under root/<class>/, labels in sorted class order."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"{root} does not exist: an ImageFolder tree (root/<class>/<image>) is expected; "
            "see datasets/README.md"
        )
    classes, class_to_index = find_classes(root)
    samples = make_dataset(root, class_to_index, extensions=IMG_EXTENSIONS)
    return [{"file_name": path, "label": label, "image_id": index}
            for index, (path, label) in enumerate(samples)]


def register_image_folder(name, root):
    """Register the ImageFolder tree `root` as dataset `name`; classes are its subfolders."""
    classes = {"thing_classes": find_classes(root)[0]} if os.path.isdir(root) else {}
    register_dataset(name, ("imagefolder", root), lambda: load_image_folder(root),
                     evaluator_type=EVALUATOR_TYPE, image_root=root, **classes)


def load_cifar_batches(directory, files):
    """Dicts holding the images themselves (HxWx3 RGB uint8) from batches in CIFAR-10's python
    format (a pickled {"data": N x 3072 planar RGB rows, "labels"}) under `directory`;
    `file_name` names the record for error messages."""
    missing = [name for name in files if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-format files {missing} are missing in {directory} (CIFAR-10: the python "
            "version, cifar-10-python.tar.gz, unpacked; see datasets/README.md)"
        )
    records = []
    for name in files:
        with open(os.path.join(directory, name), "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        for image, label in zip(images.transpose(0, 2, 3, 1), batch["labels"]):
            index = len(records)
            records.append({"image": image, "label": int(label), "image_id": index,
                            "file_name": f"{directory}/{name}[{index}]"})
    return records


def load_cifar10(root, train):
    files = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    return load_cifar_batches(os.path.join(root, CIFAR10_DIRNAME), files)


def register_cifar10(root=None):
    root = root or datasets_root()
    for name, train in (("cifar10_train", True), ("cifar10_test", False)):
        register_dataset(name, ("cifar10", root, train),
                         lambda train=train: load_cifar10(root, train),
                         evaluator_type=EVALUATOR_TYPE, thing_classes=list(CIFAR10_CLASSES))


def register_imagenet(root=None):
    root = os.path.join(root or datasets_root(), "imagenet")
    for split in ("train", "val"):
        register_image_folder(f"imagenet_{split}", os.path.join(root, split))


class ClassificationMapper:
    """Reads a record's image and returns {"image": (C, H, W) uint8 tensor in INPUT.FORMAT,
    "label"}. Training: INPUT.CLS.PAD zero padding, shorter side sampled from
    INPUT.CLS.SHORT_SIDE_RANGE (empty: kept), a random INPUT.CLS.CROP square, a horizontal flip
    (INPUT.RANDOM_FLIP), PCA colour noise (INPUT.CLS.LIGHTING_STD). Test: the image unchanged
    (the model takes its views, MODEL.CLASSIFIER.TEST_MODE)."""

    def __init__(self, cfg, is_train):
        self.is_train = is_train
        self.input_format = cfg.INPUT.FORMAT
        c = cfg.INPUT.CLS
        self.pad = c.PAD
        augmentations = []
        if is_train:
            if len(c.SHORT_SIDE_RANGE):
                augmentations.append(T.ResizeShortestEdge(
                    tuple(c.SHORT_SIDE_RANGE), max_size=10**6, sample_style="range"))
            augmentations.append(T.RandomCrop("absolute", (c.CROP, c.CROP)))
            if cfg.INPUT.RANDOM_FLIP == "horizontal":
                augmentations.append(T.RandomFlip(horizontal=True))
            if c.LIGHTING_STD > 0:
                augmentations.append(T.RandomLighting(c.LIGHTING_STD * _LIGHTING_SCALE))
        self.augmentations = T.AugmentationList(augmentations)

    def __call__(self, record):
        if "image" in record:
            image = np.asarray(record["image"])
        else:
            image = utils.read_image(record["file_name"], format="RGB")
        if self.is_train and self.pad:
            image = np.pad(image, ((self.pad, self.pad), (self.pad, self.pad), (0, 0)))
        if self.is_train:
            aug_input = T.AugInput(image.astype(np.float32))
            self.augmentations(aug_input)
            image = np.clip(aug_input.image, 0, 255).round().astype(np.uint8)
        if self.input_format == "BGR":
            image = image[:, :, ::-1]
        tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        return {"image": tensor, "label": record["label"], "image_id": record["image_id"],
                "file_name": record["file_name"]}


register_imagenet()
register_cifar10()
