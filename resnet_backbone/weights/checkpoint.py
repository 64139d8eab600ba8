"""Checkpoint files: converted weights saved with the network and pixel format they need, every
file read as data only (`safe_load.py`), checked against the network a run builds (a meta
skeleton at start-up, the model itself when loading) before anything trains, and a load that
would fill only part of the backbone refused.

A converted file holds {"model": state_dict, "matching_heuristics": True, "__author__": ...,
"resnet_backbone": metadata} (as .pth or .safetensors); matching_heuristics lets Detectron2's
checkpointer place `stem.*`, `res5.*` and `fc6.*` wherever the model has them (FPN bottom-up, C4
head, VGG box head).
"""
import logging
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_backbone
from detectron2.utils.file_io import PathManager

from ..fields import FIELDS
from ..files import atomic_write
from ..modeling.description import YACS, describe, family, record_of_metadata
from .convert import convert_checkpoint
from .metadata import METADATA_KEY, REQUIRED_METADATA, make_metadata, pixel_format_of_model
from .published import SOURCE_PIXEL_FORMATS, PixelFormat, get_known_weights, pixel_format_of
from .safe_load import (
    SAFETENSORS_EXTENSION,
    MetadataError,
    UnsafeCheckpointError,
    read_checkpoint,
    read_safetensors_metadata,
    write_safetensors,
)

logger = logging.getLogger(__name__)

AUTHOR = METADATA_KEY
IMAGENET_PREFIX = "imagenet://"
# Extensions Detectron2's DetectionCheckpointer reads as something other than a torch file.
_NOT_TORCH_EXTENSIONS = (".pkl", ".pyth")
# How many names a partial-load error lists before it only counts.
_LISTED = 20
# The type of each metadata field the checks read (what `metadata.py` writes: the record's
# fields, `fields.FIELDS`, and where the weights came from); pixel_mean/std are 3 numbers.
_METADATA_TYPES = dict(
    arch=str, source=str, pixel_format=str, input_format=str, converter_version=int,
    name=str, url=str, converted_from=str, block=str, depth=int, stride_in_1x1=bool,
    residual=bool, shortcut=str, stem=str, stem_out_channels=int, res2_out_channels=int,
    norm=str,
)
_PIXEL_STATISTICS = ("pixel_mean", "pixel_std")


class WeightsConfigMismatchError(ValueError):
    """The config's pixel format (or architecture) is not the one the weights were trained with."""


