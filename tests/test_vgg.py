"""VGG-16 backbone and fc6/fc7 box head: equivalence with torchvision's VGG-16 on the same random
weights, freezing, declared shapes, and a CPU Faster R-CNN step with both RoI pooling types."""
import itertools

import pytest
import torch
import torchvision
from torchvision.ops import roi_pool

from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone, build_model
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from resnet_backbone.weights.convert import convert_torchvision_vgg16
from resnet_backbone.modeling.fc_box_head import VGG16BoxHead
from resnet_backbone.modeling.vgg import BLOCK_NAMES, VGG16, make_vgg16


def _tolerance(reference):
    # Same weights and the same ops in fp32: only summation order may differ.
    return dict(rtol=1e-5, atol=1e-5 * float(reference.abs().max()))


@pytest.fixture(scope="module")
def torchvision_vgg16():
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).eval()


@pytest.fixture(scope="module")
def converted(torchvision_vgg16):
    return convert_torchvision_vgg16(torchvision_vgg16.state_dict())


@pytest.fixture(scope="module")
def backbone_and_head(converted):
    """Our backbone and box head, loaded strictly from the converted torchvision weights (built
    on the meta device: the strict load gives every tensor, so no random init is paid for)."""
    with torch.device("meta"):
        backbone = make_vgg16(freeze_at=0)
        head = VGG16BoxHead(ShapeSpec(channels=512, height=7, width=7))
    backbone.load_state_dict({k: v for k, v in converted.items() if k.startswith("conv")},
                             assign=True)
    head.load_state_dict({k: v for k, v in converted.items() if k.startswith("fc")}, assign=True)
    return backbone.eval(), head.eval()


def test_converted_names_are_the_module_names(converted, backbone_and_head):
    backbone, head = backbone_and_head
    assert set(converted) == set(backbone.state_dict()) | set(head.state_dict())
    assert {k for k in converted if k.startswith("fc")} == {
        "fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"
    }


@torch.no_grad()
def test_conv5_matches_torchvision_features_without_pool5(torchvision_vgg16, backbone_and_head):
    backbone, _ = backbone_and_head
    features_to_conv5_3 = torchvision_vgg16.features[:-1]
    assert isinstance(torchvision_vgg16.features[-1], torch.nn.MaxPool2d)
    x = torch.randn(2, 3, 96, 136)  # 136 is not a multiple of 16: floor-mode pooling
    expected = features_to_conv5_3(x)
    actual = backbone(x)["conv5"]
    assert actual.shape == expected.shape == (2, 512, 6, 8)
    torch.testing.assert_close(actual, expected, **_tolerance(expected))


@torch.no_grad()
def test_fc7_matches_torchvision_classifier_on_a_pooled_roi(torchvision_vgg16, backbone_and_head):
    backbone, head = backbone_and_head
    torch.manual_seed(1)
    image = torch.randn(1, 3, 160, 192)
    boxes = torch.tensor([[8.0, 12.0, 150.0, 140.0], [40.5, 3.0, 90.0, 77.0], [0, 0, 191, 159]])

    tv = torchvision_vgg16
    tv_pooled = roi_pool(tv.features[:-1](image), [boxes], output_size=7, spatial_scale=1 / 16)
    # torchvision's own forward from here: avgpool (identity at 7x7), flatten, fc6..dropout7.
    expected = tv.classifier[:5](torch.flatten(tv.avgpool(tv_pooled), 1))

    pooler = ROIPooler(7, scales=(1 / 16,), sampling_ratio=0, pooler_type="ROIPool")
    pooled = pooler([backbone(image)["conv5"]], [Boxes(boxes)])
    actual = head(pooled)
    assert actual.shape == expected.shape == (3, 4096)
    assert head.output_shape == ShapeSpec(channels=4096)
    torch.testing.assert_close(actual, expected, **_tolerance(expected))


