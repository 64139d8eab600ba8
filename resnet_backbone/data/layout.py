"""Where each dataset the paper uses lives under `$DETECTRON2_DATASETS` (Detectron2's own
relative paths: `VOC2007/`, not `VOCdevkit/VOC2007/`), read by registration and the checker."""
import os
from typing import Dict, NamedTuple, Tuple

class VOCSplit(NamedTuple):
    dirname: str  # relative to the datasets root; holds Annotations/, ImageSets/, JPEGImages/
    split: str  # ImageSets/Main/<split>.txt
    year: int  # 2007 selects the VOC07 11-point AP in PascalVOCDetectionEvaluator
    annotated: bool  # False for VOC 2012 test: its labels are held by the evaluation server


class COCOSplit(NamedTuple):
    image_root: str  # relative to the datasets root
    json_file: str  # relative to the datasets root


# The splits the paper's experiments train or test on (Tables 7 and 8). All but voc_2012_test are
# also registered by detectron2.data.datasets.builtin at these same relative paths.
PAPER_SPLITS: Dict[str, object] = {
    "voc_2007_trainval": VOCSplit("VOC2007", "trainval", 2007, True),
    "voc_2007_test": VOCSplit("VOC2007", "test", 2007, True),
    "voc_2012_trainval": VOCSplit("VOC2012", "trainval", 2012, True),
    "voc_2012_test": VOCSplit("VOC2012", "test", 2012, False),
    "coco_2014_train": COCOSplit("coco/train2014", "coco/annotations/instances_train2014.json"),
    "coco_2014_val": COCOSplit("coco/val2014", "coco/annotations/instances_val2014.json"),
    "coco_2014_minival": COCOSplit("coco/val2014", "coco/annotations/instances_minival2014.json"),
    "coco_2014_valminusminival": COCOSplit(
        "coco/val2014", "coco/annotations/instances_valminusminival2014.json"
    ),
    "coco_2017_train": COCOSplit("coco/train2017", "coco/annotations/instances_train2017.json"),
    "coco_2017_val": COCOSplit("coco/val2017", "coco/annotations/instances_val2017.json"),
}

# Table 7's training sets, as Detectron2 DATASETS.TRAIN tuples.
VOC_07_12: Tuple[str, ...] = ("voc_2007_trainval", "voc_2012_trainval")  # "07+12"
VOC_07PP_12: Tuple[str, ...] = (  # "07++12"
    "voc_2007_trainval",
    "voc_2007_test",
    "voc_2012_trainval",
)

# ---- the embedded synthetic dataset -------------------------------------------------------------
SHAPE_CLASSES: Tuple[str, ...] = ("circle", "square", "triangle", "cross", "star")
SYNTHETIC_DIRNAME = "synthetic_shapes"  # under the datasets root
SYNTHETIC_VOC_DIRNAME = "VOCshapes"  # the VOC-form tree inside the synthetic root
SYNTHETIC_COCO_SPLITS = {"synthetic_shapes_train": "train", "synthetic_shapes_val": "val"}
SYNTHETIC_VOC_SPLITS = {"synthetic_shapes_voc_train": "train", "synthetic_shapes_voc_val": "val"}


def datasets_root() -> str:
    """`$DETECTRON2_DATASETS`, or `datasets` (relative to the working directory) as Detectron2."""
    return os.getenv("DETECTRON2_DATASETS", "datasets")


def synthetic_root(root: str = None) -> str:
    """The synthetic dataset's directory: `<root or $DETECTRON2_DATASETS>/synthetic_shapes`."""
    return os.path.join(datasets_root() if root is None else root, SYNTHETIC_DIRNAME)
