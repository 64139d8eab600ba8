"""The paper's C4 design: res5 run per RoI, for basic and bottleneck blocks, plain or A/B/C."""
import pytest
import torch
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from conftest import fast_subset
from resnet_backbone.modeling.resnet import DEPTH_TABLE, make_resnet
from resnet_backbone.modeling.roi_heads import make_res5_head

# The shipped C4 detector of each depth (Table 7's rows and their siblings).
C4_CONFIGS = {depth: f"PascalVOC-Detection/resnet{depth}_c4_voc0712.yaml"
              for depth in DEPTH_TABLE}
# Fewer proposals and RoIs, for a training step on the CPU.
SMALL = ("MODEL.RPN.PRE_NMS_TOPK_TRAIN", 200, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 50,
         "MODEL.RPN.PRE_NMS_TOPK_TEST", 200, "MODEL.RPN.POST_NMS_TOPK_TEST", 20,
         "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16)


def tiny_batch(num_images=2, size=96, seed=0):
    generator = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(num_images):
        instances = Instances((size, size))
        instances.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 60.0, 70.0], [40.0, 30.0, 90.0, 80.0]]))
        instances.gt_classes = torch.tensor([0, 2])
        image = torch.randint(0, 256, (3, size, size), generator=generator, dtype=torch.uint8)
        batch.append({"image": image, "height": size, "width": size, "instances": instances})
    return batch


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,options",
    [
        (C4_CONFIGS[18], ()),
        (C4_CONFIGS[50], ()),
        ("Demo/plain18_c4_synthetic.yaml", ()),  # the shipped plain net that trains on a CPU
        (C4_CONFIGS[34], ("MODEL.RESNET_BACKBONE.SHORTCUT", "A")),
        (C4_CONFIGS[50], ("MODEL.RESNET_BACKBONE.SHORTCUT", "C")),
    ],
)
def test_faster_rcnn_c4_trains_one_step_and_infers(shipped_config, name, options):
    torch.manual_seed(0)
    cfg = shipped_config(name, *SMALL, *options)
    model = build_model(cfg)
    expected_blocks = DEPTH_TABLE[cfg.MODEL.RESNETS.DEPTH][1][3]
    assert len(model.roi_heads.res5) == expected_blocks
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    with EventStorage():
        losses = model(tiny_batch())
    total = sum(losses.values())
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    assert torch.isfinite(total)
    total.backward()
    head_params = [p for p in model.roi_heads.res5.parameters() if p.requires_grad]
    assert head_params and all(p.grad is not None for p in head_params)
    optimizer.step()
    model.eval()
    with torch.no_grad():
        outputs = model(tiny_batch(num_images=1))
    assert outputs[0]["instances"].pred_boxes.tensor.shape[1] == 4


@pytest.mark.parametrize("depth", fast_subset(sorted(DEPTH_TABLE), fast=(18, 50)))
def test_res5_head_continues_the_backbone(depth):
    """Backbone up to res4 followed by the head's res5 has the full network's res5 shape."""
    head, channels = make_res5_head(depth, norm="BN")
    full = make_resnet(depth, norm="BN", out_features=["res4", "res5"]).eval()
    head.load_state_dict(full.res5.state_dict())
    head.eval()
    with torch.no_grad():
        features = full(torch.randn(1, 3, 64, 64))
        assert torch.allclose(head(features["res4"]), features["res5"], atol=1e-5)
    assert channels == full.output_shape()["res5"].channels


def test_backbone_must_stop_at_res4_for_the_c4_head(shipped_config):
    cfg = shipped_config(C4_CONFIGS[50], "MODEL.RESNETS.OUT_FEATURES", ["res4", "res5"])
    with pytest.raises(ValueError, match="MODEL.RESNETS.OUT_FEATURES"):
        build_model(cfg)


def randomized(state_dict, seed):
    """The same names and shapes filled with random positive values (valid BN variances)."""
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.rand(v.shape, generator=generator) + 0.5 for k, v in state_dict.items()}


@pytest.mark.parametrize("depth", fast_subset([50, 101], fast=(50,)))
def test_detectron2_settings_give_detectron2s_r50_r101_bit_for_bit(shipped_config, depth):
    """Bottleneck, option B, stride in the 1x1 (the shipped MSRA rows): the backbone and C4 head
    are Detectron2's own build_resnet_backbone and Res5ROIHeads, with the same names and
    identical outputs."""
    ours_cfg = shipped_config(C4_CONFIGS[depth])
    theirs_cfg = shipped_config(C4_CONFIGS[depth], "MODEL.BACKBONE.NAME", "build_resnet_backbone",
                                "MODEL.ROI_HEADS.NAME", "Res5ROIHeads")
    assert ours_cfg.MODEL.RESNETS.STRIDE_IN_1X1 and ours_cfg.MODEL.RESNET_BACKBONE.SHORTCUT == "B"
    theirs_backbone = build_backbone(theirs_cfg)
    theirs_res5 = build_roi_heads(theirs_cfg, theirs_backbone.output_shape()).res5
    ours_backbone = build_backbone(ours_cfg)
    ours_res5 = build_roi_heads(ours_cfg, ours_backbone.output_shape()).res5
    for theirs, ours in ((theirs_backbone, ours_backbone), (theirs_res5, ours_res5)):
        weights = randomized(theirs.state_dict(), depth)
        theirs.load_state_dict(weights)
        ours.load_state_dict(weights)  # strict: the same names and shapes

    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = theirs_backbone(x)["res4"]
        assert torch.equal(ours_backbone(x)["res4"], features)
        assert torch.equal(ours_res5(features), theirs_res5(features))
