"""Stop a detector whose RoI head cannot continue this package's backbone.

Detectron2's `Res5ROIHeads` builds res5 itself from `MODEL.RESNETS.*`: three bottleneck blocks,
a projection shortcut on the first, whatever the backbone is. Paired with a backbone of this
package that has other blocks (ResNet-18/34, a plain net, shortcut option A or C) it builds and
trains without a word, but its head is not the network's conv5_x. The backbone builders are the
only code of this package that `build_model` runs before the heads, so they call
`check_detectron2_res5_fits`; the check reads the whole config, so it also stops a backbone
built alone from a config that would make such a detector. Models built any other way (a
LazyConfig, Detectron2's own backbones) meet `roi_heads.check_head_fits`, which compares the
built modules themselves.
"""
from detectron2.modeling import META_ARCH_REGISTRY, ROI_HEADS_REGISTRY
from detectron2.modeling.meta_arch import GeneralizedRCNN
from detectron2.modeling.roi_heads import Res5ROIHeads


def builds_detectron2_res5(cfg):
    """Whether `build_model(cfg)` builds RoI heads whose res5 is Detectron2's own: an R-CNN
    meta-architecture with `Res5ROIHeads`, or a subclass that keeps its `_build_res5_block`."""
    try:
        meta_arch = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
        heads = ROI_HEADS_REGISTRY.get(cfg.MODEL.ROI_HEADS.NAME)
    except KeyError:  # Detectron2 reports an unknown name itself when it builds the model
        return False
    if not (isinstance(meta_arch, type) and issubclass(meta_arch, GeneralizedRCNN)
            and isinstance(heads, type) and issubclass(heads, Res5ROIHeads)):
        return False
    # A subclass may define it as a plain function (Detectron2 accepts that, for old code)
    build_res5 = getattr(heads._build_res5_block, "__func__", heads._build_res5_block)
    return build_res5 is Res5ROIHeads._build_res5_block.__func__


def check_detectron2_res5_fits(cfg, differences):
    """Raise ValueError when the config's RoI heads build Detectron2's res5 but the backbone
    differs from it in `differences` (config settings, each described in words)."""
    if differences and builds_detectron2_res5(cfg):
        raise ValueError(
            f"MODEL.ROI_HEADS.NAME={cfg.MODEL.ROI_HEADS.NAME!r} builds Detectron2's res5 "
            "(bottleneck blocks, projection shortcut B) whatever the backbone, but "
            f"{cfg.MODEL.BACKBONE.NAME} is configured with {'; '.join(differences)}: the head "
            "would not be this network's conv5_x. Set MODEL.ROI_HEADS.NAME PaperRes5ROIHeads, "
            "which builds res5 from the backbone's own settings"
        )
