"""The fast path: switches under MODEL.FAST_PATH that make the same detector cheaper to run.

Each switch is off by default and leaves the model's parameters, buffers and their names as they
are, so checkpoints load into and save from a fast-path model exactly as from a default one:

* FOLD_FROZEN_BN: every convolution followed by a FrozenBatchNorm2d (or by a BatchNorm2d in eval
  mode, i.e. everywhere at inference) applies the norm through its own weight and bias. The fold
  is recomputed from the current values on every forward (a cost proportional to the weights,
  not to the activations), so weights loaded at any time are used, and the stored tensors stay
  the unfolded ones.
* CHANNELS_LAST: the backbone and the res5 head (C4) keep weights and activations NHWC.
* AUTOCAST: the backbone and the res5 head run under torch.autocast in bfloat16 or float16; their
  outputs return as float32, so the RPN, the box predictor and the losses stay in float32.
  float16 needs loss scaling, which Detectron2's AMPTrainer does (SOLVER.AMP.ENABLED, CUDA only).
* COMPILE: torch.compile (dynamic shapes) of the backbone and of the res5 head, in place.
"""
import functools

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import Conv2d, FrozenBatchNorm2d

AUTOCAST_DTYPES = {"": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def folds_into_conv(norm):
    """Whether `norm` is a fixed affine map now: FrozenBN always, BatchNorm only in eval mode."""
    if isinstance(norm, FrozenBatchNorm2d):
        return True
    return (isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.affine
            and norm.running_var is not None)


class FoldedNormConv2d(Conv2d):
    """Detectron2's Conv2d computing conv(x, w * s) + b' instead of norm(conv(x, w)), with
    s = gamma / sqrt(var + eps) and b' = beta - mean * s (+ conv bias * s)."""

    def forward(self, x):
        norm = self.norm
        if not folds_into_conv(norm):
            return super().forward(x)
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        bias = norm.bias - norm.running_mean * scale
        if self.bias is not None:
            bias = bias + self.bias * scale
        weight = self.weight * scale.reshape(-1, 1, 1, 1)
        x = F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        return self.activation(x) if self.activation is not None else x


def fold_batchnorm(model):
    """Make every Detectron2 Conv2d with a norm of `model` a FoldedNormConv2d (the class changes,
    nothing else does); returns how many."""
    convs = [m for m in model.modules() if type(m) is Conv2d and m.norm is not None]
    for conv in convs:
        conv.__class__ = FoldedNormConv2d
    return len(convs)


def _to_float32(output):
    if isinstance(output, dict):
        return {name: _to_float32(value) for name, value in output.items()}
    return output.float() if output.is_floating_point() else output


def speed_up_forward(module, *, channels_last, autocast_dtype, device_type):
    """Give `module` (one tensor in) a forward that feeds it NHWC and/or runs it under autocast,
    returning float32. An instance attribute, so the state_dict keeps its names."""
    if channels_last:
        module.to(memory_format=torch.channels_last)
    forward = module.forward

    @functools.wraps(forward)
    def fast_forward(x):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if autocast_dtype is None:
            return forward(x)
        with torch.autocast(device_type, dtype=autocast_dtype):
            return _to_float32(forward(x))

    module.forward = fast_forward


def trunk_modules(model):
    """The convolutional trunk the switches apply to: the backbone and, in the C4 design, the
    res5 head that runs on every RoI."""
    modules = [model.backbone]
    res5 = getattr(getattr(model, "roi_heads", None), "res5", None)
    return modules + ([res5] if res5 is not None else [])


def read_fast_path_config(cfg):
    """MODEL.FAST_PATH as keyword options, checked against the device and SOLVER.AMP."""
    fast = cfg.MODEL.FAST_PATH
    device_type = torch.device(cfg.MODEL.DEVICE).type
    if fast.AUTOCAST not in AUTOCAST_DTYPES:
        raise ValueError(f"MODEL.FAST_PATH.AUTOCAST={fast.AUTOCAST!r}: expected one of "
                         f"{sorted(AUTOCAST_DTYPES)}")
    if cfg.SOLVER.AMP.ENABLED and device_type != "cuda":
        raise ValueError(
            f"SOLVER.AMP.ENABLED=True with MODEL.DEVICE={cfg.MODEL.DEVICE!r}: Detectron2's "
            "AMPTrainer (float16 with loss scaling) runs on CUDA only; on the CPU use "
            "MODEL.FAST_PATH.AUTOCAST='bfloat16', which needs no loss scaling")
    if fast.AUTOCAST == "float16" and not cfg.SOLVER.AMP.ENABLED:
        raise ValueError(
            "MODEL.FAST_PATH.AUTOCAST='float16' needs loss scaling: set SOLVER.AMP.ENABLED=True "
            "(Detectron2's AMPTrainer, CUDA), or use 'bfloat16'")
    if (fast.AUTOCAST == "bfloat16" and device_type == "cuda"
            and not torch.cuda.is_bf16_supported()):
        raise ValueError("MODEL.FAST_PATH.AUTOCAST='bfloat16': this GPU does not support "
                         "bfloat16; use 'float16' with SOLVER.AMP.ENABLED=True")
    return dict(fold_batchnorm=fast.FOLD_FROZEN_BN, channels_last=fast.CHANNELS_LAST,
                autocast_dtype=AUTOCAST_DTYPES[fast.AUTOCAST], compile=fast.COMPILE,
                device_type=device_type)


def apply_fast_path(cfg, model):
    """Turn on the MODEL.FAST_PATH switches of `cfg` in `model` (in place); returns `model`."""
    options = read_fast_path_config(cfg)
    if options["fold_batchnorm"]:
        fold_batchnorm(model)
    for module in trunk_modules(model):
        if options["channels_last"] or options["autocast_dtype"] is not None:
            speed_up_forward(module, channels_last=options["channels_last"],
                             autocast_dtype=options["autocast_dtype"],
                             device_type=options["device_type"])
        if options["compile"]:
            module.compile(dynamic=True)
    return model
