"""Reading checkpoint files without letting them run code.

A pickle can call any importable function while it is read (`__reduce__`), and checkpoints come
from other people: published weights, a colleague's run, a shared cluster folder. Every file
the project reads goes through `read_checkpoint`, which admits only data:

* torch files: `torch.load(weights_only=True)`: tensors, numbers, strings, containers;
* `.pkl` (Caffe2 / Detectron / Detectron2 model zoo): a restricted unpickler that builds numpy
  arrays, numpy scalars and dtypes and builtin containers, and nothing else, and allocates no
  more than the file holds data for (an array's data comes from the file's bytes);
* `.safetensors`: tensors plus string metadata, no pickle at all.

Whatever else a file asks for is refused with `UnsafeCheckpointError`, naming the file and the
object it wanted to build. There is no fallback to a full unpickling. A file named as torch hub
names its downloads, `<name>-<sha256 prefix>.pth`, must have that hash (`check_hash_in_name`).
"""
import _compat_pickle
import hashlib
import json
import math
import mmap
import os
import pickle
import re

import numpy
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
# The only text encoding pickles of protocol 2 ask `_codecs.encode` for (bytes as latin-1 text).
_PICKLE_ENCODINGS = ("latin1", "latin-1")
# How torch's weights_only unpickler names what it refused to build.
_TORCH_REFUSED = re.compile(r"GLOBAL ([\w.]+)|reduce for ([\w.]+)|Unsupported class ([\w.]+)"
                            r"|but got (<[^>]+>)")
# torch.hub's file names carry the first hex digits of the file's sha256 before the extension
# (torchvision's resnet18-f37072fd.pth); hub checks them on download, `read_checkpoint` on
# every read.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth?$")


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


class OversizedCheckpointError(UnsafeCheckpointError):
    """A pickle asked for more memory than its file holds data for (an allocation bomb)."""

    def __init__(self, path, wanted, requested, available):
        ValueError.__init__(
            self,
            f"{path} was not loaded: it asks for {wanted}, {requested:,} bytes in all, but the "
            f"file holds {available:,} bytes. The data of a checkpoint's arrays is in the file; "
            "a request out of proportion to it is refused before anything is allocated"
        )
        self.path, self.wanted = path, wanted


class MetadataError(ValueError):
    """A file's `resnet_backbone` metadata is not what this package writes; names file and field."""


class HashMismatchError(ValueError):
    """A file named with a sha256 prefix (torch hub's `<name>-<prefix>.pth`) holds other bytes."""


def check_hash_in_name(path):
    """Raise HashMismatchError when the file name of `path` carries a sha256 prefix
    (`_HASH_IN_NAME`) the file's content does not have; files named otherwise pass."""
    named = _HASH_IN_NAME.search(os.path.basename(path))
    if named is None:
        return
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHED[key] = digest.hexdigest()
    expected = named.group(1)
    if not _HASHED[key].startswith(expected):
        raise HashMismatchError(
            f"{path}: its name says its sha256 starts with {expected}, but it starts with "
            f"{_HASHED[key][:len(expected)]}: the file is not the one published under that "
            "name (corrupt, or replaced). Download it again, or rename your own weights "
            "without the hash"
        )


_HASHED = {}  # (real path, size, mtime, inode) -> sha256 of files already checked


