"""Converted checkpoint files: saving with metadata, the pixel-format check, `imagenet://`.

A converted file is a torch file holding

    {"model": state_dict, "matching_heuristics": True, "__author__": "resnet_backbone",
     "resnet_backbone": {"arch": "resnet50", "source": "torchvision", "pixel_format": ...,
                         "input_format": "RGB", "pixel_mean": [...], "pixel_std": [...],
                         "stride_in_1x1": False, ...}}

`matching_heuristics` makes Detectron2's DetectionCheckpointer match names by suffix, so
`stem.*` lands in `backbone.stem.*` or `backbone.bottom_up.stem.*` (FPN), `res5.*` in
`roi_heads.res5.*` (C4 head) and `fc6.*` in `roi_heads.box_head.fc6.*`. The `resnet_backbone`
entry records the pixel format the weights were trained with; `check_weights_match_config`
compares it with INPUT.FORMAT / MODEL.PIXEL_MEAN / MODEL.PIXEL_STD (and the ResNet stride
placement and depth) and stops before training with a message naming both.

`imagenet://` names are resolved by `imagenet.py`.
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
    SOURCE_PIXEL_FORMATS,
    PixelFormat,
    find_pixel_format,
    get_known_weights,
    get_pixel_format,
)

logger = logging.getLogger(__name__)

AUTHOR = "resnet_backbone"
METADATA_KEY = "resnet_backbone"
# Bumped when the converters change what they write; cached files of another version are
# converted again.
CONVERTER_VERSION = 1
IMAGENET_PREFIX = "imagenet://"
# Extensions Detectron2's DetectionCheckpointer reads as something other than a torch file.
_NOT_TORCH_EXTENSIONS = (".pkl", ".pyth")
_REQUIRED_METADATA = ("arch", "source", "pixel_format", "input_format", "pixel_mean", "pixel_std")


class WeightsConfigMismatchError(ValueError):
    """The config's pixel format (or architecture) is not the one the weights were trained with."""


# ------------------------------------------------------------------------------------------
# Metadata and files
# ------------------------------------------------------------------------------------------
def make_metadata(arch, source, *, name=None, url=None, converted_from=None):
    """The `resnet_backbone` entry of a converted file: the pixel format follows `source`."""
    if source not in SOURCE_PIXEL_FORMATS:
        raise ValueError(f"unknown source {source!r}; known: {sorted(SOURCE_PIXEL_FORMATS)}")
    fmt = get_pixel_format(SOURCE_PIXEL_FORMATS[source])
    metadata = {
        "arch": arch,
        "source": source,
        "pixel_format": fmt.key,
        "input_format": fmt.input_format,
        "pixel_mean": [float(x) for x in fmt.pixel_mean],
        "pixel_std": [float(x) for x in fmt.pixel_std],
        "converter_version": CONVERTER_VERSION,
    }
    if arch.startswith("resnet"):
        metadata["stride_in_1x1"] = fmt.stride_in_1x1
    for key, value in (("name", name), ("url", url), ("converted_from", converted_from)):
        if value is not None:
            metadata[key] = value
    return metadata


def save_converted(path, state_dict, metadata):
    """Write a converted checkpoint atomically: a temporary file in the same directory is
    renamed over `path` only once complete, so a killed process never leaves a truncated one."""
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
    """The `resnet_backbone` entry of a converted file, or None for files without one (a
    Detectron2 training checkpoint, a raw torchvision file, an MSRA .pkl). Tensors are
    memory-mapped, not read. For `imagenet://` names the entry comes from the table, without
    touching the (possibly not yet converted) file. A directory, a missing or an unreadable
    file raises an error naming it."""
    path = os.fspath(path)
    if path.startswith(IMAGENET_PREFIX):
        entry = get_known_weights(path[len(IMAGENET_PREFIX):])
        return make_metadata(entry.arch, entry.source, name=entry.name, url=entry.url)
    data = read_checkpoint(PathManager.get_local_path(path) if "://" in path else path)
    metadata = data.get(METADATA_KEY) if isinstance(data, dict) else None
    return dict(metadata) if isinstance(metadata, dict) else None


