"""VGG-16 (Simonyan & Zisserman, configuration "D") as a Detectron2 `Backbone`: the baseline
the paper's detection tables compare ResNet-101 against.

As in Faster R-CNN, the network ends at conv5_3 (no pool5), so "conv5" has stride 16 and the RoI
pooling of the detector replaces pool5; fc6/fc7 run per RoI in `fc_box_head.VGG16BoxHead`.
Every conv is an attribute of the backbone itself (`conv1_1` .. `conv5_3`, with `weight` and
`bias`), the names of the original Caffe model, which `convert.convert_torchvision_vgg16` maps
torchvision's `features.<index>` onto.
"""
import torch.nn.functional as F
from fvcore.nn.weight_init import c2_msra_fill

from detectron2.layers import Conv2d
from detectron2.modeling import BACKBONE_REGISTRY, Backbone

# Blocks conv1..conv5 of configuration "D": (number of 3x3 convs, their width). A 2x2/2 max-pool
# sits between consecutive blocks; the one after conv5 (pool5) is left out.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
BLOCK_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")


def last_block_for(out_features):
    """The deepest block any of `out_features` needs."""
    return BLOCK_NAMES[max(BLOCK_NAMES.index(name) for name in out_features)]


class VGG16(Backbone):
    """conv1_1 .. conv{last}_3 with ReLU after every conv and max-pools between blocks.

    Outputs are named after the blocks: "conv<k>" is the output of the block's last conv after
    its ReLU (before any pool): strides 1, 2, 4, 8, 16 and 64, 128, 256, 512, 512 channels.
    """

    def __init__(self, *, in_channels=3, out_features=("conv5",), last_block=None, freeze_at=0):
        """
        Args:
            in_channels (int): channels of the input image.
            out_features (sequence[str]): any of "conv1".."conv5", returned by `forward`.
            last_block (str or None): the last block built; by default the deepest one that
                `out_features` needs.
            freeze_at (int): freeze blocks conv1..conv{freeze_at}; 0 freezes nothing, 2 is the
                Faster R-CNN choice (conv1_* and conv2_*).
        """
        super().__init__()
        out_features = list(out_features)
        num_blocks = BLOCK_NAMES.index(last_block or last_block_for(out_features)) + 1
        self.block_names = BLOCK_NAMES[:num_blocks]
        self._conv_names = {}
        self._out_feature_strides = {}
        self._out_feature_channels = {}
        channels, stride = in_channels, 1
        for index, name in enumerate(self.block_names):
            num_convs, width = VGG16_BLOCKS[index]
            if index > 0:
                stride *= 2  # the max-pool in front of this block
            self._conv_names[name] = []
            for position in range(1, num_convs + 1):
                conv = Conv2d(channels, width, kernel_size=3, padding=1, bias=True)
                c2_msra_fill(conv)
                conv_name = f"{name}_{position}"
                self.add_module(conv_name, conv)
                self._conv_names[name].append(conv_name)
                channels = width
            self._out_feature_strides[name] = stride
            self._out_feature_channels[name] = channels
        self._out_features = out_features
        self.freeze(freeze_at)

    def block_convs(self, name):
        """The conv modules of block `name` ("conv1".."conv5"), input side first."""
        return [getattr(self, conv_name) for conv_name in self._conv_names[name]]

    def freeze(self, freeze_at):
        """Stop gradients to the weights of blocks conv1..conv{freeze_at}. There is no
        normalization layer to convert; returns self."""
        for name in self.block_names[:freeze_at]:
            for conv in self.block_convs(name):
                for parameter in conv.parameters():
                    parameter.requires_grad_(False)
        return self

    def forward(self, x):
        outputs = {}
        for index, name in enumerate(self.block_names):
            if index > 0:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            for conv in self.block_convs(name):
                x = F.relu_(conv(x))
            if name in self._out_features:
                outputs[name] = x
        return outputs


def make_vgg16(*, out_features=("conv5",), freeze_at=2, in_channels=3, last_block=None):
    """The VGG-16 backbone of the Faster R-CNN baseline (conv5 output, conv1/conv2 frozen by
    default), without a config; for tests and tools."""
    return VGG16(
        in_channels=in_channels, out_features=out_features, last_block=last_block,
        freeze_at=freeze_at,
    )


@BACKBONE_REGISTRY.register()
def build_vgg16_backbone(cfg, input_shape):
    """VGG-16 up to conv5_3 from `MODEL.VGG.*`; the one place its configuration is validated,
    every rejection naming the config key at fault."""
    # fmt: off
    freeze_at    = cfg.MODEL.VGG.FREEZE_AT
    out_features = list(cfg.MODEL.VGG.OUT_FEATURES)
    # fmt: on
    unknown = [name for name in out_features if name not in BLOCK_NAMES]
    if unknown or not out_features:
        raise ValueError(
            f"MODEL.VGG.OUT_FEATURES={out_features} names {unknown or 'nothing'}; "
            f"use any of {list(BLOCK_NAMES)}"
        )
    if not isinstance(freeze_at, int) or not 0 <= freeze_at <= len(BLOCK_NAMES):
        raise ValueError(
            f"MODEL.VGG.FREEZE_AT={freeze_at!r} is not a number of blocks; "
            f"use 0..{len(BLOCK_NAMES)}"
        )
    last_block = last_block_for(out_features)
    if freeze_at > BLOCK_NAMES.index(last_block) + 1:
        raise ValueError(
            f"MODEL.VGG.FREEZE_AT={freeze_at} freezes past the last block built ({last_block}, "
            f"the deepest of MODEL.VGG.OUT_FEATURES={out_features}); "
            f"use 0..{BLOCK_NAMES.index(last_block) + 1}"
        )
    return VGG16(
        in_channels=input_shape.channels,
        out_features=out_features,
        last_block=last_block,
        freeze_at=freeze_at,
    )