def _array_bytes(shape, dtype):
    """Bytes an array of `shape` and `dtype` takes (ValueError for a shape that is not one)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"array shape {shape!r} is not a tuple of sizes")
    return math.prod(shape) * numpy.dtype(dtype).itemsize


def _held_bytes(value):
    """About what an argument taken from the file occupies (a copy of it costs as much)."""
    if isinstance(value, numpy.ndarray):
        return value.nbytes
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    return 8 * len(value) if isinstance(value, (list, tuple, dict, set, frozenset)) else 0


def _requested_bytes(func, args, kwargs):
    """(what, bytes) a call of an admitted `func` asks to allocate."""
    name = getattr(func, "__name__", repr(func))
    held = sum(_held_bytes(value) for value in (*args, *kwargs.values()))
    if func is bytearray and args and isinstance(args[0], int):
        return f"bytearray({args[0]})", args[0]
    if func is numpy.ndarray:
        shape, dtype = args[0], args[1] if len(args) > 1 else kwargs.get("dtype", float)
        return f"numpy.ndarray{shape!r}", _array_bytes(shape, dtype)
    if name == "_reconstruct":
        if args[0] is not numpy.ndarray:
            raise ValueError(f"_reconstruct of {args[0]!r}")
        return f"numpy.ndarray{args[1]!r}", _array_bytes(args[1], args[2])
    if name == "scalar":
        return "a numpy scalar", numpy.dtype(args[0]).itemsize + held
    if name == "encode" and (args[1:2] or [kwargs.get("encoding")])[0] not in _PICKLE_ENCODINGS:
        raise ValueError(f"_codecs.encode to {(args[1:] or [kwargs.get('encoding')])[0]!r}")
    return name, held


class _DataOnlyUnpickler(pickle._Unpickler):
    """Python's unpickler (its opcodes can be overridden, the C one's cannot) building only
    `_PKL_ALLOWED`, each call and array state checked against the bytes the file holds: every
    call is charged what it allocates, and all calls together may take no more than the file
    size; an array's state must hold exactly the data its shape needs."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, path, size):
        super().__init__(file, encoding="latin1")  # Python 2 pickles, as Detectron2 reads them
        self.path, self.size, self.spent = path, size, 0

    def find_class(self, module, name):
        if self.proto < 3:  # Python 2 names (__builtin__.set)
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _PKL_ALLOWED:
            return super().find_class(module, name)
        raise UnsafeCheckpointError(self.path, f"{module}.{name}")

    def _charge(self, func, args, kwargs=None):
        try:
            wanted, requested = _requested_bytes(func, args, kwargs or {})
        except (ValueError, TypeError, IndexError) as error:
            raise UnsafeCheckpointError(self.path, f"{getattr(func, '__name__', func)} "
                                        f"with arguments it does not take ({error})") from None
        self.spent += requested
        if self.spent > self.size:
            raise OversizedCheckpointError(self.path, wanted, self.spent, self.size)

    def _check_state(self, inst, state):
        """An array's state (version, shape, dtype, fortran order, data) must hold its data."""
        if not isinstance(inst, numpy.ndarray):
            return
        if not (isinstance(state, tuple) and len(state) in (4, 5)):
            raise UnsafeCheckpointError(self.path, "a numpy array from a state it does not take")
        shape, dtype, data = state[-4], state[-3], state[-1]
        if not isinstance(dtype, numpy.dtype):
            raise UnsafeCheckpointError(self.path, f"a numpy array of dtype {dtype!r}")
        try:
            needed = _array_bytes(shape, dtype)
        except ValueError as error:
            raise UnsafeCheckpointError(self.path, f"a numpy array: {error}") from None
        if dtype.hasobject:
            holds = 8 * len(data) if isinstance(data, list) else -1
        else:
            holds = len(data) if isinstance(data, (bytes, bytearray, str)) else -1
        if holds != needed:
            raise OversizedCheckpointError(self.path, f"a numpy array of shape {tuple(shape)} "
                                           f"and dtype {dtype} ({needed:,} bytes) filled from "
                                           f"{max(holds, 0):,} bytes", needed, self.size)

    def load_reduce(self):
        self._charge(self.stack[-2], self.stack[-1])
        super().load_reduce()

    def load_newobj(self):
        self._charge(self.stack[-2], self.stack[-1])
        super().load_newobj()

    def load_newobj_ex(self):
        self._charge(self.stack[-3], self.stack[-2], self.stack[-1])
        super().load_newobj_ex()

    def _instantiate(self, klass, args):
        self._charge(klass, args)
        super()._instantiate(klass, args)

    def load_build(self):
        self._check_state(self.stack[-2], self.stack[-1])
        super().load_build()

    def load_bytearray8(self):  # Python's own allocates the length it reads, then fills it
        length = int.from_bytes(self.read(8), "little")
        if length > self.size:
            raise OversizedCheckpointError(self.path, f"a bytearray of {length:,} bytes",
                                           length, self.size)
        self.append(bytearray(self.read(length)))

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8


def read_pickle(path):
    """A pickle of data (numpy arrays, containers: Caffe2 weights, CIFAR-10's python batches)
    read without letting it build anything else (UnsafeCheckpointError) or ask for more memory
    than its bytes fill (OversizedCheckpointError). The file is read through a memory map, so
    a length in it asks for no more than what is left of the file."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as content:
        return _DataOnlyUnpickler(_WholeLines(content), path, len(content)).load()


class _WholeLines:
    """A file as the unpickler reads it, where a line the end of the file cuts short (a
    global's name) is truncation, as in the C unpickler, not a shorter name to look up."""

    def __init__(self, content):
        self.read = content.read
        self._readline = content.readline

    def readline(self):
        line = self._readline()
        if not line.endswith(b"\n"):
            raise pickle.UnpicklingError("pickle data was truncated")
        return line


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
                    **{METADATA_KEY: _header_metadata(header, path)})
    return data


def _header_metadata(header, path):
    try:
        return json.loads(header[METADATA_KEY])
    except ValueError as error:
        raise MetadataError(f"{path}: the {METADATA_KEY!r} entry of its safetensors header is "
                            f"not JSON ({error})") from None


def read_safetensors_metadata(path):
    """The package metadata in a .safetensors header (no tensor is read), or None; its fields
    are not checked here (`checkpoint.read_metadata` does)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt", device="cpu") as f:
        header = f.metadata() or {}
    return _header_metadata(header, path) if METADATA_KEY in header else None


def write_safetensors(path_or_file, state_dict, metadata):
    """`state_dict` (name -> tensor) and `metadata` (JSON-able) as safetensors bytes."""
    from safetensors.torch import save

    tensors = {key: value.contiguous() for key, value in state_dict.items()}
    payload = save(tensors, metadata={"format": "pt", METADATA_KEY: json.dumps(metadata)})
    path_or_file.write(payload)


def read_checkpoint(path):
    """The checkpoint at the local `path`, on the CPU, read as data only (module docstring).
    Raises UnsafeCheckpointError for a file that asks for more (OversizedCheckpointError for
    more memory than it holds data for), HashMismatchError for a file whose name's sha256
    prefix is not its content's, FileNotFoundError for a missing one and ValueError naming the
    file for a directory or a truncated or corrupt file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        inside = sorted(f for f in os.listdir(path)
                        if f.endswith((".pth", ".pkl", SAFETENSORS_EXTENSION)))
        hint = f"; it holds {', '.join(inside[:5])}" if inside else ""
        raise ValueError(f"{path} is a directory, not a checkpoint file{hint}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"file {path} does not exist")
    check_hash_in_name(path)
    try:
        if path.endswith(".pkl"):
            return read_pickle(path)
        if path.endswith(SAFETENSORS_EXTENSION):
            return _read_safetensors(path)
        return _read_torch(path)
    except (UnsafeCheckpointError, MetadataError):
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
