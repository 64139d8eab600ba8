"""Classification datasets as dataset dicts ({"file_name" or "image", "label", "image_id"}),
registered at import (`imagenet_{train,val}`: ImageFolder trees under `imagenet/`;
`cifar10_{train,test}` and the 45k/5k split of the training set `cifar10_{train45k,val5k}`:
`cifar-10-batches-py/`), and the mapper making training crops or test images.
"""
import os

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import RandomCrop

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..data.custom import UserFormat, add_user_format
from ..data.datasets import dataset_location, register_dataset
from ..weights.safe_load import read_pickle
from .views import resize_shorter_side

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
    """Register the ImageFolder tree `root` (relative to the datasets root, or absolute) as
    dataset `name`; classes are its subfolders, when it exists at registration."""
    register_dataset(name, lambda at: load_image_folder(at["image_root"]), {"image_root": root},
                     evaluator_type=EVALUATOR_TYPE)
    root = dataset_location(name)["image_root"]
    if os.path.isdir(root):
        MetadataCatalog.get(name).thing_classes = find_classes(root)[0]


def _register_image_folder_entry(name, entry):
    register_image_folder(name, entry.ROOT)


# DATASETS.USER: {FORMAT: "imagefolder", ROOT: ...}; its classes are the classifier's to check.
add_user_format("imagefolder", UserFormat({"ROOT"}, set(), _register_image_folder_entry,
                                          detection=False))


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
        batch = read_pickle(os.path.join(directory, name))
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        for image, label in zip(images.transpose(0, 2, 3, 1), batch["labels"]):
            index = len(records)
            records.append({"image": image, "label": int(label), "image_id": index,
                            "file_name": f"{directory}/{name}[{index}]"})
    return records


# The paper's Sec. 4.2 chooses its hyper-parameters on "a 45k/5k train/val split" of the 50k
# training images without saying which 5k; here the last 5,000 (data_batch_5's second half).
CIFAR10_VAL_SIZE = 5000
# Dataset name -> (batch files, which of their images: "all", "train" or "val" part).
CIFAR10_SPLITS = {
    "cifar10_train": ("train", "all"),
    "cifar10_test": ("test", "all"),
    "cifar10_train45k": ("train", "train"),
    "cifar10_val5k": ("train", "val"),
}


def split_train_val(records, part, val_size=CIFAR10_VAL_SIZE):
    """`part` of `records`: "all", "train" (all but the last `val_size`) or "val" (those)."""
    if part == "all":
        return records
    if len(records) <= val_size:
        raise ValueError(f"{len(records)} images cannot give a {val_size}-image validation set")
    return records[:-val_size] if part == "train" else records[-val_size:]


def load_cifar10(root, split):
    """Records of the CIFAR-10 dataset `split` (a key of CIFAR10_SPLITS); image_id is the
    image's index in its batch files, so the 45k/5k parts keep their full-set ids."""
    files, part = CIFAR10_SPLITS[split]
    names = [f"data_batch_{i}" for i in range(1, 6)] if files == "train" else ["test_batch"]
    return split_train_val(load_cifar_batches(os.path.join(root, CIFAR10_DIRNAME), names), part)


def register_cifar10():
    for name in CIFAR10_SPLITS:  # load_cifar10 takes the directory holding CIFAR10_DIRNAME
        register_dataset(
            name, lambda at, name=name: load_cifar10(os.path.dirname(at["dirname"]), name),
            {"dirname": CIFAR10_DIRNAME}, evaluator_type=EVALUATOR_TYPE,
            thing_classes=list(CIFAR10_CLASSES))


def register_imagenet():
    for split in ("train", "val"):
        register_image_folder(f"imagenet_{split}", os.path.join("imagenet", split))


MEAN_OPTIONS = ("channel", "pixel")


def mean_image(dataset_names):
    """(3, H, W) float32 RGB per-pixel mean of the images of the datasets `dataset_names`,
    which must be held in memory (the CIFAR format) and be of one size."""
    total, count = None, 0
    for name in dataset_names:
        for record in DatasetCatalog.get(name):
            if "image" not in record:
                raise ValueError(
                    f"INPUT.CLS.MEAN='pixel' needs training images held in memory (CIFAR "
                    f"format); {name} reads {record['file_name']}: use 'channel'"
                )
            image = np.asarray(record["image"], dtype=np.float64)
            if total is not None and image.shape != total.shape:
                raise ValueError(
                    f"INPUT.CLS.MEAN='pixel' needs training images of one size; {name} has "
                    f"{image.shape[:2]} and {total.shape[:2]}: use 'channel'"
                )
            total = image if total is None else total + image
            count += 1
    if not count:
        raise ValueError(f"INPUT.CLS.MEAN='pixel': DATASETS.TRAIN {dataset_names} has no images")
    return torch.as_tensor((total / count).transpose(2, 0, 1), dtype=torch.float32)


