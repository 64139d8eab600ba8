"""Datasets, the synthetic dataset generator, evaluator choice and dataset checks.

Importing this package registers every dataset name the project uses, once (see `datasets.py`);
the root, `$DETECTRON2_DATASETS`, is read when a split is loaded (`dataset_location(name)` gives
a split's files at that moment).
"""
from .datasets import (
    VOC_CLASS_NAMES,
    VOC_COMBOS,
    dataset_location,
    load_voc_split,
    prepare_dataset,
    register_coco,
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