@pytest.mark.parametrize("pooler_type", ["ROIPool", "ROIAlignV2"])
def test_gradients_flow_through_the_pooler_into_conv5_on_cpu(pooler_type):
    torch.manual_seed(0)
    head = VGG16BoxHead(ShapeSpec(channels=512, height=7, width=7), fc_dim=32, dropout=0.0)
    features = torch.randn(2, 512, 8, 10, requires_grad=True)
    boxes = [Boxes(torch.tensor([[0.0, 0.0, 100.0, 90.0]])),
             Boxes(torch.tensor([[16.0, 8.0, 60.0, 70.0]]))]
    pooler = ROIPooler(7, scales=(1 / 16,), sampling_ratio=0, pooler_type=pooler_type)
    head(pooler([features], boxes)).square().sum().backward()
    assert features.grad[0].abs().sum() > 0 and features.grad[1].abs().sum() > 0
    assert head.fc6.weight.grad.abs().sum() > 0


def test_backbone_and_head_have_torchvision_parameters_minus_fc8(
    torchvision_vgg16, backbone_and_head
):
    def count(module):
        return sum(p.numel() for p in module.parameters())

    backbone, head = backbone_and_head
    fc8 = torchvision_vgg16.classifier[6]
    assert fc8.out_features == 1000
    assert count(backbone) + count(head) == count(torchvision_vgg16) - count(fc8)


@pytest.mark.parametrize("freeze_at", [0, 2, 4])
def test_frozen_blocks_hold_no_trainable_parameters_and_the_rest_get_gradients(freeze_at):
    torch.manual_seed(0)
    backbone = make_vgg16(freeze_at=freeze_at, out_features=["conv5"])
    frozen = {f"{b}_" for b in BLOCK_NAMES[:freeze_at]}
    backbone(torch.randn(1, 3, 32, 48))["conv5"].square().sum().backward()
    for name, parameter in backbone.named_parameters():
        if name[: len("convN_")] in frozen:
            assert not parameter.requires_grad, name
            assert parameter.grad is None, name
        else:
            assert parameter.requires_grad, name
            assert parameter.grad is not None, name
            assert torch.isfinite(parameter.grad).all(), name
            assert parameter.grad.abs().sum() > 0, name


