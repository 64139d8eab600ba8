"""The weights table, converted files and their metadata, the config check, `imagenet://`
and the conversion CLI. Nothing here reaches the network: downloads fail the test."""
import dataclasses
import hashlib
import importlib.util
import logging
import os
import pickle
from pathlib import Path

import pytest
import torch
import torchvision

from conftest import save_hub_named
from detectron2.config import get_cfg
from detectron2.utils.file_io import PathManager
from resnet_backbone.modeling import vgg
from resnet_backbone.weights import checkpoint, convert, imagenet, published as weights
from resnet_backbone.weights.checkpoint import (
    ResNetBackboneCheckpointer,
    WeightsConfigMismatchError,
    check_weights_match_config,
    make_metadata,
    read_metadata,
    save_converted,
)
from resnet_backbone.config import add_resnet_backbone_config
from resnet_backbone.weights.safe_load import HashMismatchError, read_checkpoint
from resnet_backbone.modeling.resnet import make_resnet

REPO = Path(__file__).resolve().parents[1]
TORCHVISION_PIXELS = dict(INPUT_FORMAT="RGB", PIXEL_MEAN=[123.675, 116.28, 103.53],
                          PIXEL_STD=[58.395, 57.12, 57.375])


# ------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------
def test_detectron2_defaults_are_the_msra_pixel_format():
    cfg = get_cfg()
    assert weights.find_pixel_format(cfg.INPUT.FORMAT, cfg.MODEL.PIXEL_MEAN,
                                     cfg.MODEL.PIXEL_STD) == "msra"
    assert weights.find_pixel_format("RGB", [103.53, 116.28, 123.675], [1, 1, 1]) is None


@pytest.mark.parametrize("name", sorted(weights.KNOWN_WEIGHTS))
def test_every_known_checkpoint_fits_a_config_of_its_pixel_format(name):
    """Each imagenet:// name has a converter, and its metadata (from the table, nothing is
    fetched) passes the check for a config of its own pixel format, depth and stride."""
    entry = weights.get_known_weights(name)
    assert entry.source in convert.CONVERTERS
    fmt = entry.pixel_format
    pixels = dict(INPUT_FORMAT=fmt.input_format, PIXEL_MEAN=fmt.pixel_mean, PIXEL_STD=fmt.pixel_std)
    if entry.arch == "vgg16":
        cfg = make_cfg(backbone="build_vgg16_backbone", pixels=pixels)
    else:
        cfg = make_cfg(depth=int(entry.arch[len("resnet"):]), pixels=pixels,
                       stride_in_1x1=fmt.stride_in_1x1)
    assert check_weights_match_config(cfg, f"imagenet://{name}")["arch"] == entry.arch


def test_unknown_imagenet_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="torchvision/resnet50"):
        weights.get_known_weights("torchvision/resnet51")


