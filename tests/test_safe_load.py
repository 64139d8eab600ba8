"""No checkpoint can run code: every way the project reads one (MODEL.WEIGHTS, --resume,
--eval-only, the converter, the checkpointer) refuses a .pth or .pkl whose pickle asks for a
function call, names the file and what it wanted, and runs nothing; legitimate torchvision,
MSRA, Detectron2-zoo, converted (.pth, .safetensors) and own checkpoints still load."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

from conftest import REPO, save_hub_named
from resnet_backbone.weights.checkpoint import (
    ResNetBackboneCheckpointer,
    convert_file,
    read_metadata,
)
from resnet_backbone.modeling.resnet import make_resnet
from resnet_backbone.weights.safe_load import UnsafeCheckpointError, read_checkpoint


class Payload:
    """Unpickling this creates the file `marker`: proof that the pickle ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def malicious(tmp_path):
    """(marker, {kind: path}) of checkpoints that run code when unpickled."""
    marker = tmp_path / "code_ran"
    weights = {"stem.conv1.weight": torch.zeros(64, 3, 7, 7)}
    paths = {"pth": tmp_path / "evil.pth", "legacy": tmp_path / "evil_legacy.pth",
             "pkl": tmp_path / "R-50.pkl", "zoo-pkl": tmp_path / "model_zoo.pkl"}
    torch.save({"model": weights, "x": Payload(marker)}, paths["pth"])
    torch.save({"model": weights, "x": Payload(marker)}, paths["legacy"],
               _use_new_zipfile_serialization=False)
    with open(paths["pkl"], "wb") as f:
        pickle.dump({"blobs": {"conv1_w": Payload(marker)}}, f, protocol=2)
    with open(paths["zoo-pkl"], "wb") as f:
        pickle.dump({"model": {"a": np.zeros(2)}, "__author__": Payload(marker)}, f)
    return marker, paths


@pytest.mark.parametrize("kind", ["pth", "legacy", "pkl", "zoo-pkl"])
def test_reader_refuses_code_names_file_and_object(malicious, kind):
    marker, paths = malicious
    with pytest.raises(UnsafeCheckpointError) as error:
        read_checkpoint(paths[kind])
    message = str(error.value)
    assert str(paths[kind]) in message
    assert "posix.system" in message or "os.system" in message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["pth", "pkl"])
def test_checkpointer_and_converter_refuse_code(malicious, kind):
    marker, paths = malicious
    with pytest.raises(UnsafeCheckpointError):
        ResNetBackboneCheckpointer(make_resnet(50, out_features=["res2"])).load(str(paths[kind]))
    with pytest.raises(UnsafeCheckpointError):
        read_metadata(str(paths[kind]))
    with pytest.raises(UnsafeCheckpointError):
        convert_file(str(paths[kind]), str(paths[kind].parent / "out.safetensors"))
    assert not marker.exists()


@pytest.mark.slow
def test_converter_cli_refuses_code(malicious):
    marker, paths = malicious
    for path in (paths["pth"], paths["pkl"]):
        result = subprocess.run(
            [sys.executable, str(REPO / "tools" / "convert_pretrained.py"), str(path),
             "--output", str(path.parent / "out.safetensors")],
            capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 1
        assert str(path) in result.stderr and "not plain data" in result.stderr
        assert not marker.exists()


@pytest.mark.slow
def test_train_net_refuses_code_as_weights_for_training_and_eval_only(train_net, tiny,
                                                                       malicious, tmp_path):
    marker, paths = malicious
    for path in (paths["pth"], paths["pkl"]):
        for mode in ((), ("--eval-only",)):
            out = tmp_path / f"out-{path.suffix}-{len(mode)}"
            result = train_net(*mode, *tiny, "MODEL.WEIGHTS", str(path), "OUTPUT_DIR", str(out))
            assert result.returncode != 0
            assert "UnsafeCheckpointError" in result.stderr and str(path) in result.stderr
            assert not out.exists()  # stopped at start-up
    assert not marker.exists()


@pytest.mark.slow
def test_resume_refuses_code_named_by_last_checkpoint(train_net, tiny, malicious, tmp_path):
    marker, paths = malicious
    out = tmp_path / "run"
    out.mkdir()
    (out / "model_0000001.pth").write_bytes(paths["pth"].read_bytes())
    (out / "last_checkpoint").write_text("model_0000001.pth")
    result = train_net("--resume", *tiny, "OUTPUT_DIR", str(out))
    assert result.returncode != 0
    assert "UnsafeCheckpointError" in result.stderr
    assert str(out / "model_0000001.pth") in result.stderr
    assert not marker.exists()


def test_legitimate_files_still_load(tmp_path):
    from test_convert import fake_msra_blobs

    torch.manual_seed(0)
    raw = save_hub_named(torchvision.models.resnet18().state_dict(), tmp_path, "resnet18")
    assert torch.equal(read_checkpoint(raw)["conv1.weight"],
                       torch.load(raw, weights_only=True)["conv1.weight"])
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": {"w": torch.ones(2)}}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(legacy)["model"]["w"], torch.ones(2))

    msra = tmp_path / "R-50.pkl"
    blobs = fake_msra_blobs(50, with_stats=False)
    with open(msra, "wb") as f:  # as Detectron published them: protocol 2, numpy arrays
        pickle.dump({"blobs": blobs, "__author__": "MSRA"}, f, protocol=2)
    loaded = read_checkpoint(msra)["blobs"]
    assert np.array_equal(loaded["conv1_w"], blobs["conv1_w"])
    zoo = tmp_path / "model_final.pkl"
    with open(zoo, "wb") as f:  # Detectron2's model zoo: numpy arrays, a numpy scalar
        pickle.dump({"model": {"a": np.arange(3.0)}, "__author__": "Detectron2",
                     "scalar": np.float32(1.5), "order": {1, 2}}, f)
    assert read_checkpoint(zoo)["scalar"] == np.float32(1.5)

    for name in ("r18.pth", "r18.safetensors"):
        convert_file(str(raw), str(tmp_path / name))
        model = make_resnet(18, stride_in_1x1=False, out_features=["res5"])
        ResNetBackboneCheckpointer(model).load(str(tmp_path / name))
        assert torch.equal(model.res5[1].conv2.weight,
                           read_checkpoint(tmp_path / "r18.pth")["model"]["res5.1.conv2.weight"])
    assert read_metadata(str(tmp_path / "r18.safetensors")) == read_metadata(
        str(tmp_path / "r18.pth"))


def test_corrupt_file_error_names_file_without_unsafe_advice(tmp_path):
    truncated = tmp_path / "cut.pth"
    torch.save({"model": {"w": torch.ones(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    cut_pickle = tmp_path / "cut.pkl"
    cut_pickle.write_bytes(pickle.dumps({"a": np.zeros(3)}, protocol=2)[:40])
    for path in (truncated, cut_pickle):
        with pytest.raises(ValueError) as error:
            read_checkpoint(path)
        assert not isinstance(error.value, UnsafeCheckpointError)
        assert f"{path} is not a readable checkpoint" in str(error.value)
        assert "weights_only" not in str(error.value)