def test_output_shape_equals_outputs_for_every_choice_of_out_features():
    # Only shapes matter here: the 31 backbones and their outputs live on the meta device (no
    # weights to initialise, no arithmetic; the output shapes are those of the CPU kernels).
    x = torch.empty(1, 3, 26, 38, device="meta")  # odd sizes after pooling: floor mode
    for size in range(1, len(BLOCK_NAMES) + 1):
        for out_features in itertools.combinations(BLOCK_NAMES, size):
            with torch.device("meta"):
                backbone = VGG16(out_features=out_features)
            last = max(BLOCK_NAMES.index(f) for f in out_features)
            built = {k.split("_")[0] for k in backbone.state_dict()}
            assert built == set(BLOCK_NAMES[: last + 1]), out_features
            with torch.no_grad():
                outputs = backbone(x)
            shapes = backbone.output_shape()
            assert list(outputs) == list(shapes) == list(out_features)
            for name, spec in shapes.items():
                n, c, h, w = outputs[name].shape
                assert (c, h, w) == (spec.channels, 26 // spec.stride, 38 // spec.stride), name
    expected = {"conv1": (64, 1), "conv2": (128, 2), "conv3": (256, 4), "conv4": (512, 8),
                "conv5": (512, 16)}
    assert {k: (s.channels, s.stride) for k, s in shapes.items()} == expected


def test_fpn_over_conv2_to_conv5(shipped_config):
    """build_vgg16_fpn_backbone: levels are named by stride (conv2..conv5 give p1..p4) and the
    extra max-pooled level p5 comes from the coarsest one."""
    levels = ["conv2", "conv3", "conv4", "conv5"]
    cfg = shipped_config(VGG16_CONFIG, "MODEL.BACKBONE.NAME", "build_vgg16_fpn_backbone",
                         "MODEL.VGG.OUT_FEATURES", levels, "MODEL.FPN.IN_FEATURES", levels,
                         "MODEL.FPN.OUT_CHANNELS", 32)
    fpn = build_backbone(cfg, ShapeSpec(channels=3))
    with torch.no_grad():
        outputs = fpn(torch.randn(1, 3, 64, 96))
    assert list(outputs) == ["p1", "p2", "p3", "p4", "p5"]
    for name, spec in fpn.output_shape().items():
        assert outputs[name].shape[1:] == (spec.channels, 64 // spec.stride, 96 // spec.stride)


# ---------------------------------------------------------------------------------------------
# Through Detectron2's config and Faster R-CNN


VGG16_CONFIG = "PascalVOC-Detection/vgg16_voc0712.yaml"  # Table 7's VGG-16 row
# Anchors, proposals and RoIs for 96-128 px images and a CPU step; 3 classes.
SMALL = ("MODEL.ANCHOR_GENERATOR.SIZES", [[32, 64, 128]], "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 32,
         "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 200, "MODEL.RPN.POST_NMS_TOPK_TRAIN", 32,
         "MODEL.RPN.PRE_NMS_TOPK_TEST", 100, "MODEL.RPN.POST_NMS_TOPK_TEST", 16,
         "MODEL.ROI_HEADS.NUM_CLASSES", 3, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16)


@pytest.fixture
def vgg_faster_rcnn_cfg(shipped_config):
    """`vgg_faster_rcnn_cfg(KEY, value, ...)`: the shipped VGG-16 detector, small, with the
    overrides."""
    return lambda *overrides: shipped_config(VGG16_CONFIG, *SMALL, *overrides)


def _training_batch():
    generator = torch.Generator().manual_seed(0)
    batch = []
    for height, width, boxes, classes in [
        (96, 128, [[10.0, 20.0, 70.0, 90.0], [60.0, 5.0, 120.0, 50.0]], [0, 2]),
        (128, 96, [[20.0, 30.0, 90.0, 120.0]], [1]),
    ]:
        image = torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(torch.tensor(boxes))
        instances.gt_classes = torch.tensor(classes)
        batch.append({"image": image, "instances": instances, "height": height, "width": width})
    return batch


@pytest.mark.slow
@pytest.mark.parametrize("pooler_type", ["ROIPool", "ROIAlignV2"])
def test_faster_rcnn_trains_and_infers_on_cpu(vgg_faster_rcnn_cfg, pooler_type, converted):
    torch.manual_seed(0)
    cfg = vgg_faster_rcnn_cfg("MODEL.ROI_BOX_HEAD.POOLER_TYPE", pooler_type)
    model = build_model(cfg)
    assert type(model.backbone) is VGG16
    assert isinstance(model.roi_heads.box_head, VGG16BoxHead)

    # The converted ImageNet weights land on backbone.conv* and roi_heads.box_head.fc6/fc7 by
    # the name-suffix matching of Detectron2's checkpointer (without Caffe2 renaming).
    aligned = align_and_update_state_dicts(model.state_dict(), converted, c2_conversion=False)
    assert set(aligned) == {
        f"backbone.{k}" if k.startswith("conv") else f"roi_heads.box_head.{k}" for k in converted
    }
    model.load_state_dict(aligned, strict=False)

    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert sorted(frozen) == sorted(
        f"backbone.{b}_{i}.{w}" for b, i in [("conv1", 1), ("conv1", 2), ("conv2", 1),
                                             ("conv2", 2)] for w in ("weight", "bias")
    )

    model.train()
    with EventStorage():
        losses = model(_training_batch())
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=1e-4)
    optimizer.zero_grad()
    sum(losses.values()).backward()
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    before = model.roi_heads.box_head.fc6.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.roi_heads.box_head.fc6.weight)

    model.eval()
    with torch.no_grad():
        image = _training_batch()[0]["image"]
        (result,) = model([{"image": image, "height": 192, "width": 256}])
    instances = result["instances"]
    assert instances.image_size == (192, 256)
    assert len(instances) <= cfg.TEST.DETECTIONS_PER_IMAGE
    boxes = instances.pred_boxes.tensor
    assert torch.isfinite(boxes).all() and torch.isfinite(instances.scores).all()
    if len(instances):
        assert boxes[:, 0].min() >= 0 and boxes[:, 2].max() <= 256 and boxes[:, 3].max() <= 192
        assert instances.pred_classes.max() < 3


