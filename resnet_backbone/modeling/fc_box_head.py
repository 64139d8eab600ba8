"""The fc6/fc7 box head of the VGG-16 Faster R-CNN baseline, for Detectron2's StandardROIHeads.
Pooled 512x7x7 RoIs are flattened in (C, H, W) order, as the ImageNet fc6 was trained; the layers
are named like the converted checkpoint, so `fc6.*` / `fc7.*` load by name suffix.
"""
import torch
import torch.nn.functional as F
from fvcore.nn.weight_init import c2_xavier_fill
from torch import nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY

from ..config import check_has_keys

# What the ImageNet fc6 of VGG-16 was trained on: conv5_3 (512 channels) pooled to 7x7.
IMAGENET_FC_DIM = 4096
IMAGENET_FC6_INPUT = (512, 7, 7)


@ROI_BOX_HEAD_REGISTRY.register()
class VGG16BoxHead(nn.Module):
    """fc6 and fc7 of VGG-16, each followed by ReLU and dropout, applied to every pooled RoI."""

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, fc_dim=IMAGENET_FC_DIM, dropout=0.5):
        super().__init__()
        in_features = input_shape.channels * (input_shape.height or 1) * (input_shape.width or 1)
        self.fc6 = nn.Linear(in_features, fc_dim)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.drop7 = nn.Dropout(dropout)
        for layer in (self.fc6, self.fc7):
            c2_xavier_fill(layer)
        self._output_size = fc_dim

    @classmethod
    def from_config(cls, cfg, input_shape):
        check_has_keys(cfg, "VGG16BoxHead", node="MODEL.ROI_BOX_HEAD.VGG")
        # fmt: off
        fc_dim  = cfg.MODEL.ROI_BOX_HEAD.VGG.FC_DIM
        dropout = cfg.MODEL.ROI_BOX_HEAD.VGG.DROPOUT
        # fmt: on
        if not isinstance(fc_dim, int) or fc_dim <= 0:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.VGG.FC_DIM={fc_dim!r} must be a positive integer")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MODEL.ROI_BOX_HEAD.VGG.DROPOUT={dropout!r} must be in [0, 1)")
        if fc_dim == IMAGENET_FC_DIM:
            channels, height, width = IMAGENET_FC6_INPUT
            if (input_shape.height, input_shape.width) != (height, width):
                raise ValueError(
                    f"MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION gives {input_shape.height}x"
                    f"{input_shape.width} RoIs, but the ImageNet fc6 of VGG16BoxHead "
                    f"(MODEL.ROI_BOX_HEAD.VGG.FC_DIM={fc_dim}) takes {height}x{width}; set "
                    f"MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION to {height} (or change "
                    "MODEL.ROI_BOX_HEAD.VGG.FC_DIM to train a head from scratch)"
                )
            if input_shape.channels != channels:
                raise ValueError(
                    f"MODEL.ROI_HEADS.IN_FEATURES={list(cfg.MODEL.ROI_HEADS.IN_FEATURES)} has "
                    f"{input_shape.channels} channels, but the ImageNet fc6 of VGG16BoxHead "
                    f"(MODEL.ROI_BOX_HEAD.VGG.FC_DIM={fc_dim}) takes {channels} (conv5_3); pool "
                    "from conv5 or change MODEL.ROI_BOX_HEAD.VGG.FC_DIM"
                )
        return {"input_shape": input_shape, "fc_dim": fc_dim, "dropout": dropout}

    def forward(self, x):
        x = x.flatten(1)  # (R, C, H, W) -> (R, C*H*W), channel-major as the ImageNet fc6
        x = self.drop6(F.relu(self.fc6(x)))
        return self.drop7(F.relu(self.fc7(x)))

    @property
    @torch.jit.unused  # build-time information; TorchScript cannot compile ShapeSpec
    def output_shape(self):
        return ShapeSpec(channels=self._output_size)
