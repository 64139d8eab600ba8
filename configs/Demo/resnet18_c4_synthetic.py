"""Demo: ResNet-18 C4 on the synthetic shapes, from scratch on a CPU (resnet18_c4_synthetic.yaml
and Base-Demo-C4.yaml as a LazyConfig; the comments there say why each setting)."""
from detectron2.config import LazyCall as L
from detectron2.modeling.matcher import Matcher

from ..common.data.synthetic import dataloader
from ..common.models.paper_c4 import model
from ..common.models.pixels import use_torchvision_pixels
from ..common.optim import SGD as optimizer
from ..common.schedule import lr_multiplier_demo as lr_multiplier
from ..common.train import train

use_torchvision_pixels(model)
model.backbone.update(depth=18, res2_out_channels=64, norm="BN", stride_in_1x1=False, freeze_at=0)
model.proposal_generator.anchor_generator.sizes = [[32, 64, 128]]
model.proposal_generator.update(pre_nms_topk=(1000, 500), post_nms_topk=(200, 100),
                                batch_size_per_image=128)
model.roi_heads.update(
    num_classes=5,
    batch_size_per_image=32,
    positive_fraction=0.5,
    proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False),
)
model.roi_heads.pooler.update(output_size=6, pooler_type="ROIAlignV2")
model.roi_heads.box_predictor.update(test_score_thresh=0.01, test_nms_thresh=0.3)
optimizer.update(lr=0.0025, weight_decay=0.0001)  # 0.02 at batch 16, per image
train.update(max_iter=lr_multiplier.scheduler.num_updates, device="cpu", seed=0,
             output_dir="output/demo/resnet18_c4_lazy")
train.checkpointer.period = 400
