"""LazyConfig runs (tools/lazyconfig_train_net.py) in Detectron2's schema, on this package's engine.

A lazy config holds what Detectron2's configs/common define: `model`, `dataloader.train/test`,
`dataloader.evaluator`, `optimizer` (its `params.model` set here), `lr_multiplier` and `train`.
`lazy_trainer` is `engine.Trainer` (start-up checks, resumable data stream, atomic checkpoints,
stop hook, final_metrics.json) building every one of them by `instantiate` of its node. The
engine's hooks and checks read a yacs config: `engine_config` derives it from the lazy config
(`train.*` by TRAIN_KEYS, batch/workers/datasets from the dataloaders, pixel format from
`model`); any `train` key it does not know is an error, not a silently ignored setting.
`load` applies `key=value` overrides only to keys that exist; `save_lazy_config` writes a config
Detectron2's LazyConfig.load and `yaml.safe_load` both read back.
"""
import difflib
import inspect
import os
import pydoc
from contextlib import contextmanager

import torch
import yaml
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.data import build_detection_train_loader
from detectron2.engine.hooks import PeriodicCheckpointer
from detectron2.solver import LRMultiplier
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from .. import config_files
from ..config import add_resnet_backbone_config
from ..data.validation import drop_bad_boxes
from ..files import atomic_write
from ..modeling.description import lazy_naming
from ..modeling.fast_path import apply_fast_path
from .preemption import ShieldedLoader
from .stream import build_resumable_train_loader
from .trainer import Trainer

# train.<key> -> the engine key it sets: Detectron2's configs/common/train.py keys, then this
# project's own (configs/common/train.py).
TRAIN_KEYS = {
    "output_dir": "OUTPUT_DIR",
    "init_checkpoint": "MODEL.WEIGHTS",
    "max_iter": "SOLVER.MAX_ITER",
    "amp.enabled": "SOLVER.AMP.ENABLED",
    "checkpointer.period": "SOLVER.CHECKPOINT_PERIOD",
    "eval_period": "TEST.EVAL_PERIOD",
    "log_period": "RESNET_BACKBONE_SOLVER.WRITE_PERIOD",
    "device": "MODEL.DEVICE",
    "seed": "SEED",
    "cudnn_benchmark": "CUDNN_BENCHMARK",
    "loss_spike_factor": "RESNET_BACKBONE_SOLVER.LOSS_SPIKE_FACTOR",
    "loss_window": "RESNET_BACKBONE_SOLVER.LOSS_WINDOW",
    "weight_norm_growth": "RESNET_BACKBONE_SOLVER.WEIGHT_NORM_GROWTH",
    "check_period": "RESNET_BACKBONE_SOLVER.CHECK_PERIOD",
    "resume_with_config_lr": "RESNET_BACKBONE_SOLVER.RESUME_WITH_CONFIG_LR",
    "fast_path.fold_frozen_bn": "MODEL.FAST_PATH.FOLD_FROZEN_BN",
    "fast_path.channels_last": "MODEL.FAST_PATH.CHANNELS_LAST",
    "fast_path.autocast": "MODEL.FAST_PATH.AUTOCAST",
    "fast_path.compile": "MODEL.FAST_PATH.COMPILE",
}
# The train keys every config in Detectron2's schema has (the others keep the engine's default).
REQUIRED_TRAIN_KEYS = ("output_dir", "init_checkpoint", "max_iter", "amp.enabled",
                       "checkpointer.period", "eval_period", "log_period", "device")
# train.ddp as the engine wraps the model (engine.Trainer: broadcast_buffers=False): the only
# values it can honour.
ENGINE_DDP = {"broadcast_buffers": False, "find_unused_parameters": False,
              "fp16_compression": False}
# Honoured by the trainer itself (the PeriodicCheckpointer hook), not through the yacs config.
TRAINER_TRAIN_KEYS = ("checkpointer.max_to_keep",)
# The arguments of build_detection_train_loader the resumable stream takes over.
TRAIN_LOADER_KEYS = {"_target_", "dataset", "mapper", "sampler", "total_batch_size",
                     "aspect_ratio_grouping", "num_workers", "collate_fn"}