def read_checkpoint(path):
    """The checkpoint at the local `path`, read as Detectron2's checkpointer reads it; an error
    naming the file and what is wrong with it instead of torch's or pickle's."""
    if os.path.isdir(path):
        inside = sorted(f for f in os.listdir(path) if f.endswith((".pth", ".pkl")))
        hint = f"; it holds {', '.join(inside[:5])}" if inside else ""
        raise ValueError(f"{path} is a directory, not a checkpoint file{hint}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file {path} does not exist")
    try:
        if path.endswith(".pkl"):
            return load_raw_checkpoint(path)
        try:
            return _torch_load(path, mmap=True)
        except pickle.UnpicklingError:  # objects weights_only refuses, e.g. a trainer's state
            return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(
            f"{path} is not a readable checkpoint: it is truncated, corrupt or not a torch/pickle "
            f"file ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from error


def _torch_load(path, mmap=False):
    """torch.load to the CPU without running pickled code (weights_only) and, where possible,
    memory-mapped; falls back for torch versions or legacy files that cannot do either."""
    attempts = ([dict(weights_only=True, mmap=True)] if mmap else []) + [dict(weights_only=True)]
    for options in attempts:
        try:
            return torch.load(path, map_location="cpu", **options)
        except TypeError:  # a torch without this option
            continue
        except RuntimeError:  # mmap of a legacy (non-zip) torch file
            if "mmap" in options:
                continue
            raise
    return torch.load(path, map_location="cpu")


def load_raw_checkpoint(path):
    """A published checkpoint as loaded from disk: .pkl files are (Caffe2/Detectron) pickles,
    read with latin1 as Detectron2 does; anything else is a torch file."""
    path = os.fspath(path)
    if path.endswith(".pkl"):
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    return _torch_load(path)


def convert_file(raw_path, output_path, *, source=None, name=None, url=None, expected_arch=None):
    """Convert the published checkpoint `raw_path` to `output_path` (atomically, with
    metadata); returns the metadata."""
    converted = convert_checkpoint(load_raw_checkpoint(raw_path), source)
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


# ------------------------------------------------------------------------------------------
# The config check
# ------------------------------------------------------------------------------------------
def _fmt_list(values):
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def _backbone_family(cfg):
    name = cfg.MODEL.BACKBONE.NAME.lower()
    if "vgg" in name:
        return "vgg"
    if "resnet" in name:
        return "resnet"
    return None  # a backbone this package does not know: architecture is not checked


def check_weights_match_config(cfg, path=None):
    """Raise WeightsConfigMismatchError when the converted weights at `path` (default
    cfg.MODEL.WEIGHTS) were trained with another pixel format than the config's INPUT.FORMAT /
    MODEL.PIXEL_MEAN / MODEL.PIXEL_STD, with the other stride placement
    (MODEL.RESNETS.STRIDE_IN_1X1, bottleneck ResNets) or are of another architecture
    (MODEL.BACKBONE.NAME, MODEL.RESNETS.DEPTH). Files without metadata pass unchecked.
    Returns the metadata (or None)."""
    path = cfg.MODEL.WEIGHTS if path is None else path
    if not path:
        return None
    try:
        metadata = read_metadata(path)
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"MODEL.WEIGHTS: {error}") from error
    if metadata is None:
        return None

    problems, fixes = [], []
    fmt = PixelFormat(  # as recorded: a classifier trained here may use a format of its own
        key=metadata["pixel_format"], input_format=metadata["input_format"],
        pixel_mean=tuple(metadata["pixel_mean"]), pixel_std=tuple(metadata["pixel_std"]),
        stride_in_1x1=metadata.get("stride_in_1x1"), description="recorded in the file",
    )
    cfg_format = cfg.INPUT.FORMAT
    cfg_mean, cfg_std = list(cfg.MODEL.PIXEL_MEAN), list(cfg.MODEL.PIXEL_STD)
    if not fmt.matches(cfg_format, cfg_mean, cfg_std):
        cfg_key = find_pixel_format(cfg_format, cfg_mean, cfg_std)
        problems.append(
            f"they were converted from {metadata['source']} ({metadata['input_format']}, mean "
            f"{_fmt_list(metadata['pixel_mean'])}, std {_fmt_list(metadata['pixel_std'])}: "
            f"pixel format {fmt.key!r}) but the config asks for {cfg_format} with mean "
            f"{_fmt_list(cfg_mean)}, std {_fmt_list(cfg_std)} (INPUT.FORMAT, MODEL.PIXEL_MEAN, "
            "MODEL.PIXEL_STD" + (f"; pixel format {cfg_key!r})" if cfg_key else ")")
        )
        fixes += [
            f"INPUT.FORMAT {metadata['input_format']}",
            f'MODEL.PIXEL_MEAN "{_fmt_list(metadata["pixel_mean"])}"',
            f'MODEL.PIXEL_STD "{_fmt_list(metadata["pixel_std"])}"',
        ]

    arch, family = metadata.get("arch", ""), _backbone_family(cfg)
    if arch.startswith("resnet") and family == "vgg" or arch == "vgg16" and family == "resnet":
        problems.append(
            f"they are {arch} weights but MODEL.BACKBONE.NAME={cfg.MODEL.BACKBONE.NAME} builds "
            f"a {'VGG' if family == 'vgg' else 'ResNet'} backbone"
        )
    elif arch.startswith("resnet") and family == "resnet":
        depth = int(arch[len("resnet"):])
        if cfg.MODEL.RESNETS.DEPTH != depth:
            problems.append(
                f"they are {arch} weights but MODEL.RESNETS.DEPTH={cfg.MODEL.RESNETS.DEPTH}"
            )
            fixes.append(f"MODEL.RESNETS.DEPTH {depth}")
        stride_in_1x1 = metadata.get("stride_in_1x1")
        bottleneck = depth in DEPTH_TABLE and DEPTH_TABLE[depth][0] is BottleneckBlock
        if (
            bottleneck
            and stride_in_1x1 is not None
            and bool(cfg.MODEL.RESNETS.STRIDE_IN_1X1) != stride_in_1x1
        ):
            where = "first 1x1" if stride_in_1x1 else "3x3"
            problems.append(
                f"{metadata['source']} ResNets have the stride-2 of a bottleneck in the {where} "
                f"conv but MODEL.RESNETS.STRIDE_IN_1X1={cfg.MODEL.RESNETS.STRIDE_IN_1X1}"
            )
            fixes.append(f"MODEL.RESNETS.STRIDE_IN_1X1 {stride_in_1x1}")

    if not problems:
        return metadata
    message = f"weights {path} do not fit the config: " + "; and ".join(problems) + ". "
    if fixes:
        message += (
            f"Use a config written for {fmt.key}-format weights, or set "
            + " ".join(fixes)
        )
    raise WeightsConfigMismatchError(message.rstrip())


class ResNetBackboneCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that runs `check_weights_match_config` on every file it loads
    (files without metadata, e.g. its own training checkpoints, pass unchecked) and counts
    what of the backbone a file did not fill: a warning with the number, an error when it
    filled none of it (a checkpoint of another network would else train from scratch)."""

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
