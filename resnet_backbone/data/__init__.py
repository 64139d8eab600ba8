"""Datasets, the synthetic dataset generator, evaluator choice and dataset checks.

Importing this package registers every dataset name the project uses (see `datasets.py`) under
`$DETECTRON2_DATASETS`; `register_all(root)` re-points them at another root.
"""
from .datasets import (
    VOC_CLASS_NAMES,
    VOC_COMBOS,
    load_voc_split,
    prepare_dataset,
    register_all,
    register_paper_datasets,
    register_synthetic,
    register_voc,
)
from .evaluation import VOC2012SubmissionWriter, build_evaluator
from .layout import (
    PAPER_SPLITS,
    SHAPE_CLASSES,
    SYNTHETIC_COCO_SPLITS,
    SYNTHETIC_VOC_SPLITS,
    datasets_root,
    synthetic_root,
)
from .shapes import SyntheticParams, render_sample
from .synthetic import ensure_synthetic
from .validation import DatasetError, validate_dataset, validate_datasets

register_all()