def save_converted(path, state_dict, metadata):
    """Write converted weights atomically (a killed process leaves no truncated file), as
    safetensors when `path` ends in .safetensors, else as a torch file."""
    path = os.fspath(path)
    if path.endswith(_NOT_TORCH_EXTENSIONS):
        raise ValueError(
            f"{path}: Detectron2's checkpointer reads {'/'.join(_NOT_TORCH_EXTENSIONS)} files as "
            f"Caffe2/pycls pickles; save converted weights as {SAFETENSORS_EXTENSION} or .pth"
        )
    lacking = [key for key in REQUIRED_METADATA if key not in metadata]
    if lacking:
        raise ValueError(f"metadata lacks {lacking} (make it with make_metadata)")
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ValueError(f"state_dict values must be tensors; not tensors: {not_tensors}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(SAFETENSORS_EXTENSION):
        return atomic_write(path, lambda f: write_safetensors(f, state_dict, metadata))
    data = {
        "model": dict(state_dict),
        "matching_heuristics": True,
        "__author__": AUTHOR,
        METADATA_KEY: dict(metadata),
    }
    return atomic_write(path, lambda f: torch.save(data, f))


def read_metadata(path):
    """The `resnet_backbone` entry of a file, or None for files without one (raw files, other
    projects' checkpoints). `imagenet://` names are answered from the table, without the file;
    a .safetensors file's from its header alone."""
    path = os.fspath(path)
    if path.startswith(IMAGENET_PREFIX):
        entry = get_known_weights(path[len(IMAGENET_PREFIX):])
        return make_metadata(entry.arch, entry.source, name=entry.name, url=entry.url)
    local = PathManager.get_local_path(path) if "://" in path else path
    if local.endswith(SAFETENSORS_EXTENSION) and os.path.isfile(local):
        try:
            metadata = read_safetensors_metadata(local)
        except MetadataError:
            raise
        except Exception as error:
            raise ValueError(f"{local} is not a readable checkpoint: it is truncated, corrupt or "
                             f"not a safetensors file ({type(error).__name__}: {error})") from None
        return None if metadata is None else checked_metadata(metadata, local)
    return _metadata_in(read_checkpoint(local), local)


def _metadata_in(data, path):
    metadata = data.get(METADATA_KEY) if isinstance(data, dict) else None
    return None if metadata is None else checked_metadata(metadata, path)


def checked_metadata(metadata, path):
    """A copy of `metadata` (the `resnet_backbone` entry of the file at `path`) when it has
    the shape this package writes: a mapping holding REQUIRED_METADATA, each field of
    `_METADATA_TYPES` of its type, pixel_mean and pixel_std 3 numbers (other fields are kept
    unread); else MetadataError naming the file and the field."""
    where = f"{path}: its {METADATA_KEY!r} metadata"
    if not isinstance(metadata, dict):
        raise MetadataError(f"{where} is a {type(metadata).__name__}, not a mapping of fields")
    lacking = [key for key in REQUIRED_METADATA if key not in metadata]
    if lacking:
        raise MetadataError(f"{where} lacks the field(s) {', '.join(lacking)}")
    for key, value in metadata.items():
        if key in _PIXEL_STATISTICS:
            wanted, fits = "a list of 3 numbers", isinstance(value, (list, tuple)) and len(
                value) == 3 and all(_is_number(v) for v in value)
        elif key in _METADATA_TYPES:
            kind = _METADATA_TYPES[key]
            wanted = f"a {kind.__name__}"
            fits = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        else:
            continue
        if not fits:
            raise MetadataError(f"{where}: field {key!r} is {value!r} "
                                f"({type(value).__name__}), not {wanted}")
    return dict(metadata)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def convert_file(raw_path, output_path, *, source=None, name=None, url=None, expected_arch=None):
    """Convert the published checkpoint `raw_path` to `output_path`; returns the metadata."""
    data = read_checkpoint(raw_path)  # its errors name the file
    try:
        converted = convert_checkpoint(data, source)
    except ValueError as error:
        raise ValueError(f"{raw_path}: {error}") from error
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


def _origin(metadata):
    source = metadata["source"]
    verb = "were converted from" if source in SOURCE_PIXEL_FORMATS else "were written by"
    return f"they {verb} {source}"


def pixel_format_of_config(cfg):
    """The pixel format a Detectron2 config feeds (INPUT.FORMAT, MODEL.PIXEL_MEAN/STD)."""
    return pixel_format_of(cfg.INPUT.FORMAT, cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD)


def _pixel_problem(pixels, metadata, naming):
    """(problem, fixes) when the run feeds other pixels (`pixels`, a PixelFormat) than the
    recorded format, else None."""
    # As recorded: a classifier or detector trained here may use a format of its own.
    recorded = PixelFormat(metadata["pixel_format"], metadata["input_format"],
                           metadata["pixel_mean"], metadata["pixel_std"], None)
    fmt, mean, std = pixels.input_format, pixels.pixel_mean, pixels.pixel_std
    if recorded.matches(fmt, mean, std):
        return None
    want_mean, want_std = _fmt_list(metadata["pixel_mean"]), _fmt_list(metadata["pixel_std"])
    problem = (
        f"{_origin(metadata)} ({recorded.input_format}, mean {want_mean}, std {want_std}: pixel "
        f"format {recorded.key!r}) but the config asks for {fmt} with mean {_fmt_list(mean)}, "
        f"std {_fmt_list(std)} ({', '.join(naming.pixels)}"
        + (f"; pixel format {pixels.key!r})" if pixels.key != "own" else ")")
    )
    wanted = (recorded.input_format, f'"{want_mean}"', f'"{want_std}"')
    return problem, [naming.setting(name, value) for name, value in zip(naming.pixels, wanted)]


def _arch_problems(network, metadata, naming):
    """[(problem, fixes)] for weights of another backbone family, depth, stride placement,
    plain or residual network, shortcut option, stem or width than `network` (a detector or
    a backbone, built or a meta skeleton) has; none for backbones `describe` does not know."""
    backbone = getattr(network, "backbone", network)
    built = describe(backbone)
    if built is None:
        return []
    arch = metadata["arch"]
    if family(arch) != family(built["arch"]):
        kind = "VGG" if family(built["arch"]) == "vgg" else "ResNet"
        return [(f"they are {arch} weights but {naming.backbone} builds a {kind} backbone "
                 f"({built['arch']})", [])]
    recorded, problems = record_of_metadata(metadata), []
    for field in FIELDS:
        if not (field.required and field.name in recorded and field.applies(recorded)
                and field.applies(built)):
            continue
        wanted, current = recorded[field.name], built.get(field.name)
        if current == wanted:
            continue
        name = naming.field(field, fpn=hasattr(backbone, "bottom_up"))
        shown = name or field.name
        if field.name == "stride_in_1x1":
            problem = (f"{metadata['source']} ResNets have the stride-2 of a bottleneck in the "
                       f"{'first 1x1' if wanted else '3x3'} conv but {shown}={current}")
        elif field.name == "depth":
            problem = f"they are {arch} weights but {shown}={current}"
        else:
            problem = f"they are {arch} weights with {shown}={wanted} but the config has {current}"
        problems.append((problem, [naming.setting(name, wanted)] if name else []))
    return problems


def check_metadata_fits(network, pixels, metadata, path, naming=YACS):
    """Raise WeightsConfigMismatchError when the weights `metadata` describes (read from
    `path`) need another pixel format than `pixels` (a PixelFormat; None: not checked) or
    another network than `network` (a detector or backbone, built or a meta skeleton); the
    fixes are named as `naming` names them (config keys, or a LazyConfig's fields)."""
    found = _arch_problems(network, metadata, naming)
    if pixels is not None:
        found = [p for p in [_pixel_problem(pixels, metadata, naming)] if p] + found
    if not found:
        return
    message = f"weights {path} do not fit the config: " + "; and ".join(p for p, _ in found) + "."
    fixes = [fix for _, more in found for fix in more]
    if fixes:
        message += (f" Use a config written for {metadata['pixel_format']}-format weights, or "
                    "set " + " ".join(fixes))
    raise WeightsConfigMismatchError(message)


def read_weights_metadata(path, naming=YACS):
    """`read_metadata(path)`, its errors (missing, unreadable file) prefixed by the setting
    that names the weights."""
    try:
        return read_metadata(path)
    except UnsafeCheckpointError:
        raise
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"{naming.weights}: {error}") from error


