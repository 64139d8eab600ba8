"""Converters: exact names and shapes, strictness, and equivalence with the source networks
when the converted file is loaded the way users load it (Detectron2's DetectionCheckpointer)."""
import pickle

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from conftest import fast_subset
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from resnet_backbone.weights import convert
from resnet_backbone.weights.checkpoint import convert_file, read_checkpoint, read_metadata
from resnet_backbone.modeling.resnet import make_resnet

DEPTHS = (18, 34, 50, 101, 152)
STAGE_OUTPUTS = ["res2", "res3", "res4", "res5"]


def meta_torchvision_resnet(depth):
    with torch.device("meta"):
        return getattr(torchvision.models, f"resnet{depth}")().state_dict()


def meta_package_resnet(depth):
    with torch.device("meta"):
        return make_resnet(depth, stride_in_1x1=False, out_features=["res5"]).state_dict()


def meta_torchvision_vgg16():
    with torch.device("meta"):
        return torchvision.models.vgg16().state_dict()


def assert_error_lists(error, *names):
    message = str(error.value)
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    positions = [message.index(name) for name in names]
    assert positions == sorted(positions), "names are not listed in sorted order"


# ------------------------------------------------------------------------------------------
# torchvision ResNet
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", DEPTHS)
def test_torchvision_resnet_names_and_shapes(depth):
    converted = convert.convert_torchvision_resnet(meta_torchvision_resnet(depth))
    expected = meta_package_resnet(depth)
    assert set(converted) == set(expected)
    for key, value in converted.items():
        assert value.shape == expected[key].shape, key
    assert not any(k.endswith("num_batches_tracked") or k.startswith("fc") for k in converted)
    assert convert.infer_arch(converted) == f"resnet{depth}"
    assert convert.detect_source(meta_torchvision_resnet(depth)) == "torchvision"


def test_torchvision_resnet_lists_every_unknown_and_missing_key():
    state_dict = dict(meta_torchvision_resnet(50))
    state_dict["zzz.extra"] = torch.zeros(1)
    state_dict["aaa.extra"] = torch.zeros(1)
    del state_dict["layer3.2.bn2.running_var"]
    del state_dict["layer1.0.downsample.0.weight"]
    with pytest.raises(ValueError) as error:
        convert.convert_torchvision_resnet(state_dict)
    assert_error_lists(error, "aaa.extra", "zzz.extra")
    assert_error_lists(error, "layer1.0.downsample.0.weight", "layer3.2.bn2.running_var")


def test_torchvision_resnet_unknown_layout_names_it():
    state_dict = {
        k: v for k, v in meta_torchvision_resnet(50).items() if not k.startswith("layer3.5.")
    }
    with pytest.raises(ValueError, match=r"bottleneck \(3, 4, 5, 3\)"):
        convert.convert_torchvision_resnet(state_dict)


def test_torchvision_resnext_is_rejected_by_shape():
    with torch.device("meta"):
        state_dict = torchvision.models.resnext50_32x4d().state_dict()
    with pytest.raises(ValueError, match=r"wrong shape: layer1.0.bn1.bias \(128,\)"):
        convert.convert_torchvision_resnet(state_dict)


def test_already_converted_checkpoint_is_recognised():
    with pytest.raises(ValueError, match="already uses this package's names"):
        convert.convert_checkpoint(meta_package_resnet(18))


# ------------------------------------------------------------------------------------------
# MSRA / Caffe2 ResNet
# ------------------------------------------------------------------------------------------
def to_msra_name(name):
    """Caffe2 name of a package key, written independently of convert.py."""
    branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}
    suffix = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}
    parts = name.split(".")
    if parts[0] == "stem":
        return "conv1_w" if parts[2] == "weight" else f"res_conv1_bn_{suffix[parts[3]]}"
    stage, block, conv = parts[:3]
    prefix = f"{stage}_{block}_{branch[conv]}"
    return f"{prefix}_w" if parts[3] == "weight" else f"{prefix}_bn_{suffix[parts[4]]}"