# ------------------------------------------------------------------------------------------
# Loading with strict overrides, saving
# ------------------------------------------------------------------------------------------
def dotted_keys(node, prefix=""):
    """Every key of `node` (a DictConfig), dotted, mappings walked into (lists are values)."""
    keys = []
    for key in node.keys():
        name = f"{prefix}{key}"
        keys.append(name)
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_interpolation():
            keys += dotted_keys(child, f"{name}.")
    return keys


def _has_key(config, key):
    node = config
    for part in key.split("."):
        if isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, DictConfig) and part in node:
            node = node[part]
        else:
            return False
    return True


def unknown_key_error(key, known, where):
    """A KeyError naming `key` and the nearest of `known` (difflib)."""
    nearest = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    last = key.rpartition(".")[2]
    nearest += [k for k in known if k.rpartition(".")[2] in
                difflib.get_close_matches(last, [k.rpartition(".")[2]], cutoff=0.8)
                and k not in nearest][:3 - len(nearest)]
    hint = f"; nearest: {', '.join(nearest)}" if nearest else ""
    return KeyError(f"{key} is not a key of {where}{hint}")


def load(config_file, overrides=(), *, trained=False):
    """The lazy config of `config_file` (any form `config_files.locate` takes: a shipped `.py`
    name, a `.py` file (code, run as Detectron2's LazyConfig.load runs it), a saved `.yaml` one
    (read as data), a lazy run's folder) with Detectron2's `key=value` overrides applied; an
    override of a key the config does not have is a KeyError naming the nearest ones (Detectron2
    would create it silently). A run folder's output dir is the folder, and with `trained` its
    checkpoint is `train.init_checkpoint`."""
    source = config_files.locate(config_file)
    if not source.lazy:
        raise config_files.ConfigFileError(
            f"--config-file {config_file} is a YAML config of Detectron2's keys "
            f"({source.path}), not a LazyConfig")
    config = config_files.read_lazy_config(source.path)
    overrides = [*config_files.run_overrides(source, trained=trained, lazy=True), *overrides]
    for override in OverridesParser.create().parse_overrides(overrides):
        if not _has_key(config, override.key_or_group):
            raise unknown_key_error(override.key_or_group, dotted_keys(config),
                                    f"the lazy config {config_file} (an override)")
    return LazyConfig.apply_overrides(config, overrides)


def _public_name(obj):
    """"module.qualname" of a callable by its shortest importable module path, so that the
    package's targets are saved as resnet_backbone.make_resnet etc. (its stable names)."""
    parts = obj.__module__.split(".")
    for k in range(1, len(parts) + 1):
        name = ".".join(parts[:k] + [obj.__qualname__])
        if pydoc.locate(name) is obj:
            return name
    raise ValueError(f"{obj!r} cannot be saved in a lazy config: it is not importable by name")