# ------------------------------------------------------------------------------------------
# Converted files
# ------------------------------------------------------------------------------------------
def test_save_and_read_metadata_round_trip(tmp_path):
    state_dict = {"stem.conv1.weight": torch.randn(64, 3, 7, 7)}
    metadata = make_metadata("resnet50", "torchvision", name="torchvision/resnet50")
    path = tmp_path / "sub" / "r50.pth"
    save_converted(path, state_dict, metadata)
    assert sorted(os.listdir(path.parent)) == ["r50.pth"]  # no temporary file left behind
    assert read_metadata(str(path)) == metadata
    assert metadata["stride_in_1x1"] is False and metadata["input_format"] == "RGB"
    data = torch.load(path, weights_only=True)
    assert data["matching_heuristics"] is True and data["__author__"] == "resnet_backbone"
    assert torch.equal(data["model"]["stem.conv1.weight"], state_dict["stem.conv1.weight"])


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "weights.pth"
    metadata = make_metadata("vgg16", "caffe-vgg16")
    save_converted(path, {"conv1_1.bias": torch.zeros(64)}, metadata)
    before = path.read_bytes()

    def killed(data, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_converted(path, {"conv1_1.bias": torch.ones(64)}, metadata)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["weights.pth"]


def test_save_refuses_pickle_extensions_and_bad_metadata(tmp_path):
    metadata = make_metadata("resnet18", "torchvision")
    with pytest.raises(ValueError, match="as .safetensors or .pth"):
        save_converted(tmp_path / "x.pkl", {}, metadata)
    with pytest.raises(ValueError, match="pixel_format"):
        save_converted(tmp_path / "x.pth", {}, {"arch": "resnet18", "source": "torchvision"})


def test_read_metadata_is_none_for_files_without_it(tmp_path):
    raw = tmp_path / "raw.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, raw)
    training = tmp_path / "model_final.pth"
    torch.save({"model": {"backbone.stem.conv1.weight": torch.zeros(1)}, "iteration": 9}, training)
    msra = tmp_path / "R-50.pkl"
    with open(msra, "wb") as f:
        pickle.dump({"blobs": {"conv1_w": 0}}, f)
    for path in (raw, training, msra):
        assert read_metadata(str(path)) is None
    meta = read_metadata("imagenet://msra/R-50")  # from the table, nothing is fetched
    assert (meta["arch"], meta["pixel_format"], meta["stride_in_1x1"]) == ("resnet50", "msra", True)


# ------------------------------------------------------------------------------------------
# The config check
# ------------------------------------------------------------------------------------------
def make_cfg(*, backbone="build_paper_resnet_backbone", depth=50, pixels=None, stride_in_1x1=None):
    cfg = get_cfg()
    add_resnet_backbone_config(cfg)
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.RESNETS.DEPTH = depth
    if depth < 50:  # the check builds the backbone (on the meta device): a valid ResNet-18/34
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
        cfg.MODEL.ROI_HEADS.NAME = "PaperRes5ROIHeads"
    if pixels:
        cfg.INPUT.FORMAT = pixels["INPUT_FORMAT"]
        cfg.MODEL.PIXEL_MEAN = list(pixels["PIXEL_MEAN"])
        cfg.MODEL.PIXEL_STD = list(pixels["PIXEL_STD"])
    if stride_in_1x1 is not None:
        cfg.MODEL.RESNETS.STRIDE_IN_1X1 = stride_in_1x1
    return cfg


def save_tiny(tmp_path, arch, source, name="w.pth"):
    path = tmp_path / name
    save_converted(path, {"stem.conv1.weight": torch.zeros(1)}, make_metadata(arch, source))
    return str(path)


def test_check_passes_for_matching_configs(tmp_path):
    tv = save_tiny(tmp_path, "resnet50", "torchvision", "tv.pth")
    cfg = make_cfg(pixels=TORCHVISION_PIXELS, stride_in_1x1=False)
    assert check_weights_match_config(cfg, tv)["source"] == "torchvision"
    msra = save_tiny(tmp_path, "resnet101", "msra", "msra.pth")
    cfg = make_cfg(depth=101)  # Detectron2's defaults are the MSRA format
    cfg.MODEL.WEIGHTS = msra
    assert check_weights_match_config(cfg)["pixel_format"] == "msra"
    vgg = save_tiny(tmp_path, "vgg16", "caffe-vgg16", "vgg.pth")
    cfg = make_cfg(backbone="build_vgg16_backbone",
                   pixels=dict(INPUT_FORMAT="BGR", PIXEL_MEAN=[103.939, 116.779, 123.68],
                               PIXEL_STD=[1.0, 1.0, 1.0]))
    check_weights_match_config(cfg, vgg)
    # ResNet-18/34 have no 1x1 conv to put the stride in: the flag does not matter there.
    r18 = save_tiny(tmp_path, "resnet18", "torchvision", "r18.pth")
    check_weights_match_config(make_cfg(depth=18, pixels=TORCHVISION_PIXELS), r18)
    # files without metadata, and no weights at all, pass unchecked
    raw = tmp_path / "raw.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, raw)
    assert check_weights_match_config(make_cfg(), str(raw)) is None
    assert check_weights_match_config(make_cfg(), "") is None


def test_check_names_both_pixel_formats(tmp_path):
    path = save_tiny(tmp_path, "resnet50", "torchvision")
    with pytest.raises(WeightsConfigMismatchError) as error:
        check_weights_match_config(make_cfg(stride_in_1x1=False), path)
    message = str(error.value)
    for text in (path, "converted from torchvision", "RGB", "[123.675, 116.28, 103.53]",
                 "[58.395, 57.12, 57.375]", "BGR", "[103.53, 116.28, 123.675]", "[1, 1, 1]",
                 "INPUT.FORMAT", "MODEL.PIXEL_MEAN", "MODEL.PIXEL_STD", "'msra'",
                 'set INPUT.FORMAT RGB MODEL.PIXEL_MEAN "[123.675, 116.28, 103.53]"'):
        assert text in message, text
    assert "STRIDE_IN_1X1" not in message
    assert isinstance(error.value, ValueError)


def test_check_names_stride_depth_and_backbone(tmp_path):
    tv = save_tiny(tmp_path, "resnet50", "torchvision", "tv.pth")
    with pytest.raises(WeightsConfigMismatchError,
                       match=r"3x3 conv but MODEL.RESNETS.STRIDE_IN_1X1=True.*"
                             r"MODEL.RESNETS.STRIDE_IN_1X1 False"):
        check_weights_match_config(make_cfg(pixels=TORCHVISION_PIXELS, stride_in_1x1=True), tv)
    with pytest.raises(WeightsConfigMismatchError, match="MODEL.RESNETS.DEPTH=101"):
        check_weights_match_config(
            make_cfg(depth=101, pixels=TORCHVISION_PIXELS, stride_in_1x1=False), tv)
    with pytest.raises(WeightsConfigMismatchError, match="builds a VGG backbone"):
        check_weights_match_config(
            make_cfg(backbone="build_vgg16_backbone", pixels=TORCHVISION_PIXELS), tv)


def test_checkpointer_stops_before_loading_mismatched_weights(tmp_path):
    torch.manual_seed(0)
    raw = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), raw)
    converted = str(tmp_path / "r18.pth")
    checkpoint.convert_file(str(raw), converted)

    model = make_resnet(18, stride_in_1x1=False, out_features=["res5"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bgr_cfg = make_cfg(depth=18)
    with pytest.raises(WeightsConfigMismatchError) as error:
        ResNetBackboneCheckpointer(model, cfg=bgr_cfg).load(converted)
    assert "RGB" in str(error.value) and "BGR" in str(error.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    ResNetBackboneCheckpointer(model, cfg=make_cfg(depth=18, pixels=TORCHVISION_PIXELS)).load(
        converted)
    assert not torch.equal(before["stem.conv1.weight"], model.state_dict()["stem.conv1.weight"])


@pytest.mark.parametrize(
    "config", sorted((REPO / "configs").rglob("*.yaml")),
    ids=lambda p: str(p.relative_to(REPO / "configs")),
)
def test_shipped_configs_fit_their_weights(config):
    """Every config's pixel format, stride placement and depth agree with its MODEL.WEIGHTS
    (imagenet:// names are checked against the table; nothing is fetched)."""
    import resnet_backbone.classification  # noqa: F401 (the classifiers' configs need their keys)
    from resnet_backbone import model_zoo

    cfg = model_zoo.get_config(str(config.relative_to(REPO / "configs")))
    check_weights_match_config(cfg)


def test_corrupt_or_truncated_weights_stop_with_the_file_named(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    truncated = tmp_path / "truncated.pth"
    save_converted(truncated, {"stem.conv1.weight": torch.zeros(64, 3, 7, 7)},
                   make_metadata("resnet50", "msra"))
    truncated.write_bytes(truncated.read_bytes()[:200])
    pickled = tmp_path / "R-50.pkl"
    pickled.write_bytes(b"\x80\x02not a pickle")
    for path in (garbage, truncated, pickled):
        with pytest.raises(ValueError, match=f"MODEL.WEIGHTS: {path} is not a readable checkpoint"):
            check_weights_match_config(make_cfg(), str(path))


def test_weights_that_are_a_directory_or_absent_stop_with_the_path_named(tmp_path):
    (tmp_path / "model_final.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=f"{tmp_path} is a directory.*model_final.pth"):
        check_weights_match_config(make_cfg(), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="absent.pth does not exist"):
        check_weights_match_config(make_cfg(), str(tmp_path / "absent.pth"))


class Detector(torch.nn.Module):
    """The `backbone` name a GeneralizedRCNN gives, around a bare backbone."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone


def save_training_checkpoint(path, backbone):
    """A Detectron2 training checkpoint: no metadata, names of the whole detector."""
    torch.save({"model": {f"backbone.{k}": v for k, v in backbone.state_dict().items()},
                "iteration": 9}, path)
    return str(path)


def test_checkpoint_of_another_depth_is_an_error_listing_what_it_would_not_fill(tmp_path,
                                                                                  caplog):
    r18 = make_resnet(18, out_features=["res3"])
    path = save_training_checkpoint(tmp_path / "r18.pth", r18)
    model = Detector(make_resnet(50, out_features=["res3"]))
    in_file = {k: v.shape for k, v in r18.state_dict().items()}
    weights = {k: v.shape for k, v in model.backbone.state_dict().items()
               if k.endswith((".weight", ".bias"))}
    not_loaded = [k for k, shape in weights.items() if in_file.get(k) != shape]
    assert 0 < len(not_loaded) < len(weights)  # a partial fill
    with pytest.raises(ValueError) as error:
        ResNetBackboneCheckpointer(model, cfg=make_cfg()).load(path)
    message = str(error.value)
    assert f"{len(not_loaded)} of the {len(weights)} weights and biases of the backbone" in message
    assert path in message and "ALLOW_PARTIAL_WEIGHTS" in message
    assert f"backbone.{not_loaded[0]}" in message

    # explicitly allowed: loads what fits, with the same count as a warning
    cfg = make_cfg()
    cfg.MODEL.RESNET_BACKBONE.ALLOW_PARTIAL_WEIGHTS = True
    model = Detector(make_resnet(50, out_features=["res3"]))
    with caplog.at_level(logging.WARNING, logger="resnet_backbone.weights.checkpoint"):
        ResNetBackboneCheckpointer(model, cfg=cfg).load(path)
    message = " ".join(r.getMessage() for r in caplog.records)
    assert f"{len(not_loaded)} of the {len(weights)} weights and biases" in message
    assert torch.equal(model.backbone.stem.conv1.weight, r18.stem.conv1.weight)


def test_checkpoint_filling_none_of_the_backbone_is_an_error(tmp_path):
    path = save_training_checkpoint(tmp_path / "vgg.pth", vgg.make_vgg16(out_features=["conv2"]))
    model = Detector(make_resnet(18, out_features=["res2"]))
    with pytest.raises(ValueError, match=r"(\d+) of the \1 weights and biases .*vgg.pth"):
        ResNetBackboneCheckpointer(model, cfg=make_cfg(depth=18)).load(path)


# ------------------------------------------------------------------------------------------
# imagenet://
# ------------------------------------------------------------------------------------------
@pytest.fixture
def offline_caches(tmp_path, monkeypatch):
    """Private torch hub / Detectron2 / converted caches; any download fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "fvcore"))
    monkeypatch.setenv("RESNET_BACKBONE_CACHE", str(tmp_path / "converted"))
    monkeypatch.setattr(imagenet, "_iopath_cache_dirs", lambda: [str(tmp_path / "fvcore")])
    downloads = []

    def no_network(url, *args, hash_prefix=None, **kwargs):
        downloads.append((url, hash_prefix))
        raise RuntimeError("tests must not download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path, downloads


def hub_entry_for(monkeypatch, name, raw):
    """Make the table entry `name` publish `raw` (a file named as torch hub names downloads,
    seeded weights standing in for the real ones): its URL's file name and sha256 prefix."""
    entry = weights.KNOWN_WEIGHTS[name]
    url = entry.url.rsplit("/", 1)[0] + "/" + raw.name
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, name, dataclasses.replace(
        entry, url=url, sha256_prefix=raw.stem.rsplit("-", 1)[1]))


def test_imagenet_name_resolves_from_torch_hub_cache(offline_caches, monkeypatch):
    tmp_path, downloads = offline_caches
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    raw = save_hub_named(torchvision.models.resnet18().state_dict(), hub, "resnet18")
    hub_entry_for(monkeypatch, "torchvision/resnet18", raw)

    local = PathManager.get_local_path("imagenet://torchvision/resnet18")
    assert Path(local).parent == tmp_path / "converted"
    metadata = read_metadata(local)
    assert (metadata["arch"], metadata["source"], metadata["name"]) == (
        "resnet18", "torchvision", "torchvision/resnet18")
    assert metadata["converted_from"] == raw.name
    assert PathManager.isfile("imagenet://torchvision/resnet18")
    mtime = os.path.getmtime(local)
    assert PathManager.get_local_path("imagenet://torchvision/resnet18") == local
    assert os.path.getmtime(local) == mtime  # served from the cache, not converted again

    # MODEL.WEIGHTS: imagenet://... through the checkpointer, checked against the config
    model = make_resnet(18, stride_in_1x1=False, out_features=["res5"])
    cfg = make_cfg(depth=18, pixels=TORCHVISION_PIXELS)
    ResNetBackboneCheckpointer(model, cfg=cfg).load("imagenet://torchvision/resnet18")
    assert local.endswith(".safetensors")
    expected = read_checkpoint(local)["model"]["res5.1.conv2.weight"]
    assert torch.equal(model.res5[1].conv2.weight, expected)
    with pytest.raises(WeightsConfigMismatchError):
        ResNetBackboneCheckpointer(model, cfg=make_cfg(depth=18)).load(
            "imagenet://torchvision/resnet18")
    assert downloads == []


def test_imagenet_file_not_matching_the_hash_in_its_name_is_refused(offline_caches):
    tmp_path, downloads = offline_caches
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    planted = hub / "resnet18-f37072fd.pth"  # torchvision's name, random weights
    torch.save(torchvision.models.resnet18().state_dict(), planted)
    with pytest.raises(HashMismatchError) as error:
        PathManager.get_local_path("imagenet://torchvision/resnet18")
    actual = hashlib.sha256(planted.read_bytes()).hexdigest()[:8]
    assert str(planted) in str(error.value)
    assert "f37072fd" in str(error.value) and actual in str(error.value)
    assert not list((tmp_path / "converted").glob("*.safetensors"))
    model = make_resnet(18, stride_in_1x1=False, out_features=["res5"])
    with pytest.raises(HashMismatchError, match="f37072fd"):  # named as MODEL.WEIGHTS
        ResNetBackboneCheckpointer(model).load(str(planted))
    assert downloads == []


def test_imagenet_msra_name_resolves_from_detectron2_cache(offline_caches):
    from test_convert import fake_msra_blobs

    tmp_path, downloads = offline_caches
    cached = tmp_path / "fvcore" / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-50.pkl"
    cached.parent.mkdir(parents=True)
    with open(cached, "wb") as f:
        pickle.dump({"blobs": fake_msra_blobs(50, with_stats=True)}, f)
    local = PathManager.get_local_path("imagenet://msra/R-50")
    metadata = read_metadata(local)
    assert (metadata["arch"], metadata["pixel_format"], metadata["stride_in_1x1"]) == (
        "resnet50", "msra", True)
    assert downloads == []


def test_imagenet_name_without_cache_and_network_says_where_to_put_the_file(offline_caches):
    tmp_path, downloads = offline_caches
    with pytest.raises(OSError, match="resnet34-b627a593.pth"):
        PathManager.get_local_path("imagenet://torchvision/resnet34")
    # torchvision's file names carry the sha256 prefix the download is verified with
    assert downloads == [("https://download.pytorch.org/models/resnet34-b627a593.pth", "b627a593")]
    with pytest.raises(ValueError, match="known"):
        PathManager.get_local_path("imagenet://torchvision/resnet51")


def test_handler_registration_is_idempotent():
    handler = imagenet.register_imagenet_handler()
    assert imagenet.register_imagenet_handler() is handler
    assert PathManager._path_handlers["imagenet://"] is handler


def test_importing_the_package_registers_imagenet_names(fresh_import):
    assert fresh_import["imagenet_name_is_a_file"] is True  # in a fresh interpreter


# ------------------------------------------------------------------------------------------
# The CLI
# ------------------------------------------------------------------------------------------
def load_cli():
    spec = importlib.util.spec_from_file_location(
        "convert_pretrained", REPO / "tools" / "convert_pretrained.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_converts_prints_config_keys_and_refuses_to_overwrite(tmp_path, capsys):
    cli = load_cli()
    torch.manual_seed(0)
    raw = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), raw)
    output = tmp_path / "out.pth"
    assert cli.main([str(raw), "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    for text in ("architecture: resnet34", "pixel format: torchvision", "FORMAT: RGB",
                 "PIXEL_MEAN: [123.675, 116.28, 103.53]", "PIXEL_STD: [58.395, 57.12, 57.375]",
                 "DEPTH: 34", "RESIDUAL: True", "SHORTCUT: B", "INPUT.FORMAT RGB"):
        assert text in printed, text
    assert "STRIDE_IN_1X1" not in printed  # basic blocks have no 1x1 conv to put it in
    assert read_metadata(str(output))["arch"] == "resnet34"

    before = output.read_bytes()
    assert cli.main([str(raw), "--output", str(output)]) == 1
    assert "--force" in capsys.readouterr().err
    assert output.read_bytes() == before
    assert cli.main([str(raw), "--output", str(output), "--force", "--source", "torchvision"]) == 0

    assert cli.main([str(raw), "--output", str(tmp_path / "x.pth"), "--source", "msra"]) == 1
    assert "unknown key" in capsys.readouterr().err
    assert cli.main(["--list"]) == 0
    assert "msra/R-101" in capsys.readouterr().out
