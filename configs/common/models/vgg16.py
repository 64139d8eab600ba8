"""VGG-16 Faster R-CNN (Base-VGG16.yaml as a LazyConfig): conv1_1..conv5_3 shared (stride 16),
RoI pooling to 7x7, fc6/fc7 of the ImageNet classifier as the box head, torchvision's pixels."""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import StandardROIHeads

from resnet_backbone import VGG16BoxHead, make_vgg16

from .paper_c4 import model
from .pixels import use_torchvision_pixels

model.backbone = L(make_vgg16)(out_features=["conv5"], freeze_at=2)
model.proposal_generator.in_features = ["conv5"]
model.proposal_generator.head.in_channels = 512
model.roi_heads = L(StandardROIHeads)(
    num_classes=80,
    batch_size_per_image=128,
    positive_fraction=0.25,
    proposal_matcher=L(Matcher)(
        thresholds=[0.1, 0.5], labels=[-1, 0, 1], allow_low_quality_matches=False
    ),
    box_in_features=["conv5"],
    box_pooler=L(ROIPooler)(
        output_size=7, scales=(1.0 / 16,), sampling_ratio=0, pooler_type="ROIPool"
    ),
    box_head=L(VGG16BoxHead)(
        input_shape=L(ShapeSpec)(channels=512, height="${...box_pooler.output_size}",
                                 width="${...box_pooler.output_size}"),
        fc_dim=4096,
        dropout=0.5,
    ),
    box_predictor=model.roi_heads.box_predictor,
)
model.roi_heads.box_predictor.input_shape = L(ShapeSpec)(channels="${...box_head.fc_dim}")
use_torchvision_pixels(model)