def fake_msra_blobs(depth, *, with_stats, seed=0):
    """Random Caffe2 blobs of ResNet-`depth` named as in Detectron(2)'s R-*.pkl."""
    rng = np.random.default_rng(seed)
    blobs = {}
    for key, value in meta_package_resnet(depth).items():
        if not with_stats and key.endswith(("running_mean", "running_var")):
            continue
        if key.endswith("running_var"):
            array = rng.uniform(0.5, 2.0, size=value.shape)
        else:
            array = rng.normal(0.0, 0.1, size=value.shape)
        blobs[to_msra_name(key)] = array.astype(np.float32)
    blobs["conv1_b"] = rng.normal(0.0, 0.1, size=64).astype(np.float32)  # MSRA's conv1 bias
    blobs["fc1000_w"] = rng.normal(size=(1000, 2048)).astype(np.float32)
    blobs["fc1000_b"] = rng.normal(size=1000).astype(np.float32)
    blobs["res2_0_branch2a_w_momentum"] = np.zeros(1, np.float32)
    return blobs


# Both wrappers with both kinds of BatchNorm under `make test`; each wrapper and each kind once
# in the fast subset.
@pytest.mark.parametrize("wrapper, with_stats", fast_subset(
    [("blobs", False), ("blobs", True), ("detectron2-zoo", False), ("detectron2-zoo", True)],
    fast=[("blobs", False), ("detectron2-zoo", True)]),
    ids=["blobs-fused-affine", "blobs-with-stats", "detectron2-zoo-fused-affine",
         "detectron2-zoo-with-stats"])
def test_msra_pickle_gives_expected_tensors(tmp_path, wrapper, with_stats):
    blobs = fake_msra_blobs(50, with_stats=with_stats)
    if wrapper == "blobs":
        data = {"blobs": blobs}
    else:
        data = {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f)

    result = convert.convert_checkpoint(read_checkpoint(str(path)))
    assert (result.source, result.arch) == ("msra", "resnet50")
    converted = result.state_dict
    assert set(converted) == set(meta_package_resnet(50))

    def t(name):
        return torch.from_numpy(blobs[name])

    eps = convert.BN_EPS
    torch.testing.assert_close(converted["stem.conv1.weight"], t("conv1_w"), rtol=0, atol=0)
    torch.testing.assert_close(converted["res3.0.shortcut.norm.weight"], t("res3_0_branch1_bn_s"))
    torch.testing.assert_close(converted["res5.2.conv3.norm.bias"], t("res5_2_branch2c_bn_b"))
    torch.testing.assert_close(converted["res4.5.conv2.weight"], t("res4_5_branch2b_w"))
    if with_stats:
        torch.testing.assert_close(converted["res2.1.conv1.norm.running_mean"],
                                   t("res2_1_branch2a_bn_rm"))
        torch.testing.assert_close(converted["res2.1.conv1.norm.running_var"],
                                   t("res2_1_branch2a_bn_riv"))
        stem_mean = t("res_conv1_bn_rm") - t("conv1_b")
    else:
        torch.testing.assert_close(converted["res2.1.conv1.norm.running_mean"], torch.zeros(64))
        torch.testing.assert_close(converted["res2.1.conv1.norm.running_var"],
                                   torch.full((64,), 1 - eps))
        stem_mean = -t("conv1_b")
    torch.testing.assert_close(converted["stem.conv1.norm.running_mean"], stem_mean)


