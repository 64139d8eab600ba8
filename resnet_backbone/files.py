"""Writing files so that a killed process never leaves a half-written one behind.

Every file the project writes (checkpoints, converted weights, metrics, reports, pictures) goes
through `atomic_write`: readers see either the previous content or the new one, never a mix.
"""
import json
import math
import os
import tempfile

TMP_SUFFIX = ".tmp"  # temporary files of atomic writes: ".<name>.<random>.tmp"


def atomic_write(path, write):
    """Call `write(f)` on a temporary binary file next to `path`, fsync it and rename it over
    `path`. On any failure (or a kill) `path` keeps its previous content."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=TMP_SUFFIX,
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def _finite_or_none(value):
    """JSON has no NaN/Infinity; metrics that are undefined (e.g. APl of a split without large
    objects) are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value


def write_json(path, data):
    """Write `data` as strict JSON (non-finite floats become null), atomically."""
    text = json.dumps(_finite_or_none(data), indent=2, allow_nan=False) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))
