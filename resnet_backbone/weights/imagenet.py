"""`MODEL.WEIGHTS: imagenet://<name>` (a `weights.KNOWN_WEIGHTS` name) as a converted
.safetensors file cached in $RESNET_BACKBONE_CACHE (default ~/.cache/resnet_backbone), made from
the raw file in torch hub's or Detectron2's download cache (offline) or downloaded. Importing
this module registers the handler on Detectron2's PathManager.
"""
import logging
import os
from urllib.parse import urlparse

import torch
from detectron2.utils.file_io import PathHandler, PathManager

from .checkpoint import IMAGENET_PREFIX, convert_file, read_metadata
from .metadata import CONVERTER_VERSION
from .published import KNOWN_WEIGHTS, get_known_weights

logger = logging.getLogger(__name__)

CACHE_ENV = "RESNET_BACKBONE_CACHE"
DEFAULT_CACHE = "~/.cache/resnet_backbone"


def cache_dir():
    return os.path.expanduser(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def converted_cache_path(entry):
    stem = os.path.splitext(entry.filename)[0]
    return os.path.join(cache_dir(), f"{entry.name.split('/')[0]}-{stem}.safetensors")


def _iopath_cache_dirs():
    """Where Detectron2 (iopath; older fvcore) caches what it downloads."""
    return [
        os.path.expanduser(os.environ.get("FVCORE_CACHE") or "~/.torch/iopath_cache"),
        os.path.expanduser("~/.torch/fvcore_cache"),
    ]


def raw_file_candidates(entry):
    """Where torchvision (torch hub) and Detectron2 (iopath) would have downloaded `entry` to."""
    url_dir = os.path.dirname(urlparse(entry.url).path.lstrip("/"))
    return [os.path.join(torch.hub.get_dir(), "checkpoints", entry.filename)] + [
        os.path.join(d, url_dir, entry.filename) for d in _iopath_cache_dirs()
    ]


def fetch_raw_file(entry):
    """Local path of the raw file of `entry`, downloaded into its publisher's cache if absent."""
    candidates = raw_file_candidates(entry)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    destination = candidates[0] if entry.source.startswith("torchvision") else candidates[1]
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    if entry.sha256_prefix is None:
        logger.warning(f"{entry.url} has no published checksum; it is not verified")
    logger.info(f"downloading {entry.url} to {destination}")
    try:
        torch.hub.download_url_to_file(entry.url, destination, hash_prefix=entry.sha256_prefix)
    except Exception as error:
        raise OSError(
            f"cannot get {entry.name}: none of {candidates} exists and downloading {entry.url} "
            f"failed ({error}). Place the file at one of those paths, or convert a local copy "
            "with tools/convert_pretrained.py and set MODEL.WEIGHTS to the result"
        ) from error
    return destination


def _is_current(path):
    try:
        metadata = read_metadata(path)
    except (FileNotFoundError, ValueError):  # absent, or cut short by a killed conversion
        return False
    return metadata is not None and metadata.get("converter_version") == CONVERTER_VERSION


def resolve_imagenet_weights(name):
    """Local path of the converted weights `name` (e.g. "torchvision/resnet101")."""
    from iopath.common.file_io import file_lock

    entry = get_known_weights(name)
    target = converted_cache_path(entry)
    if _is_current(target):
        return target
    with file_lock(target):  # several workers may ask at once
        if not _is_current(target):
            raw = fetch_raw_file(entry)
            logger.info(f"converting {raw} ({entry.name}) to {target}")
            convert_file(raw, target, source=entry.source, name=entry.name, url=entry.url,
                         expected_arch=entry.arch)
    return target


class ImageNetWeightsHandler(PathHandler):
    """`imagenet://<name>` -> the converted file."""

    PREFIX = IMAGENET_PREFIX

    def _get_supported_prefixes(self):
        return [self.PREFIX]

    def _name(self, path):
        return path[len(self.PREFIX):]

    def _get_local_path(self, path, force=False, **kwargs):
        return resolve_imagenet_weights(self._name(path))

    def _open(self, path, mode="r", buffering=-1, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise ValueError(f"{path} is read-only")
        return open(self._get_local_path(path), mode, buffering=buffering)

    def _exists(self, path, **kwargs):
        return self._name(path) in KNOWN_WEIGHTS

    _isfile = _exists


def register_imagenet_handler(path_manager=PathManager):
    """Register `imagenet://` on Detectron2's PathManager once (later calls are no-ops)."""
    registered = getattr(path_manager, "_path_handlers", {}).get(IMAGENET_PREFIX)
    if registered is not None:
        return registered
    handler = ImageNetWeightsHandler()
    path_manager.register_handler(handler)
    return handler


register_imagenet_handler()
