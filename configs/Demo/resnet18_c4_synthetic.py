"""Demo: ResNet-18 C4 on the synthetic shapes, from scratch on a CPU (resnet18_c4_synthetic.yaml
and Base-Demo-C4.yaml as a LazyConfig; the comments there say why each setting)."""
from detectron2.modeling.matcher import Matcher

from detectron2.config import LazyCall as L

from ..common.data.synthetic import NUM_CLASSES, dataloader  # noqa: F401
from ..common.models.paper_c4 import model
from ..common.models.pixels import TORCHVISION
from ..common.schedule import DEMO as schedule  # noqa: F401
from ..common.train import train

model.update(TORCHVISION)
model.backbone.update(depth=18, res2_out_channels=64, norm="BN", stride_in_1x1=False, freeze_at=0)
rpn = model.proposal_generator
rpn.anchor_generator.sizes = [[32, 64, 128]]
rpn.pre_nms_topk = (1000, 500)
rpn.post_nms_topk = (200, 100)
rpn.batch_size_per_image = 128
heads = model.roi_heads
heads.num_classes = NUM_CLASSES
heads.batch_size_per_image = 32
heads.positive_fraction = 0.5
heads.proposal_matcher = L(Matcher)(thresholds=[0.5], labels=[0, 1],
                                    allow_low_quality_matches=False)
heads.pooler.update(output_size=6, pooler_type="ROIAlignV2")
heads.box_predictor.update(test_score_thresh=0.01, test_nms_thresh=0.3)
train.update(output_dir="output/demo/resnet18_c4_lazy", device="cpu", seed=0)
