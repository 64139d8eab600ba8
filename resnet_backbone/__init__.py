"""He et al. 2015 residual and plain networks (and the VGG-16 baseline) for Detectron2.

Importing the package registers the detection parts: backbones `build_paper_resnet_backbone`,
`build_paper_resnet_fpn_backbone`, `build_vgg16_backbone`, `build_vgg16_fpn_backbone`; RoI heads
`PaperRes5ROIHeads`; box head `VGG16BoxHead`; the `imagenet://` weights handler; the detection
datasets. `model_zoo` finds the shipped configs by name. The classification half
(`resnet_backbone.classification`: meta-architecture `ImageClassifier`, backbone
`build_cifar_resnet_backbone`, the ImageNet/CIFAR-10 datasets, `add_classification_config`)
registers itself when imported; it imports this core, never the reverse.

The LazyConfig targets (`make_resnet`, `make_res5`, `make_vgg16`, `make_fpn`,
`stage_out_channels`, `VGG16BoxHead`, `build_evaluator`) are exported here under stable names: a
saved lazy config names its callables by these, so a run folder loads even if modules move.
"""
from . import data, model_zoo  # noqa: F401
from .config import add_resnet_backbone_config
from .data.evaluation import build_evaluator
from .modeling import fc_box_head, fpn, roi_heads
from .modeling.fc_box_head import VGG16BoxHead
from .modeling.fpn import make_fpn
from .modeling.resnet import (DEPTH_TABLE, ResNet, build_paper_resnet_backbone, make_resnet,
                     stage_out_channels)
from .modeling.roi_heads import PaperRes5ROIHeads, make_res5, make_res5_head
from .modeling.vgg import VGG16, build_vgg16_backbone, make_vgg16
from .version import __version__
from .weights import imagenet

__all__ = [
    "DEPTH_TABLE",
    "PaperRes5ROIHeads",
    "ResNet",
    "VGG16",
    "VGG16BoxHead",
    "__version__",
    "add_resnet_backbone_config",
    "build_evaluator",
    "build_paper_resnet_backbone",
    "build_vgg16_backbone",
    "make_fpn",
    "make_res5",
    "make_res5_head",
    "make_resnet",
    "make_vgg16",
    "stage_out_channels",
]
