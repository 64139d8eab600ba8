"""A trained classifier as detection weights: the backbone in this package's names (fc6/fc7 for
VGG-16's box head), the class layer dropped, and the run's pixel format recorded, so that
tools/train_net.py takes the file as MODEL.WEIGHTS and its pixel-format check protects it."""
import os

from ..weights.checkpoint import save_converted
from ..weights.metadata import metadata_of_model

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


def export_classifier(model, path, *, converted_from):
    """Write `model`'s backbone to `path` (atomically) with the record of the backbone as built
    and the pixel format of the model's buffers (`metadata.metadata_of_model`); returns the
    metadata, or None (nothing written) for a backbone with no detection form (the CIFAR-10
    networks: `description.describe` knows only the detection backbones)."""
    metadata = metadata_of_model(model, "tools/pretrain_net.py",
                                 converted_from=os.path.basename(converted_from))
    if metadata is None:
        return None
    model = getattr(model, "module", model)
    state = {k: v.detach().cpu() for k, v in classifier_to_detection(model.state_dict()).items()}
    save_converted(path, state, metadata)
    return metadata
