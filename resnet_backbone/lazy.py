"""LazyConfig runs (tools/lazyconfig_train_net.py) on this package's engine.

A lazy config holds `model` (a LazyCall tree, instantiated as the network) and the run as plain
fields: `dataloader.train/test`, `schedule` (the YAML configs' SOLVER rows) and `train`. The
engine (`engine.Trainer`: resumable loader, evaluator by dataset, atomic checkpoints carrying
the config's metadata, stop hook) and the start-up checks (`startup.check_detection_run`) read a
yacs config; `engine_config` writes the lazy config's run fields, pixel format and backbone
identity into one, so both run unchanged and only `build_model` differs (`lazy_trainer`).
"""
import inspect

import torch
import yaml
from detectron2.config import LazyConfig, get_cfg, instantiate
from omegaconf import OmegaConf

from .config import add_resnet_backbone_config
from .data.custom import register_user_datasets
from .engine import Trainer
from .fast_path import apply_fast_path
from .files import atomic_write
from .fpn import make_fpn
from .resnet import make_resnet, stage_out_channels
from .vgg import make_vgg16

# lazy key -> the yacs key the engine and the start-up checks read.
RUN_KEYS = {
    "dataloader.train.datasets": "DATASETS.TRAIN",
    "dataloader.train.min_size": "INPUT.MIN_SIZE_TRAIN",
    "dataloader.train.max_size": "INPUT.MAX_SIZE_TRAIN",
    "dataloader.train.num_workers": "DATALOADER.NUM_WORKERS",
    "dataloader.test.datasets": "DATASETS.TEST",
    "dataloader.test.min_size": "INPUT.MIN_SIZE_TEST",
    "dataloader.test.max_size": "INPUT.MAX_SIZE_TEST",
    "schedule.ims_per_batch": "SOLVER.IMS_PER_BATCH",
    "schedule.base_lr": "SOLVER.BASE_LR",
    "schedule.momentum": "SOLVER.MOMENTUM",
    "schedule.weight_decay": "SOLVER.WEIGHT_DECAY",
    "schedule.warmup_iters": "SOLVER.WARMUP_ITERS",
    "schedule.steps": "SOLVER.STEPS",
    "schedule.max_iter": "SOLVER.MAX_ITER",
    "schedule.checkpoint_period": "SOLVER.CHECKPOINT_PERIOD",
    "train.output_dir": "OUTPUT_DIR",
    "train.init_checkpoint": "MODEL.WEIGHTS",
    "train.device": "MODEL.DEVICE",
    "train.eval_period": "TEST.EVAL_PERIOD",
    "train.seed": "SEED",
    "model.pixel_mean": "MODEL.PIXEL_MEAN",
    "model.pixel_std": "MODEL.PIXEL_STD",
    "model.input_format": "INPUT.FORMAT",
    "model.roi_heads.num_classes": "MODEL.ROI_HEADS.NUM_CLASSES",
}

# The backbone builder a lazy backbone stands for (written into checkpoint metadata and checked
# against MODEL.WEIGHTS' metadata).
_BACKBONE_NAMES = {
    make_resnet: "build_paper_resnet_backbone",
    make_vgg16: "build_vgg16_backbone",
}


def load(config_file, overrides=()):
    """The lazy config with `key=value` overrides applied (Detectron2's LazyConfig)."""
    return LazyConfig.apply_overrides(LazyConfig.load(config_file), list(overrides))


def _select(lazy, key):
    value = OmegaConf.select(lazy, key, default=KeyError)
    if value is KeyError:
        raise KeyError(f"the lazy config has no {key} (needed for the engine's {RUN_KEYS[key]})")
    return value


def _argument(call, name):
    """What the LazyCall `call` passes its target as `name`: its own value, else the target's
    default (so the engine's keys follow make_resnet / make_vgg16 rather than a copy of them)."""
    if name in call:
        return call[name]
    return inspect.signature(call._target_).parameters[name].default


def _backbone_keys(backbone):
    """MODEL.BACKBONE.NAME and the architecture keys of a lazy `model.backbone` (what the
    start-up checks and the checkpoint metadata read: SyncBN under several CPU processes is
    refused, frozen stages and weights are checked as for the YAML twin)."""
    target, fpn = backbone._target_, False
    if target is make_fpn:
        backbone, fpn = backbone.bottom_up, True
        target = backbone._target_
    if target not in _BACKBONE_NAMES:
        raise ValueError(f"model.backbone: {target} is not one of this package's backbones "
                         "(make_resnet, make_vgg16, or make_fpn over one of them)")
    name = _BACKBONE_NAMES[target]
    keys = {"MODEL.BACKBONE.NAME": name.replace("_backbone", "_fpn_backbone") if fpn else name}
    if target is make_vgg16:
        keys["MODEL.VGG.FREEZE_AT"] = _argument(backbone, "freeze_at")
    if target is make_resnet:
        keys.update({
            "MODEL.BACKBONE.FREEZE_AT": _argument(backbone, "freeze_at"),
            "MODEL.RESNETS.DEPTH": backbone.depth,
            "MODEL.RESNETS.STRIDE_IN_1X1": _argument(backbone, "stride_in_1x1"),
            "MODEL.RESNETS.NORM": _argument(backbone, "norm"),
            "MODEL.RESNETS.RES2_OUT_CHANNELS": stage_out_channels(
                backbone.depth, "res2", _argument(backbone, "res2_out_channels")),
            "MODEL.RESNET_BACKBONE.RESIDUAL": _argument(backbone, "residual"),
            "MODEL.RESNET_BACKBONE.SHORTCUT": _argument(backbone, "shortcut"),
        })
    return keys


def engine_config(lazy):
    """The yacs config the engine runs under, from the lazy config; `train.engine` (a dict of
    yacs KEY: value) sets any other key the engine reads (e.g. RESNET_BACKBONE_SOLVER.*)."""
    cfg = add_resnet_backbone_config(get_cfg())
    values = {yacs: _select(lazy, key) for key, yacs in RUN_KEYS.items()}
    values.update(_backbone_keys(lazy.model.backbone))
    values.update(OmegaConf.select(lazy, "train.engine", default=None) or {})
    for key, value in values.items():
        if OmegaConf.is_config(value):
            value = OmegaConf.to_object(value)
        try:
            cfg.merge_from_list([key, value])
        except (AssertionError, KeyError) as e:
            raise KeyError(f"train.engine: {key} is not a key of the engine's config ({e})") \
                from None
    cfg.freeze()
    register_user_datasets(cfg)
    return cfg


def lazy_trainer(lazy):
    """`engine.Trainer` building `lazy.model` instead of reading MODEL.* (a class per config,
    created in every process from the config file)."""

    class LazyTrainer(Trainer):
        @classmethod
        def build_model(cls, cfg):
            model = instantiate(lazy.model)
            model.to(torch.device(cfg.MODEL.DEVICE))
            return apply_fast_path(cfg, model)

    return LazyTrainer


def _named(value):
    """Callables (LazyCall targets) as "module.qualname" strings, as instantiate locates them."""
    if isinstance(value, dict):
        return {key: _named(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_named(item) for item in value]
    if callable(value):
        return f"{value.__module__}.{value.__qualname__}"
    return value


def save_lazy_config(lazy, path):
    """`lazy` as YAML that LazyConfig.load reads back, interpolations kept as written, written
    atomically. (Detectron2's LazyConfig.save walks the config resolving values, which fails on
    the relative interpolations of configs/common/models.)"""
    text = yaml.safe_dump(_named(OmegaConf.to_container(lazy, resolve=False)), sort_keys=False)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
