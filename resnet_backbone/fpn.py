"""Feature Pyramid Network builders over this package's backbones (Detectron2's FPN class)."""
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from .resnet import build_paper_resnet_backbone
from .vgg import build_vgg16_backbone


def fpn_over(bottom_up, cfg):
    """Wrap `bottom_up` in Detectron2's FPN as configured by `MODEL.FPN.*`."""
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    produced = list(bottom_up.output_shape())
    missing = [f for f in in_features if f not in produced]
    if missing or not in_features:
        raise ValueError(
            f"MODEL.FPN.IN_FEATURES={in_features} asks for {missing or 'nothing'}, but the "
            f"bottom-up network outputs {produced} (set its OUT_FEATURES accordingly)"
        )
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_paper_resnet_fpn_backbone(cfg, input_shape):
    """FPN over the paper's ResNet or plain net (P2..P6 with the default keys)."""
    return fpn_over(build_paper_resnet_backbone(cfg, input_shape), cfg)


@BACKBONE_REGISTRY.register()
def build_vgg16_fpn_backbone(cfg, input_shape):
    """FPN over VGG-16 (e.g. MODEL.FPN.IN_FEATURES = conv2..conv5)."""
    return fpn_over(build_vgg16_backbone(cfg, input_shape), cfg)