class ClassificationMapper:
    """Reads a record's image and returns {"image": (C, H, W) float32 tensor in INPUT.FORMAT on
    the 0..255 scale, "label", "image_id", "file_name"}; the model subtracts MODEL.PIXEL_MEAN.

    With INPUT.CLS.MEAN "pixel" the mapper first subtracts the rest of the per-pixel mean (the
    training set's mean image minus MODEL.PIXEL_MEAN), so that with the model's subtraction the
    image loses its per-pixel mean. Training then takes INPUT.CLS.PAD pixels of padding of
    value MODEL.PIXEL_MEAN (zero once normalized), the shorter side sampled from
    INPUT.CLS.SHORT_SIDE_RANGE (empty: kept; `views.resize_shorter_side`, the test filter), a
    random INPUT.CLS.CROP square, a horizontal flip (INPUT.RANDOM_FLIP), PCA colour noise
    (INPUT.CLS.LIGHTING_STD, unclipped). Test: the image itself (the model takes its views,
    MODEL.CLASSIFIER.TEST_MODE)."""

    def __init__(self, cfg, is_train):
        c = cfg.INPUT.CLS
        if c.MEAN not in MEAN_OPTIONS:
            raise ValueError(f"INPUT.CLS.MEAN={c.MEAN!r}; use one of {MEAN_OPTIONS}")
        self.is_train = is_train
        self.input_format = cfg.INPUT.FORMAT
        rgb_mean = list(cfg.MODEL.PIXEL_MEAN)[::-1 if cfg.INPUT.FORMAT == "BGR" else 1]
        self.channel_mean = torch.tensor(rgb_mean, dtype=torch.float32).view(3, 1, 1)
        self.mean_rest = (mean_image(cfg.DATASETS.TRAIN) - self.channel_mean
                          if c.MEAN == "pixel" else None)
        self.pad, self.crop = c.PAD, c.CROP
        self.short_side_range = tuple(c.SHORT_SIDE_RANGE)
        self.flip = cfg.INPUT.RANDOM_FLIP == "horizontal"
        self.lighting = (T.RandomLighting(c.LIGHTING_STD * _LIGHTING_SCALE)
                         if c.LIGHTING_STD > 0 else None)

    def __call__(self, record):
        if "image" in record:
            image = np.asarray(record["image"])
        else:
            image = utils.read_image(record["file_name"], format="RGB")
        image = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        if self.mean_rest is not None:
            if image.shape != self.mean_rest.shape:
                raise ValueError(
                    f"INPUT.CLS.MEAN='pixel': {record['file_name']} is "
                    f"{tuple(image.shape[1:])}, the training mean image "
                    f"{tuple(self.mean_rest.shape[1:])}"
                )
            image = image - self.mean_rest
        if self.is_train:
            image = self.augment(image)
        if self.input_format == "BGR":
            image = image.flip(0)
        return {"image": image.contiguous(), "label": record["label"],
                "image_id": record["image_id"], "file_name": record["file_name"]}

    def augment(self, image):
        """The training transformations of an RGB (3, H, W) float tensor."""
        if self.pad:
            image = TF.pad(image - self.channel_mean, self.pad) + self.channel_mean
        if self.short_side_range:
            low, high = self.short_side_range
            image = resize_shorter_side(image, int(np.random.randint(low, high + 1)))
        top, left, height, width = RandomCrop.get_params(image, (self.crop, self.crop))
        image = TF.crop(image, top, left, height, width)
        if self.flip and np.random.rand() < 0.5:
            image = TF.hflip(image)
        if self.lighting is not None:
            channels_last = image.permute(1, 2, 0).numpy()
            shifted = self.lighting.get_transform(channels_last).apply_image(channels_last)
            image = torch.as_tensor(shifted, dtype=torch.float32).permute(2, 0, 1)
        return image


register_imagenet()
register_cifar10()
