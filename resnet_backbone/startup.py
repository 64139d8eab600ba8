"""Checks that stop a run which cannot work before anything is built or written to OUTPUT_DIR:
the run settings (batch vs processes, schedule, MODEL.WEIGHTS), the datasets, their classes and
their evaluators. `tools/train_net.py` and `tools/pretrain_net.py` run them through their
trainer's `check_startup`, once in the parent when several processes are spawned."""
import os
import tempfile

import torch
from detectron2.solver import build_lr_scheduler

from .checkpoint import check_weights_match_config
from .data.custom import check_user_datasets
from .data.validation import validate_datasets


def has_resumable_checkpoint(cfg):
    return os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))


def check_evaluators(cfg, trainer_class):
    """Build (and drop) the evaluator of every test set now, so that a dataset nobody can
    evaluate stops the run before training rather than after it."""
    with tempfile.TemporaryDirectory() as scratch:
        for name in cfg.DATASETS.TEST:
            trainer_class.build_evaluator(cfg, name, os.path.join(scratch, name))


def check_run_settings(cfg, *, world_size, resume=False, eval_only=False):
    """What any run checks before it starts: batch size vs processes, the schedule, and
    MODEL.WEIGHTS (existence, architecture, pixel format)."""
    if not eval_only and cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is not divisible by the number of "
            f"processes ({world_size}); use a multiple of {world_size}"
        )
    if not eval_only:  # e.g. SOLVER.STEPS past SOLVER.MAX_ITER fails here, not after set-up
        probe = torch.zeros(1, requires_grad=True)
        build_lr_scheduler(cfg, torch.optim.SGD([probe], lr=cfg.SOLVER.BASE_LR))
    weights = cfg.MODEL.WEIGHTS
    if weights and not (resume and has_resumable_checkpoint(cfg)):
        check_weights_match_config(cfg, weights)  # missing, unreadable, or not fitting


def check_detection_run(cfg, trainer_class, *, world_size, resume=False, eval_only=False,
                        validate_data=True):
    """All start-up checks of a detection run (resnet_backbone.engine.Trainer.check_startup)."""
    check_run_settings(cfg, world_size=world_size, resume=resume, eval_only=eval_only)
    check_user_datasets(cfg)
    if validate_data:
        validate_datasets(cfg, cfg.DATASETS.TEST if eval_only else None)
    check_evaluators(cfg, trainer_class)
