"""Converted checkpoint files: saved with the pixel format they need, read with errors that
name the file, checked against the config before anything trains.

A converted file holds {"model": state_dict, "matching_heuristics": True, "__author__": ...,
"resnet_backbone": metadata}; matching_heuristics lets Detectron2's checkpointer place `stem.*`,
`res5.*` and `fc6.*` wherever the model has them (FPN bottom-up, C4 head, VGG box head).
"""
import logging
import os
import pickle

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from .convert import convert_checkpoint
from .files import atomic_write
from .resnet import DEPTH_TABLE, BottleneckBlock
from .weights import (
    PIXEL_FORMATS,
    SOURCE_PIXEL_FORMATS,
    PixelFormat,
    find_pixel_format,
    get_known_weights,
)

logger = logging.getLogger(__name__)

AUTHOR = "resnet_backbone"
METADATA_KEY = "resnet_backbone"
# Bumped when the converters change what they write: cached files of another version are redone.
CONVERTER_VERSION = 1
IMAGENET_PREFIX = "imagenet://"
# Extensions Detectron2's DetectionCheckpointer reads as something other than a torch file.
_NOT_TORCH_EXTENSIONS = (".pkl", ".pyth")
_REQUIRED_METADATA = ("arch", "source", "pixel_format", "input_format", "pixel_mean", "pixel_std")


class WeightsConfigMismatchError(ValueError):
    """The config's pixel format (or architecture) is not the one the weights were trained with."""


def make_metadata(arch, source, pixel_format=None, **extra):
    """The `resnet_backbone` entry of a converted file. The pixel format (a `PixelFormat`)
    follows `source` unless given; `extra` entries that are None are left out."""
    if pixel_format is None:
        if source not in SOURCE_PIXEL_FORMATS:
            raise ValueError(f"unknown source {source!r}; known: {sorted(SOURCE_PIXEL_FORMATS)}")
        pixel_format = PIXEL_FORMATS[SOURCE_PIXEL_FORMATS[source]]
    metadata = {
        "arch": arch,
        "source": source,
        "pixel_format": pixel_format.key,
        "input_format": pixel_format.input_format,
        "pixel_mean": [float(x) for x in pixel_format.pixel_mean],
        "pixel_std": [float(x) for x in pixel_format.pixel_std],
        "converter_version": CONVERTER_VERSION,
    }
    if arch.startswith("resnet"):
        metadata["stride_in_1x1"] = pixel_format.stride_in_1x1
    metadata.update((key, value) for key, value in extra.items() if value is not None)
    return metadata