def _as_data(value, key=""):
    """`value` (a container from OmegaConf.to_container) with callables as names: a `_target_`
    as its "module.qualname" string (as Detectron2 saves it), any other callable as a LazyCall of
    pydoc.locate that instantiates to it."""
    if isinstance(value, dict):
        return {k: (_public_name(v) if k == "_target_" and callable(v) else
                    _as_data(v, f"{key}.{k}" if key else str(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_data(v, f"{key}.{i}") for i, v in enumerate(value)]
    if callable(value):
        return {"_target_": "pydoc.locate", "path": _public_name(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"{key}: a {type(value).__name__} cannot be saved in a lazy config")


def save_lazy_config(lazy, path):
    """`lazy` as YAML (interpolations kept as written, callables by name), written atomically;
    it loads again with `load` or Detectron2's LazyConfig.load."""
    text = yaml.safe_dump(_as_data(OmegaConf.to_container(lazy, resolve=False)),
                          sort_keys=False)
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


# ------------------------------------------------------------------------------------------
# The engine's yacs config
# ------------------------------------------------------------------------------------------
def _select(lazy, key, default=KeyError):
    value = OmegaConf.select(lazy, key, default=default)
    if value is KeyError:
        raise KeyError(f"the lazy config has no {key} (Detectron2's LazyConfig schema)")
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def _target(node, key):
    target = node._target_ if "_target_" in node else None
    if isinstance(target, str):
        target = pydoc.locate(target)
    if target is None:
        raise ValueError(f"{key} is not a LazyCall (it has no importable _target_)")
    return target


def _argument(call, name):
    """What the LazyCall `call` passes its target as `name`: its own value, else the target's
    default."""
    if name in call:
        return call[name]
    return inspect.signature(_target(call, "")).parameters[name].default


def _train_keys(lazy):
    """The engine keys of `lazy.train`; a key the engine cannot honour is an error."""
    train = lazy.train
    known = [*TRAIN_KEYS, *TRAINER_TRAIN_KEYS, *(f"ddp.{k}" for k in ENGINE_DDP)]
    for key in REQUIRED_TRAIN_KEYS:
        _select(lazy, f"train.{key}")
    values = {}
    for key in dotted_keys(train):
        value = _select(lazy, f"train.{key}")
        if isinstance(value, dict):
            continue
        if key in TRAIN_KEYS:
            values[TRAIN_KEYS[key]] = value
        elif key.startswith("ddp.") and key[4:] in ENGINE_DDP:
            if value != ENGINE_DDP[key[4:]]:
                raise ValueError(f"train.{key}={value}: the engine wraps the model in "
                                 f"DistributedDataParallel with {key[4:]}={ENGINE_DDP[key[4:]]}")
        elif key not in TRAINER_TRAIN_KEYS:
            raise unknown_key_error(f"train.{key}", [f"train.{k}" for k in known],
                                    "the train settings the project's engine runs")
    return values


def _dataset_names(lazy, key):
    names = _select(lazy, f"{key}.dataset.names")
    return [names] if isinstance(names, str) else list(names)


def _loader_keys(lazy):
    """Batch, workers and datasets of the dataloaders, as the engine's checks read them."""
    train = lazy.dataloader.train
    if _target(train, "dataloader.train") is not build_detection_train_loader:
        raise ValueError("dataloader.train: the engine's resumable stream replaces "
                         "detectron2.data.build_detection_train_loader, not "
                         f"{_target(train, 'dataloader.train')}")
    extra = sorted(set(train.keys()) - TRAIN_LOADER_KEYS)
    if extra:
        raise KeyError(f"dataloader.train.{extra[0]}: not an argument of "
                       "build_detection_train_loader")
    for key in ("sampler", "collate_fn"):
        if _select(lazy, f"dataloader.train.{key}", None) is not None:
            raise ValueError(f"dataloader.train.{key}: the engine's resumable stream has its "
                             "own (seeded by train.seed, resumable); leave it unset")
    values = {
        "SOLVER.IMS_PER_BATCH": _select(lazy, "dataloader.train.total_batch_size"),
        "DATALOADER.NUM_WORKERS": _argument(train, "num_workers"),
        "DATALOADER.ASPECT_RATIO_GROUPING": _argument(train, "aspect_ratio_grouping"),
        "DATASETS.TRAIN": _dataset_names(lazy, "dataloader.train"),
        "DATASETS.TEST": [],
    }
    if "test" in lazy.dataloader:
        if "evaluator" not in lazy.dataloader:
            raise KeyError("the lazy config has dataloader.test but no dataloader.evaluator")
        names = _dataset_names(lazy, "dataloader.test")
        if len(names) != 1:
            raise ValueError(f"dataloader.test.dataset.names={names}: one test set (its "
                             "evaluator takes one dataset_name)")
        values["DATASETS.TEST"] = names
    return values


def _pixel_keys(lazy):
    """The network's pixel format; the mappers must feed it (model.input_format)."""
    input_format = _select(lazy, "model.input_format")
    for key in ("dataloader.train.mapper.image_format", "dataloader.test.mapper.image_format"):
        image_format = _select(lazy, key, input_format)
        if image_format != input_format:
            raise ValueError(f"{key}={image_format} but model.input_format={input_format}: "
                             "the network would see the wrong channel order")
    return {"MODEL.PIXEL_MEAN": _select(lazy, "model.pixel_mean"),
            "MODEL.PIXEL_STD": _select(lazy, "model.pixel_std"), "INPUT.FORMAT": input_format}


def engine_config(lazy):
    """The yacs config the engine's hooks and checks read, derived from the lazy config (the
    lazy nodes themselves build the run: `lazy_trainer`)."""
    cfg = add_resnet_backbone_config(get_cfg())
    values = {**_train_keys(lazy), **_loader_keys(lazy), **_pixel_keys(lazy),
              # the schedule is lr_multiplier's (checked at start-up by LazyTrainer)
              "SOLVER.STEPS": []}
    num_classes = _select(lazy, "model.roi_heads.num_classes", None)
    if num_classes is not None:
        values["MODEL.ROI_HEADS.NUM_CLASSES"] = num_classes
    for key, value in values.items():
        cfg.merge_from_list([key, tuple(value) if isinstance(value, list) else value])
    cfg.freeze()
    return cfg


# ------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------
@contextmanager
def _assigned(node, key, value):
    """`node[key] = value` for the block, then the node as it was (the lazy config stays data:
    saved, and instantiated again, unchanged)."""
    had, previous = key in node, node._get_node(key) if key in node else None
    node[key] = value
    try:
        yield
    finally:
        if had:
            node[key] = previous
        else:
            del node[key]


def lazy_trainer(lazy):
    """`engine.Trainer` whose model, optimizer, LR schedule, train and test loaders and evaluator
    are the lazy config's nodes, instantiated (a class per config, created in every process from
    the config file)."""

    class LazyTrainer(Trainer):
        naming = lazy_naming()

        @classmethod
        def model_skeleton(cls, cfg):
            with torch.device("meta"):
                return instantiate(lazy.model)

        @classmethod
        def check_startup(cls, cfg, **kwargs):
            super().check_startup(cfg, **kwargs)
            if not kwargs.get("eval_only"):
                instantiate(lazy.lr_multiplier)  # a bad schedule stops here

        @classmethod
        def build_model(cls, cfg):
            model = instantiate(lazy.model)
            model.to(torch.device(cfg.MODEL.DEVICE))
            return apply_fast_path(cfg, model)

        @classmethod
        def build_optimizer(cls, cfg, model):
            with _assigned(lazy.optimizer.params, "model", model):
                return instantiate(lazy.optimizer)

        @classmethod
        def build_lr_scheduler(cls, cfg, optimizer):
            return LRMultiplier(optimizer, multiplier=instantiate(lazy.lr_multiplier),
                                max_iter=cfg.SOLVER.MAX_ITER)

        @classmethod
        def build_train_loader(cls, cfg):
            """The resumable stream over the instantiated dataset and mapper (batch, workers
            and seed from `cfg`, derived from the same lazy config)."""
            dicts = drop_bad_boxes(instantiate(lazy.dataloader.train.dataset), "training set")
            return build_resumable_train_loader(
                cfg, mapper=instantiate(lazy.dataloader.train.mapper), dataset_dicts=dicts)

        @classmethod
        def build_test_loader(cls, cfg, dataset_name):
            return ShieldedLoader(instantiate(lazy.dataloader.test))

        @classmethod
        def build_evaluator(cls, cfg, dataset_name, output_folder=None):
            """dataloader.evaluator; `output_folder` (the start-up check's scratch folder)
            replaces its output folder argument, which defaults to the engine's
            OUTPUT_DIR/inference/<dataset> where the config leaves it unset."""
            evaluator = lazy.dataloader.evaluator
            parameters = inspect.signature(_target(evaluator, "dataloader.evaluator")).parameters
            folder = next((name for name in ("output_folder", "output_dir") if name in parameters),
                          None)
            if output_folder is None and folder not in evaluator:
                output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
            if output_folder is None or folder is None:
                return instantiate(evaluator)
            with _assigned(evaluator, folder, output_folder):
                return instantiate(evaluator)

        def build_hooks(self):
            hooks = super().build_hooks()
            max_to_keep = OmegaConf.select(lazy, "train.checkpointer.max_to_keep")
            for hook in hooks:
                if isinstance(hook, PeriodicCheckpointer):
                    hook.max_to_keep = max_to_keep
            return hooks

    return LazyTrainer
