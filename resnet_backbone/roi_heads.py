"""The paper's C4 detection head: RoI pooling on res4, then conv5_x run on every RoI.

Detectron2's `Res5ROIHeads` always builds bottleneck blocks with projection shortcuts, so
ResNet-18/34, plain nets and shortcut options A/C could not use the paper's design. This head
builds res5 from the same depth table and options as the backbone.
"""
from torch import nn

from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads

from .resnet import DEPTH_TABLE, make_stage, read_resnet_config, stage_widths

RES5_INDEX = 3  # res5 is the fourth stage (conv5_x)


def make_res5_head(
    depth, *, residual=True, shortcut="B", stride_in_1x1=True, norm="FrozenBN",
    res2_out_channels=None, **unused_stem_options,
):
    """conv5_x of ResNet-`depth` as an nn.Sequential named like the backbone's `res5`, and its
    output channels. Its first block has stride 2, so 14x14 RoIs come out 7x7 (paper Sec. A)."""
    block_class, blocks_per_stage = DEPTH_TABLE[depth]
    in_channels, _ = stage_widths(depth, RES5_INDEX - 1, res2_out_channels=res2_out_channels)
    out_channels, bottleneck_channels = stage_widths(
        depth, RES5_INDEX, res2_out_channels=res2_out_channels
    )
    blocks = make_stage(
        block_class, blocks_per_stage[RES5_INDEX],
        in_channels=in_channels, out_channels=out_channels,
        bottleneck_channels=bottleneck_channels, first_stride=2,
        norm=norm, stride_in_1x1=stride_in_1x1, residual=residual, shortcut=shortcut,
    )
    return nn.Sequential(*blocks), out_channels


@ROI_HEADS_REGISTRY.register()
class PaperRes5ROIHeads(Res5ROIHeads):
    """`Res5ROIHeads` whose res5 follows `MODEL.RESNETS.*` and `MODEL.RESNET_BACKBONE.*`."""

    @classmethod
    def _build_res5_block(cls, cfg):
        backbone_outputs = list(cfg.MODEL.RESNETS.OUT_FEATURES)
        if "res5" in backbone_outputs:
            raise ValueError(
                f"MODEL.RESNETS.OUT_FEATURES={backbone_outputs} includes res5, but with "
                "MODEL.ROI_HEADS.NAME=PaperRes5ROIHeads res5 runs per RoI in the head; "
                "stop the backbone at res4"
            )
        return make_res5_head(**read_resnet_config(cfg))