def test_builder_reads_the_vgg_config(vgg_faster_rcnn_cfg):
    cfg = vgg_faster_rcnn_cfg(
        "MODEL.VGG.OUT_FEATURES", ["conv3", "conv4"], "MODEL.VGG.FREEZE_AT", 3
    )
    backbone = build_backbone(cfg)
    assert backbone.output_shape() == {
        "conv3": ShapeSpec(channels=256, stride=4), "conv4": ShapeSpec(channels=512, stride=8)
    }
    assert not hasattr(backbone, "conv5_1")
    trainable = {n.split(".")[0] for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {"conv4_1", "conv4_2", "conv4_3"}


@pytest.mark.parametrize(
    "overrides, key",
    [
        (("MODEL.VGG.OUT_FEATURES", ["res5"]), "MODEL.VGG.OUT_FEATURES"),
        (("MODEL.VGG.OUT_FEATURES", []), "MODEL.VGG.OUT_FEATURES"),
        (("MODEL.VGG.FREEZE_AT", 6), "MODEL.VGG.FREEZE_AT"),
        (("MODEL.VGG.FREEZE_AT", -1), "MODEL.VGG.FREEZE_AT"),
        (("MODEL.VGG.OUT_FEATURES", ["conv3"], "MODEL.VGG.FREEZE_AT", 4), "MODEL.VGG.FREEZE_AT"),
    ],
)
def test_bad_backbone_config_names_the_key(vgg_faster_rcnn_cfg, overrides, key):
    cfg = vgg_faster_rcnn_cfg(*overrides)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_backbone(cfg)


@pytest.mark.parametrize(
    "overrides, in_channels, key",
    [
        (("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 14), 512, "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION"),
        ((), 256, "MODEL.ROI_HEADS.IN_FEATURES"),
        (("MODEL.ROI_BOX_HEAD.VGG.FC_DIM", 0), 512, "MODEL.ROI_BOX_HEAD.VGG.FC_DIM"),
        (("MODEL.ROI_BOX_HEAD.VGG.DROPOUT", 1.0), 512, "MODEL.ROI_BOX_HEAD.VGG.DROPOUT"),
    ],
)
def test_bad_box_head_config_names_the_key(vgg_faster_rcnn_cfg, overrides, in_channels, key):
    cfg = vgg_faster_rcnn_cfg(*overrides)
    features = {"conv5": ShapeSpec(channels=in_channels, stride=16)}
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_roi_heads(cfg, features)


def test_a_narrower_head_takes_any_pooler_resolution(vgg_faster_rcnn_cfg):
    cfg = vgg_faster_rcnn_cfg(
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 14, "MODEL.ROI_BOX_HEAD.VGG.FC_DIM", 64,
        "MODEL.ROI_BOX_HEAD.VGG.DROPOUT", 0.0,
    )
    roi_heads = build_roi_heads(cfg, {"conv5": ShapeSpec(channels=512, stride=16)})
    head = roi_heads.box_head
    assert head.fc6.in_features == 512 * 14 * 14 and head.output_shape == ShapeSpec(channels=64)
    assert head(torch.randn(2, 512, 14, 14)).shape == (2, 64)
