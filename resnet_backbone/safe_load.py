"""Reading checkpoint files without letting them run code.

A pickle can call any importable function while it is read (`__reduce__`), and checkpoints come
from other people: published weights, a colleague's run, a shared cluster folder. Every file
the project reads goes through `read_checkpoint`, which admits only data:

* torch files: `torch.load(weights_only=True)`: tensors, numbers, strings, containers;
* `.pkl` (Caffe2 / Detectron / Detectron2 model zoo): a restricted unpickler that builds numpy
  arrays, numpy scalars and dtypes and builtin containers, and nothing else;
* `.safetensors`: tensors plus string metadata, no pickle at all.

Whatever else a file asks for is refused with `UnsafeCheckpointError`, naming the file and the
object it wanted to build. There is no fallback to a full unpickling.
"""
import json
import os
import pickle
import re

import torch

# The metadata entry of this package's files (see `metadata.py`); in a .safetensors file it is a
# JSON string under this key of the header's metadata.
METADATA_KEY = "resnet_backbone"
SAFETENSORS_EXTENSION = ".safetensors"

# What a Caffe2/Detectron .pkl needs: numpy arrays (numpy 1 and 2 module names), numpy scalars
# and dtypes, and the bytes decoding pickles of protocol 2 use for array data.
_PKL_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("builtins", "complex"), ("builtins", "slice"),
}
# How torch's weights_only unpickler names what it refused to build.
_TORCH_REFUSED = re.compile(r"GLOBAL ([\w.]+)|reduce for ([\w.]+)|Unsupported class ([\w.]+)"
                            r"|but got (<[^>]+>)")


class UnsafeCheckpointError(ValueError):
    """A checkpoint asked to build an object that is not data (it could run code)."""

    def __init__(self, path, wanted):
        super().__init__(
            f"{path} was not loaded: it asks to build {wanted}, which is not plain data (a "
            "pickle can run code while it is read). Only tensors, numbers, strings, containers "
            "and numpy arrays are accepted. If the file is yours, re-save its tensors "
            "(e.g. tools/convert_pretrained.py writes .safetensors)"
        )
        self.path, self.wanted = path, wanted


class _DataOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")  # Python 2 pickles, as Detectron2 reads them
        self.path = path

    def find_class(self, module, name):
        if (module, name) in _PKL_ALLOWED:
            return super().find_class(module, name)
        raise UnsafeCheckpointError(self.path, f"{module}.{name}")


def read_pickle(path):
    """A pickle of data (numpy arrays, containers: Caffe2 weights, CIFAR-10's python batches)
    read without letting it build anything else (UnsafeCheckpointError)."""
    with open(path, "rb") as f:
        return _DataOnlyUnpickler(f, path).load()


def _read_torch(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
    return torch.load(path, map_location="cpu", weights_only=True)  # the legacy, non-zip format


def _read_safetensors(path):
    from safetensors import safe_open

    with safe_open(path, framework="pt", device="cpu") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}
        header = f.metadata() or {}
    data = {"model": tensors}
    if METADATA_KEY in header:
        data.update(matching_heuristics=True, __author__=METADATA_KEY,
                    **{METADATA_KEY: json.loads(header[METADATA_KEY])})
    return data


def read_safetensors_metadata(path):
    """The package metadata in a .safetensors header (no tensor is read), or None."""
    from safetensors import safe_open

    with safe_open(path, framework="pt", device="cpu") as f:
        header = f.metadata() or {}
    return json.loads(header[METADATA_KEY]) if METADATA_KEY in header else None


def write_safetensors(path_or_file, state_dict, metadata):
    """`state_dict` (name -> tensor) and `metadata` (JSON-able) as safetensors bytes."""
    from safetensors.torch import save

    tensors = {key: value.contiguous() for key, value in state_dict.items()}
    payload = save(tensors, metadata={"format": "pt", METADATA_KEY: json.dumps(metadata)})
    path_or_file.write(payload)


def read_checkpoint(path):
    """The checkpoint at the local `path`, on the CPU, read as data only (module docstring).
    Raises UnsafeCheckpointError for a file that asks for more, FileNotFoundError for a missing
    one and ValueError naming the file for a directory or a truncated or corrupt file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        inside = sorted(f for f in os.listdir(path)
                        if f.endswith((".pth", ".pkl", SAFETENSORS_EXTENSION)))
        hint = f"; it holds {', '.join(inside[:5])}" if inside else ""
        raise ValueError(f"{path} is a directory, not a checkpoint file{hint}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file {path} does not exist")
    try:
        if path.endswith(".pkl"):
            return read_pickle(path)
        if path.endswith(SAFETENSORS_EXTENSION):
            return _read_safetensors(path)
        return _read_torch(path)
    except UnsafeCheckpointError:
        raise
    except Exception as error:
        refused = _TORCH_REFUSED.search(str(error))
        if isinstance(error, pickle.UnpicklingError) and refused:
            raise UnsafeCheckpointError(path, next(g for g in refused.groups() if g)) from None
        raise ValueError(
            f"{path} is not a readable checkpoint: it is truncated, corrupt or not a torch, "
            f"pickle or safetensors file ({type(error).__name__}: {_reason(error)})"
        ) from None


def _reason(error):
    """The first line of `error` that says what is wrong with the file (torch's weights_only
    errors also carry advice to load unsafely, which is left out)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not re.search(r"weights_only|Weights only|documentation",
                                                       line)]
    return (reasons or [""])[0]
