"""Checks that stop a run which cannot work before anything is built or written to OUTPUT_DIR:
the run settings (batch vs processes, schedule, MODEL.WEIGHTS against the network the config
builds), the detector's RoI head against its backbone (on a skeleton built on the meta device),
the datasets, their classes and their evaluators. `tools/train_net.py` and
`tools/pretrain_net.py` run them through their trainer's `check_startup`, once in the parent
when several processes are spawned."""
import os
import tempfile

import torch
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.solver import build_lr_scheduler

from ..data.custom import check_user_datasets
from ..data.validation import validate_datasets
from ..modeling.description import YACS
from ..modeling.fast_path import read_fast_path_config
from ..modeling.roi_heads import check_head_fits
from ..weights.checkpoint import (
    check_weights_fit,
    check_weights_match_config,
    pixel_format_of_config,
)


def has_resumable_checkpoint(cfg):
    return os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))


def _keys_set_to(node, value, prefix=""):
    """Dotted names of the keys under `node` whose value is `value`."""
    found = []
    for key, item in node.items():
        if isinstance(item, CfgNode):
            found += _keys_set_to(item, value, f"{prefix}{key}.")
        elif item == value:
            found.append(prefix + key)
    return found


def check_device_settings(cfg, *, world_size):
    """Settings that need a GPU stop a run whose processes would run without one, naming the
    key: MODEL.DEVICE cuda without CUDA, SyncBN in several CPU processes (DistributedDataParallel
    refuses SyncBatchNorm on CPU modules), float16 AMP and the other MODEL.FAST_PATH
    combinations `fast_path.read_fast_path_config` refuses."""
    device = torch.device(cfg.MODEL.DEVICE)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"MODEL.DEVICE={cfg.MODEL.DEVICE!r} but this machine has no CUDA GPU "
                         "torch can use; set MODEL.DEVICE cpu")
    sync_bn = _keys_set_to(cfg.MODEL, "SyncBN", "MODEL.")
    if sync_bn and device.type != "cuda" and world_size > 1:
        raise ValueError(
            f"{', '.join(f'{key}=SyncBN' for key in sync_bn)}: SyncBatchNorm works on CUDA "
            f"only, and the {world_size} processes of this run use MODEL.DEVICE="
            f"{cfg.MODEL.DEVICE!r}; set {' '.join(f'{key} BN' for key in sync_bn)} (batch "
            "statistics of each process's own images) or run on GPUs"
        )
    read_fast_path_config(cfg)


def model_skeleton(cfg):
    """The model `cfg` builds (its MODEL.META_ARCHITECTURE), on the meta device: every module,
    no tensor value, no device placement; for checks of what a run will build
    (`roi_heads.check_head_fits`, `checkpoint.check_weights_fit`). Its pixel buffers hold no
    values: take the pixel format from the config (`checkpoint.pixel_format_of_config`)."""
    with torch.device("meta"):
        return META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)


def check_evaluators(cfg, trainer_class):
    """Build (and drop) the evaluator of every test set now, so that a dataset nobody can
    evaluate stops the run before training rather than after it."""
    with tempfile.TemporaryDirectory() as scratch:
        for name in cfg.DATASETS.TEST:
            trainer_class.build_evaluator(cfg, name, os.path.join(scratch, name))


def check_norm_layers(network, cfg, *, world_size):
    """SyncBatchNorm layers in the network a run builds (whatever setting put them there) stop
    a run of several processes without CUDA (DistributedDataParallel refuses them on CPU)."""
    sync_bn = [name for name, module in network.named_modules()
               if isinstance(module, torch.nn.SyncBatchNorm)]
    if sync_bn and torch.device(cfg.MODEL.DEVICE).type != "cuda" and world_size > 1:
        raise ValueError(
            f"the network has SyncBatchNorm layers ({', '.join(sync_bn[:3])}"
            f"{', ...' if len(sync_bn) > 3 else ''}: norm SyncBN), which work on CUDA only, and "
            f"the {world_size} processes of this run use device {cfg.MODEL.DEVICE!r}; use norm "
            "BN (batch statistics of each process's own images) or run on GPUs")


def check_run_settings(cfg, *, world_size, resume=False, eval_only=False, network=None,
                       naming=YACS):
    """What any run checks before it starts: batch size vs processes, the schedule, and
    MODEL.WEIGHTS (existence, architecture, pixel format) against `network` (the skeleton of
    what the run builds, its settings named by `naming`), else against what `cfg` builds."""
    check_device_settings(cfg, world_size=world_size)
    if cfg.RESNET_BACKBONE_SOLVER.WRITE_PERIOD < 1:
        raise ValueError(f"RESNET_BACKBONE_SOLVER.WRITE_PERIOD="
                         f"{cfg.RESNET_BACKBONE_SOLVER.WRITE_PERIOD}: use 1 or more iterations")
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
        # missing, unreadable, or not fitting
        if network is None:
            check_weights_match_config(cfg, weights)
        else:
            check_weights_fit(network, pixel_format_of_config(cfg), weights, naming)


def check_detection_run(cfg, trainer_class, *, world_size, resume=False, eval_only=False,
                        validate_data=True):
    """All start-up checks of a detection run (`engine.trainer.Trainer.check_startup`)."""
    if cfg.MODEL.META_ARCHITECTURE == "ImageClassifier":
        raise ValueError(
            "MODEL.META_ARCHITECTURE=ImageClassifier: this is a classification config; train "
            "and evaluate it with tools/pretrain_net.py (tools/train_net.py trains detectors)"
        )
    # the model as the trainer builds it (the builders check the config on the way)
    network = trainer_class.model_skeleton(cfg)
    check_run_settings(cfg, world_size=world_size, resume=resume, eval_only=eval_only,
                       network=network, naming=trainer_class.naming)
    check_norm_layers(network, cfg, world_size=world_size)
    check_head_fits(network, trainer_class.naming)
    check_user_datasets(cfg)
    if validate_data:
        validate_datasets(cfg, cfg.DATASETS.TEST if eval_only else None)
    check_evaluators(cfg, trainer_class)