def save_converted(path, state_dict, metadata):
    """Write a converted checkpoint atomically (a killed process leaves no truncated file)."""
    path = os.fspath(path)
    if path.endswith(_NOT_TORCH_EXTENSIONS):
        raise ValueError(
            f"{path}: Detectron2's checkpointer reads {'/'.join(_NOT_TORCH_EXTENSIONS)} files as "
            "Caffe2/pycls pickles; save converted weights as .pth"
        )
    lacking = [key for key in _REQUIRED_METADATA if key not in metadata]
    if lacking:
        raise ValueError(f"metadata lacks {lacking} (make it with make_metadata)")
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ValueError(f"state_dict values must be tensors; not tensors: {not_tensors}")
    data = {
        "model": dict(state_dict),
        "matching_heuristics": True,
        "__author__": AUTHOR,
        METADATA_KEY: dict(metadata),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return atomic_write(path, lambda f: torch.save(data, f))


def read_metadata(path):
    """The `resnet_backbone` entry of a converted file, or None for files without one (training
    checkpoints, raw files). `imagenet://` names are answered from the table, without the file."""
    path = os.fspath(path)
    if path.startswith(IMAGENET_PREFIX):
        entry = get_known_weights(path[len(IMAGENET_PREFIX):])
        return make_metadata(entry.arch, entry.source, name=entry.name, url=entry.url)
    data = read_checkpoint(PathManager.get_local_path(path) if "://" in path else path)
    metadata = data.get(METADATA_KEY) if isinstance(data, dict) else None
    return dict(metadata) if isinstance(metadata, dict) else None


def read_checkpoint(path):
    """The checkpoint at the local `path`, on the CPU: a .pkl is a Caffe2 pickle (latin1, as
    Detectron2 reads it), anything else a torch file, loaded memory-mapped and weights_only where
    the torch version and the file allow it. Errors name the file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        inside = sorted(f for f in os.listdir(path) if f.endswith((".pth", ".pkl")))
        hint = f"; it holds {', '.join(inside[:5])}" if inside else ""
        raise ValueError(f"{path} is a directory, not a checkpoint file{hint}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file {path} does not exist")
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        return _torch_load(path)
    except Exception as error:
        raise ValueError(
            f"{path} is not a readable checkpoint: it is truncated, corrupt or not a torch/pickle "
            f"file ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from error


def _torch_load(path):
    # Falls back past: a torch without mmap / weights_only (TypeError), mmap of a legacy non-zip
    # file (RuntimeError), objects weights_only refuses, e.g. a trainer's state (UnpicklingError).
    for options in (dict(weights_only=True, mmap=True), dict(weights_only=True),
                    dict(weights_only=False), {}):
        try:
            return torch.load(path, map_location="cpu", **options)
        except (TypeError, RuntimeError, pickle.UnpicklingError) as e:
            error = e
    raise error


def convert_file(raw_path, output_path, *, source=None, name=None, url=None, expected_arch=None):
    """Convert the published checkpoint `raw_path` to `output_path`; returns the metadata."""
    converted = convert_checkpoint(read_checkpoint(raw_path), source)
    if expected_arch is not None and converted.arch != expected_arch:
        raise ValueError(
            f"{raw_path} holds {converted.arch} weights, but {name or 'the caller'} expects "
            f"{expected_arch}"
        )
    metadata = make_metadata(
        converted.arch, converted.source, name=name, url=url,
        converted_from=os.path.basename(raw_path),
    )
    save_converted(output_path, converted.state_dict, metadata)
    return metadata


def _fmt_list(values):
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def _pixel_problem(cfg, metadata):
    """(problem, fixes) when the config feeds other pixels than the recorded format, else None."""
    # As recorded: a classifier trained here may use a format of its own.
    recorded = PixelFormat(metadata["pixel_format"], metadata["input_format"],
                           metadata["pixel_mean"], metadata["pixel_std"], None)
    fmt, mean, std = cfg.INPUT.FORMAT, list(cfg.MODEL.PIXEL_MEAN), list(cfg.MODEL.PIXEL_STD)
    if recorded.matches(fmt, mean, std):
        return None
    cfg_key = find_pixel_format(fmt, mean, std)
    want_mean, want_std = _fmt_list(metadata["pixel_mean"]), _fmt_list(metadata["pixel_std"])
    problem = (
        f"they were converted from {metadata['source']} ({recorded.input_format}, mean "
        f"{want_mean}, std {want_std}: pixel format {recorded.key!r}) but the config asks for "
        f"{fmt} with mean {_fmt_list(mean)}, std {_fmt_list(std)} (INPUT.FORMAT, "
        "MODEL.PIXEL_MEAN, MODEL.PIXEL_STD" + (f"; pixel format {cfg_key!r})" if cfg_key else ")")
    )
    fixes = [f"INPUT.FORMAT {recorded.input_format}", f'MODEL.PIXEL_MEAN "{want_mean}"',
             f'MODEL.PIXEL_STD "{want_std}"']
    return problem, fixes


def _arch_problems(cfg, metadata):
    """[(problem, fixes)] for weights of another backbone, depth or stride placement."""
    arch, name = metadata.get("arch", ""), cfg.MODEL.BACKBONE.NAME
    family = "vgg" if "vgg" in name.lower() else "resnet" if "resnet" in name.lower() else None
    if family is None:  # a backbone this package does not know: not checked
        return []
    if not arch.startswith(family):
        return [(f"they are {arch} weights but MODEL.BACKBONE.NAME={name} builds a "
                 f"{'VGG' if family == 'vgg' else 'ResNet'} backbone", [])]
    if family == "vgg":
        return []
    depth, r = int(arch[len("resnet"):]), cfg.MODEL.RESNETS
    problems = []
    if r.DEPTH != depth:
        problems.append((f"they are {arch} weights but MODEL.RESNETS.DEPTH={r.DEPTH}",
                         [f"MODEL.RESNETS.DEPTH {depth}"]))
    stride_in_1x1 = metadata.get("stride_in_1x1")
    bottleneck = depth in DEPTH_TABLE and DEPTH_TABLE[depth][0] is BottleneckBlock
    if bottleneck and stride_in_1x1 is not None and bool(r.STRIDE_IN_1X1) != stride_in_1x1:
        problems.append((
            f"{metadata['source']} ResNets have the stride-2 of a bottleneck in the "
            f"{'first 1x1' if stride_in_1x1 else '3x3'} conv but "
            f"MODEL.RESNETS.STRIDE_IN_1X1={r.STRIDE_IN_1X1}",
            [f"MODEL.RESNETS.STRIDE_IN_1X1 {stride_in_1x1}"]))
    return problems


def check_weights_match_config(cfg, path=None):
    """Raise WeightsConfigMismatchError when the converted weights at `path` (default
    MODEL.WEIGHTS) need another pixel format (INPUT.FORMAT, MODEL.PIXEL_MEAN/STD), stride
    placement (MODEL.RESNETS.STRIDE_IN_1X1) or architecture (MODEL.BACKBONE.NAME,
    MODEL.RESNETS.DEPTH) than the config's. Files without metadata pass. Returns the metadata."""
    path = cfg.MODEL.WEIGHTS if path is None else path
    if not path:
        return None
    try:
        metadata = read_metadata(path)
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"MODEL.WEIGHTS: {error}") from error
    if metadata is None:
        return None
    found = [p for p in [_pixel_problem(cfg, metadata)] if p] + _arch_problems(cfg, metadata)
    if not found:
        return metadata
    message = f"weights {path} do not fit the config: " + "; and ".join(p for p, _ in found) + "."
    fixes = [fix for _, more in found for fix in more]
    if fixes:
        message += (f" Use a config written for {metadata['pixel_format']}-format weights, or "
                    "set " + " ".join(fixes))
    raise WeightsConfigMismatchError(message)


class ResNetBackboneCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that runs `check_weights_match_config` on every file it loads and
    counts what of the backbone a file did not fill: a warning with the number, an error when
    it filled none (a checkpoint of another network would else train from scratch)."""

    def __init__(self, model, save_dir="", *, cfg=None, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.cfg = cfg
        self._loading = None

    def _load_file(self, filename):
        if self.cfg is not None:
            check_weights_match_config(self.cfg, filename)
        self._loading = filename
        return super()._load_file(filename)

    def _log_incompatible_keys(self, incompatible):
        super()._log_incompatible_keys(incompatible)
        # Norm statistics are not counted: FrozenBN fills in defaults for absent ones.
        prefix = _pretrained_prefix(self.model)
        backbone = [k for k in self.model.state_dict() if _is_weight(k, prefix)]
        not_loaded = [k for k in incompatible.missing_keys if _is_weight(k, prefix)]
        if not not_loaded:
            return
        wrong_shape = sum(_is_weight(k, prefix) for k, _, _ in incompatible.incorrect_shapes)
        summary = (
            f"{len(not_loaded)} of the {len(backbone)} weights and biases of the backbone were "
            f"not loaded from {self._loading} ({wrong_shape} of them have another shape in the "
            f"file, the others are not in it; e.g. {', '.join(not_loaded[:3])})"
        )
        if len(not_loaded) == len(backbone):
            raise ValueError(
                f"{summary}: the file holds weights of another network (another depth or "
                "backbone than MODEL.BACKBONE.NAME / MODEL.RESNETS.DEPTH); training would start "
                "from random weights"
            )
        logger.warning(summary + "; check that the file is for this depth and backbone")


def _is_weight(key, prefix):
    return key.startswith(prefix) and key.endswith((".weight", ".bias"))


def _pretrained_prefix(model):
    """Where an ImageNet checkpoint's tensors go in `model`: its backbone (the bottom-up
    network under an FPN), or all of it for a bare backbone."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return ""
    return "backbone.bottom_up." if hasattr(backbone, "bottom_up") else "backbone."
