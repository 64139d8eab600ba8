"""Datasets, the synthetic dataset generator, and evaluator choice for the reproduction.

Importing this package registers every dataset name the project uses (see `datasets.py`) under
`$DETECTRON2_DATASETS`; `register_all(root)` re-points them at another root.

`ensure_synthetic` and the rest of `synthetic.py` are imported on first use, so that
`python -m resnet_backbone.data.synthetic` runs the module once, as __main__.
"""
from .datasets import (
    VOC_07_12,
    VOC_07PP_12,
    VOC_CLASS_NAMES,
    VOC_COMBOS,
    load_voc_split,
    register_all,
    register_paper_datasets,
    register_synthetic,
    register_voc_combos,
)
from .evaluation import (
    VOC07Evaluator,
    VOC2012SubmissionWriter,
    build_evaluator,
    read_voc_submission,
)
from .layout import (
    PAPER_SPLITS,
    SHAPE_CLASSES,
    SYNTHETIC_COCO_SPLITS,
    SYNTHETIC_VOC_SPLITS,
    datasets_root,
    synthetic_root,
)

_LAZY = {"ensure_synthetic", "render_sample", "SyntheticParams"}

__all__ = [
    "VOC_07_12",
    "VOC_07PP_12",
    "VOC_CLASS_NAMES",
    "VOC_COMBOS",
    "PAPER_SPLITS",
    "SHAPE_CLASSES",
    "SYNTHETIC_COCO_SPLITS",
    "SYNTHETIC_VOC_SPLITS",
    "VOC07Evaluator",
    "VOC2012SubmissionWriter",
    "build_evaluator",
    "datasets_root",
    "load_voc_split",
    "read_voc_submission",
    "register_all",
    "register_paper_datasets",
    "register_synthetic",
    "register_voc_combos",
    "synthetic_root",
    *sorted(_LAZY),
]


def __getattr__(name):
    if name in _LAZY:
        from . import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_all()
