"""Feature Pyramid Network builders over this package's backbones (Detectron2's FPN class)."""
import math

from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from .resnet import build_paper_resnet_backbone
from .vgg import build_vgg16_backbone


def fpn_over(bottom_up, cfg):
    """Wrap `bottom_up` in Detectron2's FPN as configured by `MODEL.FPN.*`."""
    return make_fpn(bottom_up, in_features=list(cfg.MODEL.FPN.IN_FEATURES),
                    out_channels=cfg.MODEL.FPN.OUT_CHANNELS, norm=cfg.MODEL.FPN.NORM,
                    fuse_type=cfg.MODEL.FPN.FUSE_TYPE, key="MODEL.FPN.IN_FEATURES")


def make_fpn(bottom_up, *, in_features, out_channels=256, norm="", fuse_type="sum",
             key="in_features"):
    """Detectron2's FPN over `bottom_up` with a max-pooled extra level (also a LazyConfig
    target); `key` names the setting of `in_features` in errors."""
    in_features = list(in_features)
    produced = list(bottom_up.output_shape())
    missing = [f for f in in_features if f not in produced]
    if missing or not in_features:
        raise ValueError(
            f"{key}={in_features} asks for {missing or 'nothing'}, but the "
            f"bottom-up network outputs {produced} (set its out_features accordingly)"
        )
    # FPN names its levels p<log2 stride>: p2..p5 over res2..res5, but p1..p4 over VGG's
    # conv2..conv5. The extra max-pooled level must start from the coarsest one either way.
    top_block = LastLevelMaxPool()
    coarsest_stride = bottom_up.output_shape()[in_features[-1]].stride
    top_block.in_feature = f"p{int(math.log2(coarsest_stride))}"
    return FPN(bottom_up=bottom_up, in_features=in_features, out_channels=out_channels,
               norm=norm, top_block=top_block, fuse_type=fuse_type)


@BACKBONE_REGISTRY.register()
def build_paper_resnet_fpn_backbone(cfg, input_shape):
    """FPN over the paper's ResNet or plain net (P2..P6 with the default keys)."""
    return fpn_over(build_paper_resnet_backbone(cfg, input_shape), cfg)


@BACKBONE_REGISTRY.register()
def build_vgg16_fpn_backbone(cfg, input_shape):
    """FPN over VGG-16; with MODEL.FPN.IN_FEATURES = conv2..conv5 the levels are p1..p5
    (RPN/ROI_HEADS.IN_FEATURES must name those)."""
    return fpn_over(build_vgg16_backbone(cfg, input_shape), cfg)