def test_msra_fused_affine_is_exact_after_detectron2_loading(tmp_path):
    """s/b-only BatchNorm must compute x * s + b (conv1's bias included) once the file is
    loaded through DetectionCheckpointer into FrozenBN: no eps slips in."""
    blobs = fake_msra_blobs(50, with_stats=False, seed=1)
    raw = tmp_path / "R-50.pkl"
    with open(raw, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    converted_path = str(tmp_path / "R-50.pth")
    convert_file(str(raw), converted_path)
    assert read_metadata(converted_path)["pixel_format"] == "msra"

    model = make_resnet(50, stride_in_1x1=True, norm="FrozenBN", out_features=["stem"]).eval()
    DetectionCheckpointer(model).load(converted_path)
    norm = model.stem.conv1.norm
    assert isinstance(norm, FrozenBatchNorm2d)

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 50
    weight, bias = torch.from_numpy(blobs["conv1_w"]), torch.from_numpy(blobs["conv1_b"])
    scale = torch.from_numpy(blobs["res_conv1_bn_s"]).view(1, -1, 1, 1)
    shift = torch.from_numpy(blobs["res_conv1_bn_b"]).view(1, -1, 1, 1)
    caffe = (nn.functional.conv2d(x, weight, bias, stride=2, padding=3) * scale + shift).relu()
    caffe = nn.functional.max_pool2d(caffe, kernel_size=3, stride=2, padding=1)
    with torch.no_grad():
        ours = model(x)["stem"]
    torch.testing.assert_close(ours, caffe, rtol=1e-5, atol=1e-5 * caffe.abs().max().item())


def test_msra_strictness_lists_everything():
    blobs = fake_msra_blobs(50, with_stats=True)
    blobs["res9_0_branch2a_w"] = blobs.pop("res3_0_branch1_w")  # unknown + missing
    blobs["pred_w"] = np.zeros(3, np.float32)
    del blobs["res4_2_branch2b_bn_riv"]  # an unpaired statistic
    with pytest.raises(ValueError) as error:
        convert.convert_msra_resnet(blobs)
    assert_error_lists(error, "pred_w", "res9_0_branch2a_w")
    assert_error_lists(error, "res3_0_branch1_w", "res4_2_branch2b_bn_riv")


def test_msra_unknown_layout_names_it():
    blobs = {k: v for k, v in fake_msra_blobs(50, with_stats=False).items()
             if not k.startswith("res4_5_")}
    with pytest.raises(ValueError, match=r"bottleneck \(3, 4, 5, 3\)"):
        convert.convert_msra_resnet(blobs)


# ------------------------------------------------------------------------------------------
# VGG-16
# ------------------------------------------------------------------------------------------
VGG16_NAMES = {f"conv{block}_{conv}.{field}" for block, convs in enumerate((2, 2, 3, 3, 3), 1)
               for conv in range(1, convs + 1) for field in ("weight", "bias")} | {
                   "fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}


def test_torchvision_vgg16_names_and_shapes():
    source = meta_torchvision_vgg16()
    converted = convert.convert_torchvision_vgg16(source)
    assert set(converted) == VGG16_NAMES
    assert converted["fc6.weight"].shape == source["classifier.0.weight"].shape == (4096, 25088)
    assert converted["fc7.weight"].shape == (4096, 4096)
    assert converted["conv5_3.weight"].shape == source["features.28.weight"].shape
    assert convert.infer_arch(converted) == "vgg16"
    assert convert.detect_source(source) == "torchvision-vgg16"


def test_torchvision_vgg16_strictness():
    source = dict(meta_torchvision_vgg16())
    del source["features.12.bias"]
    del source["classifier.3.weight"]
    source["features.1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError) as error:
        convert.convert_torchvision_vgg16(source)
    assert_error_lists(error, "features.1.weight")
    assert_error_lists(error, "classifier.3.weight", "features.12.bias")
    with torch.device("meta"):
        batchnorm_vgg = torchvision.models.vgg16_bn().state_dict()
    with pytest.raises(ValueError, match="unknown key"):
        convert.convert_torchvision_vgg16(batchnorm_vgg)


def fake_caffe_vgg16_blobs(*, fc6_4d=False):
    blobs = {}
    for name, shape in convert.expected_shapes("vgg16").items():
        layer, field = name.split(".")
        if name == "fc6.weight" and fc6_4d:
            shape = (4096, 512, 7, 7)
        blobs[f"{layer}_{'w' if field == 'weight' else 'b'}"] = np.zeros(shape, np.float32)
    blobs["fc8_w"] = np.zeros((1000, 4096), np.float32)
    blobs["fc8_b"] = np.zeros(1000, np.float32)
    return blobs


@pytest.mark.parametrize("fc6_4d", [False, True])
def test_caffe_vgg16_names_and_shapes(fc6_4d):
    blobs = fake_caffe_vgg16_blobs(fc6_4d=fc6_4d)
    blobs["conv3_2_w"][:] = np.arange(256, dtype=np.float32).reshape(256, 1, 1, 1)
    result = convert.convert_checkpoint({"blobs": blobs})
    assert (result.source, result.arch) == ("caffe-vgg16", "vgg16")
    assert set(result.state_dict) == VGG16_NAMES
    assert result.state_dict["fc6.weight"].shape == (4096, 25088)
    assert torch.equal(result.state_dict["conv3_2.weight"], torch.from_numpy(blobs["conv3_2_w"]))


def test_caffe_vgg16_strictness():
    blobs = fake_caffe_vgg16_blobs()
    del blobs["conv4_1_b"]
    del blobs["fc7_w"]
    blobs["conv6_1_w"] = np.zeros(1, np.float32)
    blobs["conv1_1_w"] = np.zeros((64, 3, 5, 5), np.float32)
    with pytest.raises(ValueError) as error:
        convert.convert_caffe_vgg16(blobs)
    assert_error_lists(error, "conv6_1_w")
    assert_error_lists(error, "conv4_1_b", "fc7_w")
    assert "conv1_1_w (64, 3, 5, 5) (expected (64, 3, 3, 3))" in str(error.value)


# ------------------------------------------------------------------------------------------
# Equivalence with torchvision through the path users take
# ------------------------------------------------------------------------------------------
def randomize_batchnorm(model, generator):
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = torch.rand(n, generator=generator) + 0.5
            module.bias.data = torch.randn(n, generator=generator) * 0.1
            module.running_mean.data = torch.randn(n, generator=generator) * 0.1
            module.running_var.data = torch.rand(n, generator=generator) + 0.5
    return model


def torchvision_stages(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outputs = {}
    for index, layer in enumerate((model.layer1, model.layer2, model.layer3, model.layer4)):
        x = layer(x)
        outputs[f"res{index + 2}"] = x
    return outputs


# Every depth under `make test`; one of each block type (and BN) in the fast subset.
@pytest.mark.parametrize("depth, norm", fast_subset(
    [(d, "FrozenBN") for d in DEPTHS] + [(50, "BN")],
    fast=[(18, "FrozenBN"), (50, "FrozenBN"), (50, "BN")]))
def test_converted_torchvision_resnet_matches_torchvision(tmp_path, depth, norm):
    generator = torch.Generator().manual_seed(depth)
    torch.manual_seed(depth)
    reference = randomize_batchnorm(getattr(torchvision.models, f"resnet{depth}")(), generator)
    reference.eval()
    raw = tmp_path / f"resnet{depth}.pth"
    torch.save(reference.state_dict(), raw)
    converted_path = str(tmp_path / f"resnet{depth}-converted.pth")
    convert_file(str(raw), converted_path)

    model = make_resnet(depth, stride_in_1x1=False, norm=norm, out_features=STAGE_OUTPUTS)
    model.eval()
    DetectionCheckpointer(model).load(converted_path)
    loaded = torch.load(converted_path, weights_only=True)["model"]
    state = model.state_dict()
    for key, value in loaded.items():  # every tensor arrived unchanged
        assert torch.equal(state[key], value), key

    x = torch.randn(2, 3, 64, 64, generator=generator) * 50
    with torch.no_grad():
        expected = torchvision_stages(reference, x)
        ours = model(x)
    for name in STAGE_OUTPUTS:
        scale = expected[name].abs().max().item()
        torch.testing.assert_close(ours[name], expected[name], rtol=1e-5, atol=1e-5 * scale)


def torchvision_vgg16_features(generator):
    """torchvision's vgg16().features with random weights (built without the 120M-parameter
    classifier, whose random init alone takes seconds)."""
    with torch.device("meta"):
        features = torchvision.models.vgg16().features
    features = features.to_empty(device="cpu")
    for module in features.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            module.weight.data = torch.randn(module.weight.shape, generator=generator)
            module.weight.data *= (2.0 / fan_in) ** 0.5
            module.bias.data = torch.randn(module.bias.shape, generator=generator) * 0.1
    return features


def cheap_vgg16_classifier_state(generator):
    """classifier.{0,3,6} tensors without 120M parameters of storage: every row of a weight is
    the same random vector (expanded), so each input position still has its own weight and a
    wrong flattening order would change the outputs."""
    def rows(out_features, in_features):
        return (torch.rand(in_features, generator=generator) - 0.5).expand(out_features, -1)

    return {
        "classifier.0.weight": rows(4096, 25088),
        "classifier.0.bias": torch.randn(4096, generator=generator),
        "classifier.3.weight": rows(4096, 4096),
        "classifier.3.bias": torch.randn(4096, generator=generator),
        "classifier.6.weight": rows(1000, 4096),
        "classifier.6.bias": torch.randn(1000, generator=generator),
    }


def write_converted_vgg16(tmp_path, features, generator):
    """Save `features` plus a cheap classifier as a raw torchvision VGG-16 file, convert it
    with `convert_file`; returns the converted file's path and the raw state dict."""
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state.update(cheap_vgg16_classifier_state(generator))
    raw = tmp_path / "vgg16.pth"
    torch.save(state, raw)
    converted_path = str(tmp_path / "vgg16-converted.pth")
    convert_file(str(raw), converted_path)
    return converted_path, state


def test_converted_torchvision_vgg16_matches_torchvision_conv5_3(tmp_path):
    vgg = pytest.importorskip("resnet_backbone.modeling.vgg")
    generator = torch.Generator().manual_seed(16)
    features = torchvision_vgg16_features(generator).eval()
    converted_path, _ = write_converted_vgg16(tmp_path, features, generator)
    assert read_metadata(converted_path)["arch"] == "vgg16"

    model = vgg.make_vgg16(out_features=["conv5"], freeze_at=0).eval()
    DetectionCheckpointer(model).load(converted_path)
    x = torch.randn(1, 3, 64, 64, generator=generator) * 50
    with torch.no_grad():
        expected = features[:-1](x)  # everything but pool5
        ours = model(x)["conv5"]
    scale = expected.abs().max().item()
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5 * scale)


def test_converted_vgg16_fc6_fc7_land_in_the_box_head(tmp_path):
    """fc6/fc7 reach `roi_heads.box_head` by Detectron2's suffix matching and compute what
    torchvision's classifier computes on the same pooled 512x7x7 RoIs (C, H, W flattening)."""
    box_head_module = pytest.importorskip("resnet_backbone.modeling.fc_box_head")
    vgg = pytest.importorskip("resnet_backbone.modeling.vgg")
    generator = torch.Generator().manual_seed(7)
    features = torchvision_vgg16_features(generator)
    converted_path, state = write_converted_vgg16(tmp_path, features, generator)

    class Detector(nn.Module):  # the names GeneralizedRCNN + StandardROIHeads give
        def __init__(self):
            super().__init__()
            self.backbone = vgg.make_vgg16(out_features=["conv5"], freeze_at=2)
            self.roi_heads = nn.Module()
            self.roi_heads.box_head = box_head_module.VGG16BoxHead(
                ShapeSpec(channels=512, height=7, width=7), fc_dim=4096, dropout=0.5
            )

    model = Detector().eval()
    DetectionCheckpointer(model).load(converted_path)
    for ours, theirs in (("fc6", "classifier.0"), ("fc7", "classifier.3")):
        layer = getattr(model.roi_heads.box_head, ours)
        assert torch.equal(layer.weight, state[f"{theirs}.weight"])
        assert torch.equal(layer.bias, state[f"{theirs}.bias"])

    rois = torch.randn(3, 512, 7, 7, generator=generator)
    linear = nn.functional.linear
    with torch.no_grad():
        expected = linear(torch.flatten(rois, 1), state["classifier.0.weight"],
                          state["classifier.0.bias"]).relu()
        expected = linear(expected, state["classifier.3.weight"],
                          state["classifier.3.bias"]).relu()
        ours = model.roi_heads.box_head(rois)
    # Sums of 25088 products: only the accumulation order may differ.
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    with torch.no_grad():  # the same RoIs flattened (H, W, C) would give other numbers
        shuffled = model.roi_heads.box_head(rois.permute(0, 2, 3, 1).reshape(3, 512, 7, 7))
    assert not torch.allclose(shuffled, expected, rtol=1e-2)
