"""A trained model's config in either dialect, as the tools that use the model read it.

predict, export and analysis take any `--config-file` form (`config_files.locate`): a YAML
config (Detectron2's keys) or a LazyConfig (Detectron2's schema: `model`, `dataloader.test`,
`train`), named, as a file or as a run folder. `load_model_run` gives a `YamlModelRun` or a
`LazyModelRun`; both answer the same questions (the model with its weights, its device, pixel
order, test-time resize, test datasets), so each tool is written once.
"""
import copy
from argparse import Namespace

import detectron2.data.transforms as T
import torch
from detectron2.config import instantiate
from detectron2.data import build_detection_test_loader
from detectron2.modeling import build_model
from omegaconf import OmegaConf

from . import config_files
from .config import add_resnet_backbone_config
from .engine import lazy
from .engine.launch import load_config
from .modeling.description import lazy_naming
from .modeling.fast_path import apply_fast_path
from .weights.checkpoint import (
    ResNetBackboneCheckpointer,
    check_weights_fit,
    check_weights_match_config,
)
from .weights.published import pixel_format_of


class YamlModelRun:
    """A YAML config (frozen CfgNode) of a trained model."""

    lazy = False
    weights_key, device_key, test_datasets_key = "MODEL.WEIGHTS", "MODEL.DEVICE", "DATASETS.TEST"

    def __init__(self, cfg):
        self.config = cfg
        self.weights, self.device = cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE
        self.input_format = cfg.INPUT.FORMAT
        self.test_datasets = list(cfg.DATASETS.TEST)
        self.train_datasets = list(cfg.DATASETS.TRAIN)
        self.num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        self.name = f"{cfg.MODEL.META_ARCHITECTURE}, backbone {cfg.MODEL.BACKBONE.NAME}"

    def check_weights(self):
        """Stop before building anything when MODEL.WEIGHTS is missing or does not fit."""
        check_weights_match_config(self.config)

    def build_model(self):
        """The model on `device` with the config's MODEL.FAST_PATH switches (they keep
        parameter names, so weights load either way), in eval mode, without weights."""
        cfg = self.config
        if self.device != cfg.MODEL.DEVICE:
            cfg = cfg.clone()
            cfg.defrost()
            cfg.MODEL.DEVICE = self.device
        return apply_fast_path(cfg, build_model(cfg)).eval()

    def checkpointer(self, model):
        return ResNetBackboneCheckpointer(model, cfg=self.config)

    def test_augmentations(self):
        """The test-time resize of Detectron2's DefaultPredictor and test loader."""
        cfg = self.config
        return [T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)]

    def test_loader(self, dataset_name):
        """One-image batches of `dataset_name` as inference sees them, loaded in this process."""
        cfg = self.config.clone()
        cfg.defrost()
        cfg.DATALOADER.NUM_WORKERS = 0
        return build_detection_test_loader(cfg, dataset_name)


class LazyModelRun:
    """A LazyConfig in Detectron2's schema of a trained model."""

    lazy = True
    weights_key, device_key = "train.init_checkpoint", "train.device"
    test_datasets_key = "dataloader.test.dataset.names"

    def __init__(self, lazy):
        self.config = lazy
        self.weights = OmegaConf.select(lazy, "train.init_checkpoint", default="") or ""
        self.device = OmegaConf.select(lazy, "train.device", default="cpu")
        self.input_format = OmegaConf.select(lazy, "model.input_format", default="BGR")
        self.test_datasets = _names(OmegaConf.select(lazy, "dataloader.test.dataset.names"))
        self.train_datasets = _names(OmegaConf.select(lazy, "dataloader.train.dataset.names"))
        self.num_classes = OmegaConf.select(lazy, "model.roi_heads.num_classes")
        target = OmegaConf.select(lazy, "model._target_")
        backbone = OmegaConf.select(lazy, "model.backbone._target_")
        self.name = f"{_target_name(target)}, backbone {_target_name(backbone)}"

    def check_weights(self):
        """Stop before building anything when train.init_checkpoint is missing or does not
        fit the network `model` builds (checked on a skeleton on the meta device)."""
        with torch.device("meta"):
            skeleton = instantiate(self.config.model)
        model = self.config.model
        pixels = pixel_format_of(self.input_format, model.pixel_mean, model.pixel_std)
        check_weights_fit(skeleton, pixels, self.weights, lazy_naming())

    def build_model(self):
        return instantiate(self.config.model).to(torch.device(self.device)).eval()

    def checkpointer(self, model):
        return ResNetBackboneCheckpointer(model, naming=lazy_naming())

    def test_augmentations(self):
        augmentations = OmegaConf.select(self.config, "dataloader.test.mapper.augmentations")
        if augmentations is None:
            raise KeyError("the LazyConfig has no dataloader.test.mapper.augmentations: the "
                           "test-time resize is read from there")
        return list(instantiate(augmentations))

    def test_loader(self, dataset_name):
        config = copy.deepcopy(self.config)  # interpolations resolve in the whole config
        config.dataloader.test.dataset.names = dataset_name
        config.dataloader.test.num_workers = 0
        return instantiate(config.dataloader.test)


def _names(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _target_name(target):
    if target is None:
        return "?"
    return target if isinstance(target, str) else getattr(target, "__qualname__", str(target))


def load_model_run(config_file, opts=(), *, trained=True):
    """The `YamlModelRun` / `LazyModelRun` of any `--config-file` form with the overrides
    `opts` (KEY VALUE pairs for YAML, key=value for LazyConfigs); a run folder gives its own
    config, with its checkpoint as the weights when `trained`. A YAML config's DATASETS.USER
    are registered; a classification config is refused."""
    if config_files.locate(config_file).lazy:
        return LazyModelRun(lazy.load(config_file, opts, trained=trained))
    args = Namespace(config_file=config_file, opts=list(opts))
    return YamlModelRun(load_config(args, add_resnet_backbone_config, trained=trained))
