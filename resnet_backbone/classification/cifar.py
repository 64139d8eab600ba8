"""The CIFAR-10 networks of the paper's Sec. 4.2 (Fig. 6, Table 6) as a Detectron2 backbone.

A 3x3 conv with 16 filters, then three stages of n basic blocks (2n layers) with 16, 32, 64
filters on 32x32, 16x16, 8x8 maps, subsampling by stride 2 in the first conv of a stage: 6n+2
weighted layers with the classifier's fc, so `MODEL.RESNETS.DEPTH` 20, 32, 44, 56, 110, 1202
is n = 3, 5, 7, 9, 18, 200. The paper uses option A shortcuts (no extra parameters); the plain
counterparts are `MODEL.RESNET_BACKBONE.RESIDUAL: False`. Stages are named res2..res4.
"""
import torch.nn.functional as F
from fvcore.nn.weight_init import c2_msra_fill

from detectron2.layers import CNNBlockBase, Conv2d, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import ResNet

from ..config import check_has_keys
from ..modeling.resnet import BasicBlock, check_shortcut

CIFAR_WIDTHS = (16, 32, 64)


class CifarStem(CNNBlockBase):
    """conv1 of the CIFAR networks: 3x3, 16 filters, stride 1, norm, ReLU."""

    def __init__(self, in_channels=3, out_channels=16, *, norm="BN"):
        super().__init__(in_channels, out_channels, 1)
        self.conv1 = Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False,
                            norm=get_norm(norm, out_channels))
        c2_msra_fill(self.conv1)

    def forward(self, x):
        return F.relu_(self.conv1(x))


def blocks_per_stage(depth):
    """n of a 6n+2-layer CIFAR network; ValueError naming the depth otherwise."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH={depth} is not a CIFAR network depth 6n+2 "
            "(the paper's: 20, 32, 44, 56, 110, 1202)"
        )
    return (depth - 2) // 6


def make_cifar_resnet(depth, *, residual=True, shortcut="A", norm="BN", in_channels=3):
    """The 6n+2-layer CIFAR-10 network (without its classifier), output "res4" (64 channels,
    stride 4)."""
    n = blocks_per_stage(depth)
    stages, channels = [], CIFAR_WIDTHS[0]
    for index, width in enumerate(CIFAR_WIDTHS):
        stages.append(ResNet.make_stage(
            BasicBlock, n, in_channels=channels, out_channels=width,
            stride_per_block=[1 if index == 0 else 2] + [1] * (n - 1),
            norm=norm, residual=residual, shortcut=shortcut,
        ))
        channels = width
    stem = CifarStem(in_channels, CIFAR_WIDTHS[0], norm=norm)
    return ResNet(stem, stages, out_features=["res4"])


@BACKBONE_REGISTRY.register()
def build_cifar_resnet_backbone(cfg, input_shape):
    """CIFAR-10 network from MODEL.RESNETS.DEPTH / NORM and MODEL.RESNET_BACKBONE.SHORTCUT /
    RESIDUAL."""
    check_has_keys(cfg, "build_cifar_resnet_backbone")
    check_shortcut(cfg.MODEL.RESNET_BACKBONE.SHORTCUT)
    return make_cifar_resnet(
        cfg.MODEL.RESNETS.DEPTH,
        residual=cfg.MODEL.RESNET_BACKBONE.RESIDUAL,
        shortcut=cfg.MODEL.RESNET_BACKBONE.SHORTCUT,
        norm=cfg.MODEL.RESNETS.NORM,
        in_channels=input_shape.channels,
    )
