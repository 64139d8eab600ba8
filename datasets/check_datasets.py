#!/usr/bin/env python
"""Check a dataset tree for the reproduction and say exactly what is missing or malformed.

    python datasets/check_datasets.py                 # every part, under $DETECTRON2_DATASETS
    python datasets/check_datasets.py voc2007 voc2012 --root /data/d2
    python datasets/check_datasets.py --list          # the parts and the dataset names they serve
    python datasets/check_datasets.py --config-file my_data.yaml [KEY VALUE ...]
                       # the DATASETS.TRAIN / DATASETS.TEST of a config, your DATASETS.USER too

Every split runs the same checks as the start-up check of a training run
(resnet_backbone.data.validation). Exit status: 0 when every checked part is usable, 1 when any
has a problem, 2 on bad arguments. A split whose size differs from the official release is a
warning, not a problem. The synthetic part is generated when it is missing.
"""
import argparse
import os
import sys
from contextlib import contextmanager

try:
    import resnet_backbone  # noqa: F401
except ImportError:  # run from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from resnet_backbone.data import (  # noqa: E402
    PAPER_SPLITS,
    SYNTHETIC_COCO_SPLITS,
    SYNTHETIC_VOC_SPLITS,
    DatasetError,
    datasets_root,
    validate_dataset,
)
from resnet_backbone.runs import load_model_run  # noqa: E402

# Parts of the tree (what one archive, or one set of archives, provides), the splits each part
# serves, and the number of images each split has in the official release.
PARTS = {
    "voc2007": {"voc_2007_trainval": 5011, "voc_2007_test": 4952},
    "voc2012": {"voc_2012_trainval": 11540},
    "voc2012_test": {"voc_2012_test": 10991},
    "coco2014": {"coco_2014_train": 82783, "coco_2014_val": 40504},
    "coco2014_minival": {"coco_2014_minival": 5000, "coco_2014_valminusminival": 35504},
    "coco2017": {"coco_2017_train": 118287, "coco_2017_val": 5000},
    "synthetic": dict.fromkeys([*SYNTHETIC_COCO_SPLITS, *SYNTHETIC_VOC_SPLITS]),  # generated
}


def check_part(part):
    """(notes, problems, warnings) of one part of the registered tree."""
    splits = {name: getattr(PAPER_SPLITS.get(name), "annotated", True) for name in PARTS[part]}
    return check_splits(splits, splits, PARTS[part])


def check_config(config_file, opts):
    """(notes, problems, warnings) of the training and test sets of a config, as its start-up
    check sees them (DATASETS.USER registered from the config)."""
    run = load_model_run(config_file, opts, trained=False)
    training = dict.fromkeys(run.train_datasets, True)
    evaluation = dict.fromkeys(run.test_datasets, True)
    return check_splits(training, evaluation, {})


def check_splits(training, evaluation, official_sizes):
    """Validate every split named in `training` or `evaluation` (name -> whether it is checked
    for that use); sizes differing from `official_sizes` are warnings."""
    notes, problems, warnings = [], [], []
    for name in dict.fromkeys([*training, *evaluation]):
        expected = official_sizes.get(name)
        try:
            summary = validate_dataset(name, training=training.get(name, False),
                                       evaluation=evaluation.get(name, False))
        except DatasetError as e:
            problems.append(str(e).replace("\n", "\n         "))
            continue
        notes.append(f"{name}: {summary['images']} images")
        if expected and summary["images"] != expected:
            warnings.append(f"{name}: {summary['images']} images, the official release has "
                            f"{expected}")
    return notes, problems, warnings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", metavar="PART",
                        help=f"parts to check (default: all): {', '.join(PARTS)}")
    parser.add_argument("--root", default=None,
                        help="the datasets root (default: $DETECTRON2_DATASETS, else ./datasets)")
    parser.add_argument("--list", action="store_true", help="list the parts and exit")
    parser.add_argument("--config-file", metavar="CONFIG",
                        help="check the datasets of this config (a shipped name, a .yaml or .py "
                             "file, or a training run's OUTPUT_DIR) instead of parts, followed "
                             "by its overrides (KEY VALUE, or key=value for a LazyConfig)")
    args = parser.parse_args(argv)
    with datasets_root_set(args.root):
        return check(args)


@contextmanager
def datasets_root_set(root):
    """$DETECTRON2_DATASETS is `root` (unless None) inside, and as it was after: the datasets
    are loaded from the root the variable names at that time."""
    before = os.environ.get("DETECTRON2_DATASETS")
    if root is not None:
        os.environ["DETECTRON2_DATASETS"] = root
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DETECTRON2_DATASETS", None)
        else:
            os.environ["DETECTRON2_DATASETS"] = before


def check(args):
    """What `main` does with its parsed arguments; the exit status."""
    if args.config_file:  # the positional arguments are KEY VALUE overrides then
        return report({args.config_file: check_config(args.config_file, args.parts)})
    if args.list:
        for part in PARTS:
            print(f"{part:18s} {', '.join(PARTS[part])}")
        return 0
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        print(f"unknown part(s) {unknown}; choose from {list(PARTS)}", file=sys.stderr)
        return 2
    print(f"Checking {os.path.abspath(datasets_root())}")
    return report({part: check_part(part) for part in args.parts or list(PARTS)})


def report(checked):
    """Print {what: (notes, problems, warnings)}; the exit status."""
    failed = []
    for part, (notes, problems, warnings) in checked.items():
        status = "FAIL" if problems else "ok"
        print(f"[{status:4s}] {part}" + (f": {'; '.join(notes)}" if notes else ""))
        for line in problems:
            print(f"       problem: {line}")
        for line in warnings:
            print(f"       warning: {line}")
        if problems:
            failed.append(part)
    if failed:
        print(f"{len(failed)} part(s) with problems: {', '.join(failed)} (see datasets/README.md)")
        return 1
    print("all checked parts are usable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
