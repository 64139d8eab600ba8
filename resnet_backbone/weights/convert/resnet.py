"""torchvision and MSRA (Caffe2) ResNet checkpoints -> Detectron2's ResNet names."""
import re

import torch

from .strict import expected_shapes, rename, resnet_depth, to_tensor

# eps of Detectron2's FrozenBatchNorm2d and of torch's BatchNorm2d (both 1e-5).
BN_EPS = 1e-5

def _depth(what, keys, pattern, first_stage, third_conv, source_name, ignored):
    """`strict.resnet_depth`, failing with the keys that are neither stem, block nor ignored."""
    try:
        return resnet_depth(keys, pattern, first_stage, third_conv)
    except ValueError as error:
        stem = {source_name(k) for k in expected_shapes("resnet18") if k.startswith("stem.")}
        unknown = sorted(k for k in keys if not (re.match(pattern, k) or k in stem or ignored(k)))
        extra = f"; {len(unknown)} unknown key(s): {', '.join(unknown)}" if unknown else ""
        raise ValueError(f"cannot convert this {what} checkpoint: {error}{extra}") from None


def _torchvision_name(name):
    """torchvision's key of a package key: `res3.0.conv2.norm.bias` -> `layer2.0.bn2.bias`."""
    if name.startswith("stem."):
        return name.replace("stem.conv1.norm", "bn1").replace("stem.conv1", "conv1")
    stage, block, rest = name.split(".", 2)
    rest = re.sub(r"^conv(\d)\.norm\.", r"bn\1.", rest)
    rest = rest.replace("shortcut.norm.", "downsample.1.").replace("shortcut.", "downsample.0.")
    return f"layer{int(stage[3]) - 1}.{block}.{rest}"


def convert_torchvision_resnet(state_dict):
    """torchvision `resnet18` .. `resnet152` -> package names, statistics unchanged (eps is
    1e-5 in both), so a model with `stride_in_1x1=False` computes what torchvision's does."""
    def ignored(key):
        return key.startswith("fc.") or key.endswith(".num_batches_tracked")

    what = "torchvision ResNet"
    depth = _depth(what, state_dict, r"layer([1-4])\.(\d+)\.", 1, ".conv3.", _torchvision_name,
                   ignored)
    return rename(what, state_dict, f"resnet{depth}", _torchvision_name, ignored)


_C2_BRANCH = {"shortcut": "branch1", "conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c"}
_C2_BN = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}


def _msra_name(name):
    """Caffe2's key of a package key: `res2.0.conv1.norm.running_var` -> `res2_0_branch2a_bn_riv`,
    `stem.conv1.weight` -> `conv1_w`."""
    parts = name.split(".")
    if parts[0] == "stem":
        return "conv1_w" if parts[2] == "weight" else f"res_conv1_bn_{_C2_BN[parts[3]]}"
    prefix = f"{parts[0]}_{parts[1]}_{_C2_BRANCH[parts[2]]}"
    return f"{prefix}_w" if parts[3] == "weight" else f"{prefix}_bn_{_C2_BN[parts[4]]}"


def convert_msra_resnet(blobs):
    """Caffe2 blobs of MSRA's ResNets (Detectron's / Detectron2's R-50.pkl, R-101.pkl) ->
    package names.

    Detectron's files hold only the fused affine of each BatchNorm (`x * s + b`): running_mean
    0 and running_var 1 - eps make BatchNorm compute exactly that (also what Detectron2's
    FrozenBatchNorm2d starts from; it leaves a converted file's running_var as written). Where
    the file has the statistics (`_bn_rm`, `_bn_riv`: Detectron2's files) they are used. A conv
    bias (MSRA's conv1 has one, Detectron's files one on every conv) is folded exactly into the
    running mean (mean - bias). `fc1000_*` and `*_momentum` are dropped."""
    def ignored(key):
        return key.endswith("_momentum") or key.startswith("fc1000_")

    depth = _depth("MSRA ResNet", blobs, r"res([2-5])_(\d+)_", 2, "branch2c", _msra_name,
                   lambda key: ignored(key) or key == "conv1_b")
    blobs, biases = dict(blobs), {}
    for name, shape in expected_shapes(f"resnet{depth}").items():
        if name.endswith(".weight") and ".norm." not in name:
            key = _msra_name(name)[: -len("_w")] + "_b"
            if key in blobs:
                mean = name[: -len("weight")] + "norm.running_mean"
                biases[mean] = to_tensor(key, blobs.pop(key))
        elif name.endswith("running_mean"):
            mean, var = _msra_name(name), _msra_name(name.replace("mean", "var"))
            if mean not in blobs and var not in blobs:
                blobs[mean] = torch.zeros(shape)
                blobs[var] = torch.full(shape, 1.0 - BN_EPS)
    converted = rename("MSRA ResNet", blobs, f"resnet{depth}", _msra_name, ignored)
    for name, bias in biases.items():
        converted[name] = converted[name] - bias
    return converted
