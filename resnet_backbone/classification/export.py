"""A trained classifier as detection weights: the backbone in this package's names (fc6/fc7 for
VGG-16's box head), the class layer dropped, and the run's pixel format recorded, so that
tools/train_net.py takes the file as MODEL.WEIGHTS and its pixel-format check protects it."""
import os

from ..checkpoint import make_metadata, save_converted
from ..weights import PixelFormat, find_pixel_format

BACKBONE_PREFIX = "backbone."
VGG_FC_PREFIX = "head.fc67."  # VGG16BoxHead inside the classifier head
EXPORTED_NAME = "model_final_backbone.pth"


def classifier_to_detection(state_dict):
    """Detection names of a classifier's state dict: `backbone.X` -> `X`,
    `head.fc67.fc6.*` / `head.fc67.fc7.*` -> `fc6.*` / `fc7.*`; the class layer is dropped."""
    converted = {}
    for key, value in state_dict.items():
        if key.startswith(BACKBONE_PREFIX):
            converted[key[len(BACKBONE_PREFIX):]] = value
        elif key.startswith(VGG_FC_PREFIX):
            converted[key[len(VGG_FC_PREFIX):]] = value
    if not converted:
        raise ValueError("not a classifier state dict: no backbone.* parameters")
    return converted


def exported_arch(cfg):
    """"resnet<depth>" / "vgg16" for the backbones the detection configs take; None otherwise
    (e.g. the CIFAR-10 networks)."""
    name = cfg.MODEL.BACKBONE.NAME
    if name == "build_paper_resnet_backbone":
        return f"resnet{cfg.MODEL.RESNETS.DEPTH}"
    if name == "build_vgg16_backbone":
        return "vgg16"
    return None


def export_classifier(cfg, model, path, *, converted_from):
    """Write `model`'s backbone to `path` (atomically) with the metadata of `cfg`'s pixel
    format; returns the metadata."""
    arch = exported_arch(cfg)
    if arch is None:
        raise ValueError(f"MODEL.BACKBONE.NAME={cfg.MODEL.BACKBONE.NAME} has no detection form")
    mean, std = tuple(cfg.MODEL.PIXEL_MEAN), tuple(cfg.MODEL.PIXEL_STD)
    pixel_format = PixelFormat(find_pixel_format(cfg.INPUT.FORMAT, mean, std) or "own",
                               cfg.INPUT.FORMAT, mean, std, bool(cfg.MODEL.RESNETS.STRIDE_IN_1X1))
    metadata = make_metadata(arch, "tools/pretrain_net.py", pixel_format,
                             converted_from=os.path.basename(converted_from),
                             residual=bool(cfg.MODEL.RESNET_BACKBONE.RESIDUAL),
                             shortcut=cfg.MODEL.RESNET_BACKBONE.SHORTCUT)
    model = getattr(model, "module", model)
    state = {k: v.detach().cpu() for k, v in classifier_to_detection(model.state_dict()).items()}
    save_converted(path, state, metadata)
    return metadata
