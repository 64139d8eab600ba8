"""The paper's C4 Faster R-CNN (Base-Paper-C4.yaml as a LazyConfig): conv1..conv4_x shared by the
RPN and the detector, RoI pooling, then conv5_x per RoI. Depth (18..152), `residual` (False: the
plain net) and `shortcut` ("A", "B", "C") are plain fields of `model.backbone`; the RPN head,
res5 and the box predictor read them through interpolation, so one override changes them all."""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch import GeneralizedRCNN
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator import RPN, StandardRPNHead
from detectron2.modeling.roi_heads import FastRCNNOutputLayers, Res5ROIHeads

from resnet_backbone import make_res5, make_resnet, stage_out_channels

model = L(GeneralizedRCNN)(
    backbone=L(make_resnet)(
        depth=50,
        residual=True,
        shortcut="B",
        stride_in_1x1=True,
        norm="FrozenBN",
        res2_out_channels=None,
        out_features=["res4"],
        freeze_at=2,
    ),
    proposal_generator=L(RPN)(
        in_features=["res4"],
        head=L(StandardRPNHead)(
            in_channels=L(stage_out_channels)(
                depth="${....backbone.depth}", stage="res4",
                res2_out_channels="${....backbone.res2_out_channels}",
            ),
            num_anchors=9,
        ),
        anchor_generator=L(DefaultAnchorGenerator)(
            sizes=[[128, 256, 512]], aspect_ratios=[0.5, 1.0, 2.0], strides=[16], offset=0.0,
        ),
        anchor_matcher=L(Matcher)(
            thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True
        ),
        box2box_transform=L(Box2BoxTransform)(weights=[1.0, 1.0, 1.0, 1.0]),
        batch_size_per_image=256,
        positive_fraction=0.5,
        pre_nms_topk=(12000, 6000),
        post_nms_topk=(2000, 300),
        nms_thresh=0.7,
    ),
    roi_heads=L(Res5ROIHeads)(
        num_classes=80,
        batch_size_per_image=128,
        positive_fraction=0.25,
        # Fast R-CNN: background is IoU in [0.1, 0.5), below 0.1 ignored.
        proposal_matcher=L(Matcher)(
            thresholds=[0.1, 0.5], labels=[-1, 0, 1], allow_low_quality_matches=False
        ),
        in_features=["res4"],
        pooler=L(ROIPooler)(
            output_size=14, scales=(1.0 / 16,), sampling_ratio=0, pooler_type="ROIPool"
        ),
        res5=L(make_res5)(
            depth="${...backbone.depth}",
            residual="${...backbone.residual}",
            shortcut="${...backbone.shortcut}",
            stride_in_1x1="${...backbone.stride_in_1x1}",
            norm="${...backbone.norm}",
            res2_out_channels="${...backbone.res2_out_channels}",
        ),
        box_predictor=L(FastRCNNOutputLayers)(
            input_shape=L(ShapeSpec)(
                channels=L(stage_out_channels)(
                    depth="${.....backbone.depth}", stage="res5",
                    res2_out_channels="${.....backbone.res2_out_channels}",
                ),
                height=1, width=1,
            ),
            box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
            num_classes="${..num_classes}",
            test_score_thresh=0.05,
            test_nms_thresh=0.5,
            test_topk_per_image=100,
        ),
    ),
    # MSRA's (Caffe2) pixel format; torchvision's weights need pixels.use_torchvision_pixels.
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
    input_format="BGR",
)
