"""Files that run no code but could still hurt: a pickle asking for more memory than it holds
data for is refused before anything is allocated, a file named with a sha256 prefix must have
it, and metadata of the wrong shape is an error naming the file and the field."""
import hashlib
import json
import os
import pickle
import struct
import tracemalloc

import numpy as np
import pytest
import torch
import torchvision

from conftest import save_hub_named
from resnet_backbone.weights import safe_load
from resnet_backbone.weights.checkpoint import (
    ResNetBackboneCheckpointer,
    check_weights_match_config,
    convert_file,
    read_metadata,
    save_converted,
)
from resnet_backbone.fields import FIELDS
from resnet_backbone.weights.metadata import make_metadata
from resnet_backbone.modeling.resnet import make_resnet
from resnet_backbone.weights.safe_load import (
    HashMismatchError,
    MetadataError,
    OversizedCheckpointError,
    read_checkpoint,
)

# What each bomb asks for: far beyond its few bytes, small enough not to hurt the machine if
# the reader ever let it through.
BOMB = 256 << 20


def _int(n):
    """The opcode pushing the integer `n` (LONG1)."""
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def _unicode(text):
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\n"
BOMBS = {
    # bytearray(n): an admitted builtin asked for n zero bytes
    "bytearray": b"\x80\x02c__builtin__\nbytearray\n" + _int(BOMB) + b"\x85R.",
    # numpy's own way to make an array, asked for a huge empty one
    "reconstruct": (b"\x80\x02" + RECONSTRUCT + b"cnumpy\nndarray\n" + _int(BOMB)
                    + b"\x85" + _unicode("b") + b"\x87R."),
    # numpy.ndarray(shape, "u1") built with NEWOBJ
    "ndarray-newobj": (b"\x80\x02cnumpy\nndarray\n" + _int(BOMB) + b"\x85" + _unicode("u1")
                       + b"\x86\x81."),
    # an object array whose state claims a huge shape for a 2-element list
    "object-array-state": (b"\x80\x02" + RECONSTRUCT + b"cnumpy\nndarray\nK\x00\x85"
                           + _unicode("b") + b"\x87R(K\x01" + _int(BOMB // 8) + b"\x85"
                           + b"cnumpy\ndtype\n" + _unicode("O") + b"\x85R\x89](K\x01K\x02etb."),
    # BYTEARRAY8 with a length the file does not hold
    "bytearray8": b"\x80\x05\x96" + struct.pack("<Q", BOMB) + b"abc.",
    # one string from the file encoded again and again (memo): each call is small, all together
    # they are not
    "repeated": (b"\x80\x02c_codecs\nencode\nq\x00" + _unicode("x" * 4096) + b"q\x01"
                 + _unicode("latin1") + b"q\x02(" + b"h\x00h\x01h\x02\x86R" * 100 + b"l."),
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_allocation_bomb_is_refused_before_allocating(tmp_path, kind):
    path = tmp_path / f"{kind}.pkl"
    path.write_bytes(BOMBS[kind])
    tracemalloc.start()
    try:
        with pytest.raises(OversizedCheckpointError) as error:
            read_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(error.value) and f"{os.path.getsize(path):,} bytes" in str(error.value)
    assert peak < 1 << 20, f"{peak:,} bytes allocated reading a {os.path.getsize(path)}-byte file"


def test_other_encodings_than_pickles_use_are_refused(tmp_path):
    path = tmp_path / "codec.pkl"
    path.write_bytes(b"\x80\x02c_codecs\nencode\n" + _unicode("x") + _unicode("rot13")
                     + b"\x86R.")
    with pytest.raises(safe_load.UnsafeCheckpointError, match="rot13"):
        read_checkpoint(path)


@pytest.mark.parametrize("protocol", [2, 4])
def test_published_formats_load_in_memory_near_their_size(tmp_path, protocol):
    from test_convert import fake_msra_blobs

    blobs = fake_msra_blobs(18, with_stats=True)
    files = {"R-18.pkl": {"blobs": blobs, "__author__": "MSRA"},  # Detectron / Caffe2
             "model_final.pkl": {"model": blobs, "__author__": "Detectron2",  # Detectron2 zoo
                                 "scalar": np.float32(1.5), "order": {1, 2}}}
    for name, content in files.items():
        path = tmp_path / name
        with open(path, "wb") as f:
            pickle.dump(content, f, protocol=protocol)
        tracemalloc.start()
        try:
            loaded = read_checkpoint(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        weights = loaded.get("blobs", loaded.get("model"))
        assert all(np.array_equal(weights[k], v) for k, v in blobs.items())
        assert peak < 2 * os.path.getsize(path) + (1 << 20)


def test_file_named_with_a_hash_must_have_it(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    genuine = save_hub_named(state, tmp_path, "resnet18")
    assert convert_file(str(genuine), str(tmp_path / "ok.safetensors"))["arch"] == "resnet18"

    planted = tmp_path / "resnet18-f37072fd.pth"  # torchvision's name, other weights
    planted.write_bytes(genuine.read_bytes())
    actual = hashlib.sha256(planted.read_bytes()).hexdigest()[:8]
    for read in (read_checkpoint, lambda p: convert_file(str(p), str(tmp_path / "x.pth"))):
        with pytest.raises(HashMismatchError) as error:
            read(planted)
        assert str(planted) in str(error.value)
        assert "f37072fd" in str(error.value) and actual in str(error.value)
    assert not (tmp_path / "x.pth").exists()
    # MODEL.WEIGHTS: the metadata check at start-up and the checkpointer
    with pytest.raises(HashMismatchError, match="MODEL.WEIGHTS: .*f37072fd"):
        check_weights_match_config(_cfg(), str(planted))
    with pytest.raises(HashMismatchError, match="f37072fd"):
        ResNetBackboneCheckpointer(make_resnet(18, out_features=["res5"])).load(str(planted))


def test_names_without_a_hash_are_not_checked(tmp_path):
    for name in ("model_final.pth", "model_0004999.pth", "resnet18-final.pth", "r18.pth"):
        torch.save({"model": {"w": torch.ones(2)}}, tmp_path / name)
        assert torch.equal(read_checkpoint(tmp_path / name)["model"]["w"], torch.ones(2))


def _cfg():
    from test_weights import make_cfg

    return make_cfg(depth=18)


GOOD = make_metadata("resnet18", "torchvision")
BAD_FIELDS = {
    "pixel_mean": "a",
    "pixel_std": [1.0, "x", 1.0],
    "arch": ["x"],
    "depth": "18",
    "residual": "yes",
    "stem_out_channels": 64.0,
    "input_format": 3,
}


def _write_safetensors(path, entry):
    from safetensors.torch import save_file

    text = entry if isinstance(entry, str) else json.dumps(entry)
    save_file({"stem.conv1.weight": torch.zeros(1)}, str(path),
              metadata={"format": "pt", safe_load.METADATA_KEY: text})


@pytest.mark.parametrize("field", sorted(BAD_FIELDS))
@pytest.mark.parametrize("extension", [".safetensors", ".pth"])
def test_metadata_of_the_wrong_shape_names_file_and_field(tmp_path, field, extension):
    path = tmp_path / f"bad{extension}"
    entry = dict(GOOD, **{field: BAD_FIELDS[field]})
    if extension == ".pth":
        torch.save({"model": {}, safe_load.METADATA_KEY: entry}, path)
    else:
        _write_safetensors(path, entry)
    with pytest.raises(MetadataError) as error:
        read_metadata(str(path))
    assert str(path) in str(error.value) and repr(field) in str(error.value)
    with pytest.raises(MetadataError, match=f"MODEL.WEIGHTS: {path}.*'{field}'"):
        check_weights_match_config(_cfg(), str(path))
    with pytest.raises(MetadataError, match=f"{path}.*'{field}'"):
        ResNetBackboneCheckpointer(make_resnet(18, out_features=["res5"])).load(str(path))


@pytest.mark.parametrize("entry, says", [
    ("{not json", "not JSON"),
    ('["resnet18"]', "is a list, not a mapping"),
    (json.dumps({"arch": "resnet18"}), "lacks the field(s) source, pixel_format"),
])
def test_metadata_that_is_no_record_names_file(tmp_path, entry, says):
    path = tmp_path / "bad.safetensors"
    _write_safetensors(path, entry)
    for read in (read_metadata, lambda p: ResNetBackboneCheckpointer(
            make_resnet(18, out_features=["res5"])).load(p)):
        with pytest.raises(MetadataError) as error:
            read(str(path))
        assert str(path) in str(error.value) and says in str(error.value)


def test_metadata_this_package_writes_passes_the_check(tmp_path):
    from resnet_backbone.weights import checkpoint

    assert {field.name for field in FIELDS} <= set(checkpoint._METADATA_TYPES)
    state = make_resnet(18, stride_in_1x1=False, out_features=["res5"]).state_dict()
    for name in ("r18.safetensors", "r18.pth"):
        save_converted(tmp_path / name, state, GOOD)
        assert read_metadata(str(tmp_path / name)) == GOOD