def check_weights_fit(network, pixels, path, naming=YACS):
    """Check the weights at `path` against the network a run builds: `network` (a detector
    or backbone; a skeleton built under `with torch.device("meta"):` will do) fed `pixels` (a
    PixelFormat: `pixel_format_of_config`, or `weights.pixel_format_of` a LazyConfig's
    model.input_format / pixel_mean / pixel_std; a meta skeleton's buffers hold no values).
    Fixes are named as `naming` names them (`description.YACS`, `description.lazy_naming()`).
    Files without metadata, and no path, pass; returns the metadata."""
    if not path:
        return None
    metadata = read_weights_metadata(path, naming)
    if metadata is not None:
        check_metadata_fits(network, pixels, metadata, path, naming)
    return metadata


def backbone_skeleton(cfg):
    """The backbone `cfg` builds, on the meta device (modules without tensor values)."""
    with torch.device("meta"):
        return build_backbone(cfg)


def check_weights_match_config(cfg, path=None):
    """`check_weights_fit` for the weights at `path` (default MODEL.WEIGHTS) and the backbone
    and pixel format of `cfg` (the backbone is built on the meta device only for a file with
    metadata). Returns the metadata."""
    path = cfg.MODEL.WEIGHTS if path is None else path
    if not path:
        return None
    metadata = read_weights_metadata(path)
    if metadata is not None:
        check_metadata_fits(backbone_skeleton(cfg), pixel_format_of_config(cfg), metadata, path)
    return metadata


def detectron2_layout(data, filename):
    """A file's content in the form Detectron2's checkpointer loads from (what its own
    `_load_file` makes of .pkl, .pyth and torch files), from data `read_checkpoint` admitted."""
    if not isinstance(data, dict):
        raise ValueError(f"{filename} holds a {type(data).__name__}, not a checkpoint dict")
    if filename.endswith(".pkl"):
        if "model" in data and "__author__" in data:  # Detectron2's model zoo
            return data
        weights = data.get("blobs", data)  # Detectron's detection models keep them in "blobs"
        weights = {k: v for k, v in weights.items() if not k.endswith("_momentum")}
        return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}
    if filename.endswith(".pyth"):  # pycls
        if "model_state" not in data:
            raise ValueError(f"{filename}: a pycls .pyth checkpoint must hold 'model_state'")
        weights = {k: v for k, v in data["model_state"].items()
                   if not k.endswith("num_batches_tracked")}
        return {"model": weights, "__author__": "pycls", "matching_heuristics": True}
    return data if "model" in data else {"model": data}


class ResNetBackboneCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that reads every file with `read_checkpoint` (data only; Detectron2's
    and fvcore's own readers never see a file), checks its metadata against the model it loads
    into (the record of its backbone as built, the pixel format of its buffers; a bare
    backbone's pixel format from `cfg` where given), and refuses a load that leaves weights of
    the backbone unfilled (another network, or tensors of another shape) unless
    MODEL.RESNET_BACKBONE.ALLOW_PARTIAL_WEIGHTS is set."""

    def __init__(self, model, save_dir="", *, cfg=None, naming=YACS, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.cfg = cfg
        self.naming = naming  # how mismatch errors name the fixes (description.Naming)
        self._loading = None

    def _load_file(self, filename):
        data = detectron2_layout(read_checkpoint(filename), filename)
        query = getattr(getattr(self, "_parsed_url_during_load", None), "query", "")
        if "matching_heuristics=True" in query:  # upstream Detectron2's `path?matching_...`
            data["matching_heuristics"] = True
        metadata = _metadata_in(data, filename)
        if metadata is not None:
            model = getattr(self.model, "module", self.model)  # DistributedDataParallel
            pixels = pixel_format_of_model(model)
            if pixels is None and self.cfg is not None:  # a bare backbone
                pixels = pixel_format_of_config(self.cfg)
            check_metadata_fits(model, pixels, metadata, filename, self.naming)
        self._loading = filename
        return data

    def _log_incompatible_keys(self, incompatible):
        super()._log_incompatible_keys(incompatible)
        # Norm statistics are not counted: FrozenBN fills in defaults for absent ones.
        prefixes = _pretrained_prefixes(self.model)
        pretrained = [k for k in self.model.state_dict() if _is_weight(k, prefixes)]
        not_loaded = [k for k in incompatible.missing_keys if _is_weight(k, prefixes)]
        wrong_shape = [k for k, _, _ in incompatible.incorrect_shapes if _is_weight(k, prefixes)]
        not_loaded += [k for k in wrong_shape if k not in not_loaded]
        if not not_loaded:
            return
        listed = ", ".join(not_loaded[:_LISTED]) + (", ..." if len(not_loaded) > _LISTED else "")
        summary = (
            f"{len(not_loaded)} of the {len(pretrained)} weights and biases of the backbone were "
            f"not loaded from {self._loading} ({len(wrong_shape)} of them have another shape in "
            f"the file, the others are not in it): {listed}"
        )
        allowed = self.cfg is not None and self.cfg.MODEL.RESNET_BACKBONE.ALLOW_PARTIAL_WEIGHTS
        if allowed and len(not_loaded) < len(pretrained):
            logger.warning(summary + " (MODEL.RESNET_BACKBONE.ALLOW_PARTIAL_WEIGHTS is set)")
            return
        raise ValueError(
            f"{summary}. The file holds weights of another network (another depth, backbone, "
            "shortcut option or plain/residual than MODEL.BACKBONE.NAME, MODEL.RESNETS.DEPTH, "
            "MODEL.RESNET_BACKBONE.*)"
            + ("; training would start from random weights" if len(not_loaded) == len(pretrained)
               else "; set MODEL.RESNET_BACKBONE.ALLOW_PARTIAL_WEIGHTS True to train from it "
                    "anyway")
        )


def _is_weight(key, prefixes):
    return key.startswith(prefixes) and key.endswith((".weight", ".bias"))


def _pretrained_prefixes(model):
    """Where an ImageNet checkpoint's tensors go in `model`: its backbone (the bottom-up
    network under an FPN) and a C4 head's res5, or all of it for a bare backbone."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        return ("",)
    prefixes = ("backbone.bottom_up.",) if hasattr(backbone, "bottom_up") else ("backbone.",)
    if hasattr(getattr(model, "roi_heads", None), "res5"):
        prefixes += ("roi_heads.res5.",)
    return prefixes
