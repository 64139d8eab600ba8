"""The classifiers: paper parameter counts, torchvision equivalence, test-time views, the
evaluator and the training mapper."""
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from detectron2.modeling import build_model

from conftest import fast_subset
from resnet_backbone.classification import ClassificationEvaluator
from resnet_backbone.classification.cifar import make_cifar_resnet
from resnet_backbone.classification.data import ClassificationMapper
from resnet_backbone.classification.views import resize_shorter_side, ten_crops
from resnet_backbone.weights.convert import convert_torchvision_resnet


RESNET18 = "ImageNet-Classification/resnet18.yaml"
RESNET20 = "CIFAR-10/resnet20.yaml"


@pytest.fixture
def classifier_cfg(shipped_config):
    """`classifier_cfg(name, **overrides)`: the shipped classification config `name` (default:
    ImageNet ResNet-18) with `overrides` {KEY: value}."""

    def build(name=RESNET18, **overrides):
        return shipped_config(name, *(item for pair in overrides.items() for item in pair))

    return build


# Paper Table 6 (CIFAR-10), "# params": 0.27M, 0.46M, 0.66M, 0.85M, 1.7M, 19.4M.
@pytest.mark.parametrize("depth, millions", fast_subset(
    [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7), (1202, 19.4)],
    fast=[(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)]))  # 1202: slow to build
def test_cifar_networks_have_the_papers_parameter_counts(depth, millions):
    with torch.device("meta"):
        backbone = make_cifar_resnet(depth)
    count = sum(p.numel() for p in backbone.parameters()) + 64 * 10 + 10  # + the 10-way fc
    assert round(count / 1e6, 2 if millions < 1 else 1) == millions


def test_cifar_plain_net_and_option_a_add_no_parameters_over_each_other():
    residual = sum(p.numel() for p in make_cifar_resnet(20, shortcut="A").parameters())
    plain = sum(p.numel() for p in make_cifar_resnet(20, residual=False).parameters())
    projected = sum(p.numel() for p in make_cifar_resnet(20, shortcut="B").parameters())
    assert residual == plain < projected
    out = make_cifar_resnet(20)(torch.zeros(2, 3, 32, 32))["res4"]
    assert out.shape == (2, 64, 8, 8)


def test_cifar_depth_must_be_6n_plus_2():
    with pytest.raises(ValueError, match="MODEL.RESNETS.DEPTH=21"):
        make_cifar_resnet(21)


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_classifier_computes_what_torchvision_computes(classifier_cfg, depth):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, f"resnet{depth}")().eval()
    # torchvision's placement of the stride and its pixel format
    cfg = classifier_cfg(f"ImageNet-Classification/resnet{depth}.yaml", **{
        "MODEL.RESNETS.STRIDE_IN_1X1": False, "INPUT.FORMAT": "RGB"})
    model = build_model(cfg).eval()
    state = {f"backbone.{k}": v for k, v in
             convert_torchvision_resnet(reference.state_dict()).items()}
    state["head.fc.weight"], state["head.fc.bias"] = reference.fc.weight, reference.fc.bias
    model.load_state_dict(state)
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    normalized = ((image.float() - model.pixel_mean) / model.pixel_std)[None]
    with torch.no_grad():
        expected = reference(normalized)
        ours = model.head(model._features(normalized))
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_vgg16_classifier_has_torchvisions_parameters_and_a_dense_form(classifier_cfg):
    model = build_model(classifier_cfg("ImageNet-Classification/vgg16.yaml")).eval()
    with torch.device("meta"):  # only counted: no 138M weights to initialise
        reference = torchvision.models.vgg16()
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in reference.parameters())
    features = torch.randn(1, 512, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(model.head.dense_forward(features), model.head(features))


def _crop_set(crops):
    return sorted(tuple(c.flatten().tolist()) for c in crops)


@pytest.mark.parametrize("region, columns", [("square", slice(1, 7)), ("image", slice(0, 8))])
def test_ten_crops_are_the_corners_the_centre_and_their_flips(region, columns):
    """A 6x8 image: the corners of its central 6x6 square (columns 1..6), or of the whole image;
    the centre crop either way, and the flips of all five."""
    image = torch.arange(6 * 8, dtype=torch.float32).view(1, 6, 8)
    crops = ten_crops(image, 4, region=region)
    assert crops.shape == (10, 1, 4, 4)
    area = image[:, :, columns]
    width = area.shape[-1]
    five = [area[:, y:y + 4, x:x + 4] for y, x in ((0, 0), (0, width - 4), (2, 0),
                                                   (2, width - 4))] + [image[:, 1:5, 2:6]]
    assert _crop_set(crops) == _crop_set(five + [c.flip(-1) for c in five])


@pytest.mark.parametrize("region", ["square", "image"])
def test_ten_crop_testing_on_a_photo_matches_torchvisions_pil_pipeline(region):
    """The views of a non-square RGB photo as torchvision's PIL transforms make them: Resize
    (bilinear, which PIL antialiases), CenterCrop to the square (region "square", the cited
    protocol), TenCrop; equal up to PIL's rounding to uint8."""
    from torchvision import transforms

    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 90)[None, :, None] * np.ones((60, 1, 3))
    photo = np.clip(ramp + rng.normal(0, 20, (60, 90, 3)), 0, 255).astype(np.uint8)
    steps = [transforms.Resize(40), transforms.CenterCrop(40)] if region == "square" else \
        [transforms.Resize(40)]
    pipeline = transforms.Compose(steps + [transforms.TenCrop(32)])
    expected = torch.stack([transforms.functional.pil_to_tensor(c).float()
                            for c in pipeline(Image.fromarray(photo))])
    resized = resize_shorter_side(torch.as_tensor(photo).permute(2, 0, 1).float(), 40)
    crops = ten_crops(resized, 32, region=region)
    torch.testing.assert_close(crops, expected, rtol=0, atol=1.5)
    other = ten_crops(resized, 32, region="image" if region == "square" else "square")
    assert (other - expected).abs().amax() > 20  # the two regions differ on this photo


@pytest.mark.parametrize("mode", ["center", "10crop", "multiscale"])
def test_every_test_mode_gives_one_distribution_per_image(classifier_cfg, mode):
    cfg = classifier_cfg(**{"MODEL.CLASSIFIER.TEST_MODE": mode,
                            "MODEL.CLASSIFIER.TEST_RESIZE": 40, "MODEL.CLASSIFIER.TEST_CROP": 32,
                            "MODEL.CLASSIFIER.TEST_SCALES": [32, 48]})
    model = build_model(cfg).eval()
    with torch.no_grad():
        outputs = model([{"image": torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8)}] * 2)
    assert len(outputs) == 2
    for output in outputs:
        assert output["scores"].shape == (1000,)
        assert float(output["scores"].sum()) == pytest.approx(1.0, abs=1e-5)


def test_evaluator_counts_top1_and_top5_once_per_image():
    evaluator = ClassificationEvaluator("any", distributed=False)
    evaluator.reset()
    scores = torch.tensor([0.5, 0.2, 0.1, 0.08, 0.07, 0.05])
    inputs = [{"image_id": 0, "label": 0}, {"image_id": 1, "label": 4},
              {"image_id": 2, "label": 5}, {"image_id": 0, "label": 0}]
    evaluator.process(inputs, [{"scores": scores}] * 4)
    result = evaluator.evaluate()["classification"]
    assert result["num_images"] == 3
    assert result["top1_err"] == pytest.approx(100 * 2 / 3)
    assert result["top5_err"] == pytest.approx(100 * 1 / 3)


def _normalized(cfg, image):
    """What the model makes of a mapper's image: MODEL.PIXEL_MEAN / PIXEL_STD, INPUT.FORMAT."""
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)
    return (image - mean) / torch.tensor(cfg.MODEL.PIXEL_STD).view(3, 1, 1)


def _windows(padded, size):
    """Every size x size window of a (C, H, W) tensor and of its flip."""
    height, width = padded.shape[-2:]
    views = [padded, padded.flip(-1)]
    return [v[:, y:y + size, x:x + size] for v in views
            for y in range(height - size + 1) for x in range(width - size + 1)]


@pytest.mark.parametrize("input_format", ["BGR", "RGB"])
def test_training_crops_are_windows_of_the_image_padded_with_zeros_after_normalization(
        classifier_cfg, input_format):
    """Sec. 4.2: 4 pixels padded on each side of the normalized image (so the padding is 0 to
    the network), a random 32x32 crop or its flip; channels in INPUT.FORMAT."""
    cfg = classifier_cfg(**{"INPUT.CLS.SHORT_SIDE_RANGE": [], "INPUT.CLS.CROP": 8,
                            "INPUT.CLS.PAD": 2, "INPUT.CLS.LIGHTING_STD": 0.0,
                            "INPUT.FORMAT": input_format,
                            "MODEL.PIXEL_STD": [2.0, 4.0, 5.0]})
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    record = {"image": rgb, "label": 7, "image_id": 0, "file_name": "x"}
    in_format = torch.as_tensor(rgb).permute(2, 0, 1).float()
    if input_format == "BGR":
        in_format = in_format.flip(0)
    padded = torch.nn.functional.pad(_normalized(cfg, in_format), (2, 2, 2, 2))  # zeros
    windows = _windows(padded, 8)
    np.random.seed(0)
    torch.manual_seed(0)
    mapper = ClassificationMapper(cfg, is_train=True)
    crops = [_normalized(cfg, mapper(record)["image"]) for _ in range(30)]
    for crop in crops:
        assert crop.shape == (3, 8, 8)
        assert min(float((crop - w).abs().max()) for w in windows) < 1e-5
    assert any(bool((crop == 0).all(dim=0).any()) for crop in crops)  # some reach the padding
    test = ClassificationMapper(cfg, is_train=False)(record)
    assert torch.equal(test["image"], in_format) and test["label"] == 7


def test_per_pixel_mean_is_the_training_sets_mean_image(classifier_cfg, tmp_path):
    """INPUT.CLS.MEAN "pixel": what the network sees is the image minus the mean image of
    DATASETS.TRAIN (test and training alike), and the padding is still zero."""
    from detectron2.data import DatasetCatalog

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    records = [{"image": image, "label": 0, "image_id": i, "file_name": f"r{i}"}
               for i, image in enumerate(images)]
    DatasetCatalog.register("pixel_mean_train", lambda: records)
    try:
        cfg = classifier_cfg(RESNET20, **{"INPUT.CLS.CROP": 8, "INPUT.CLS.PAD": 2,
                                          "INPUT.CLS.MEAN": "pixel", "INPUT.FORMAT": "BGR",
                                "DATASETS.TRAIN": ("pixel_mean_train",)})
        mean_rgb = images.astype(np.float64).mean(axis=0)
        expected = torch.as_tensor(images[2] - mean_rgb, dtype=torch.float32).permute(2, 0, 1)
        expected = expected.flip(0)  # BGR
        test = ClassificationMapper(cfg, is_train=False)(records[2])["image"]
        torch.testing.assert_close(_normalized(cfg, test), expected, rtol=0, atol=1e-4)
        windows = _windows(torch.nn.functional.pad(expected, (2, 2, 2, 2)), 8)
        np.random.seed(0)
        torch.manual_seed(0)
        crop = _normalized(cfg, ClassificationMapper(cfg, is_train=True)(records[2])["image"])
        assert min(float((crop - w).abs().max()) for w in windows) < 1e-4
    finally:
        DatasetCatalog.remove("pixel_mean_train")


def test_per_pixel_mean_names_its_key_for_images_read_from_files(classifier_cfg, tmp_path):
    from resnet_backbone.classification.data import register_image_folder

    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "0.png")
    register_image_folder("pixel_mean_folder", str(tmp_path))
    cfg = classifier_cfg(RESNET20, **{"INPUT.CLS.MEAN": "pixel",
                                      "DATASETS.TRAIN": ("pixel_mean_folder",)})
    with pytest.raises(ValueError, match="INPUT.CLS.MEAN='pixel'.*pixel_mean_folder"):
        ClassificationMapper(cfg, is_train=True)
    cfg = classifier_cfg(**{"INPUT.CLS.MEAN": "image"})
    with pytest.raises(ValueError, match="INPUT.CLS.MEAN='image'"):
        ClassificationMapper(cfg, is_train=False)


def test_training_and_test_resize_use_one_antialiased_filter(classifier_cfg):
    """Shrinking fine stripes 48 -> 40: the training crop equals PIL's bilinear (antialiased)
    resize, which is also what 10-crop/centre testing sees; without antialiasing the stripes
    alias into bands of large amplitude."""
    stripes = np.zeros((48, 48, 3), dtype=np.uint8)
    stripes[:, ::2] = 255
    cfg = classifier_cfg(**{"INPUT.CLS.SHORT_SIDE_RANGE": [40, 40], "INPUT.CLS.CROP": 40,
                            "INPUT.CLS.LIGHTING_STD": 0.0, "INPUT.RANDOM_FLIP": "none",
                            "INPUT.FORMAT": "RGB"})
    record = {"image": stripes, "label": 0, "image_id": 0, "file_name": "stripes"}
    trained_on = ClassificationMapper(cfg, is_train=True)(record)["image"]
    pil = np.array(Image.fromarray(stripes).resize((40, 40), Image.BILINEAR))
    expected = torch.as_tensor(pil).permute(2, 0, 1).float()
    torch.testing.assert_close(trained_on, expected, rtol=0, atol=1.0)
    tested_on = resize_shorter_side(torch.as_tensor(stripes).permute(2, 0, 1).float(), 40)
    torch.testing.assert_close(tested_on, trained_on)


def test_a_bad_test_mode_is_named_with_its_key(classifier_cfg):
    cfg = classifier_cfg(**{"MODEL.CLASSIFIER.TEST_MODE": "5crop"})
    with pytest.raises(ValueError, match="MODEL.CLASSIFIER.TEST_MODE='5crop'"):
        build_model(cfg)


def test_cifar_builder_names_a_bad_shortcut_option(classifier_cfg):
    cfg = classifier_cfg(RESNET20, **{"MODEL.RESNET_BACKBONE.SHORTCUT": "D"})
    with pytest.raises(ValueError, match="MODEL.RESNET_BACKBONE.SHORTCUT='D'"):
        build_model(cfg)


class _MeanColourBackbone(torch.nn.Module):
    """Returns its input as the one feature map: the head then sees the normalized pixels."""

    def forward(self, x):
        return {"pixels": x}


class _MeanColourHead(torch.nn.Module):
    """Logits = mean of each channel over the view; dense form identical."""

    def forward(self, x):
        return x.mean(dim=(2, 3))

    dense_forward = forward


def _known_output_classifier(mode, **options):
    from resnet_backbone.classification.model import ImageClassifier

    return ImageClassifier(backbone=_MeanColourBackbone(), head=_MeanColourHead(), **options,
                           pixel_mean=[0.0, 0.0, 0.0], pixel_std=[100.0, 100.0, 100.0],
                           test_mode=mode, test_resize=6, test_crop=4, test_scales=(6, 9))


@pytest.mark.parametrize("region, corners", [
    ("square", ((0, 1), (0, 3), (2, 1), (2, 3))),  # the central 6x6 square: columns 1..6
    ("image", ((0, 0), (0, 4), (2, 0), (2, 4))),
])
def test_ten_crop_scores_are_the_average_of_the_ten_views_softmax(region, corners):
    torch.manual_seed(0)
    image = torch.rand(3, 6, 8) * 255
    scores = _known_output_classifier("10crop", ten_crop_region=region).classify(image)
    pixels = image / 100
    by_hand = []
    for y, x in corners + ((1, 2),):
        crop = pixels[:, y:y + 4, x:x + 4]
        by_hand += [crop.mean(dim=(1, 2))] * 2  # a flip has the same channel means
    expected = torch.softmax(torch.stack(by_hand), dim=1).mean(dim=0)
    torch.testing.assert_close(scores, expected)
    centre = _known_output_classifier("center").classify(image)
    torch.testing.assert_close(centre, torch.softmax(pixels[:, 1:5, 2:6].mean(dim=(1, 2)), 0))


def test_ten_crop_region_comes_from_the_config_and_a_bad_one_is_named(classifier_cfg):
    model = build_model(classifier_cfg(**{"MODEL.CLASSIFIER.TEN_CROP_REGION": "image"}))
    assert model.ten_crop_region == "image"
    assert build_model(classifier_cfg()).ten_crop_region == "square"
    with pytest.raises(ValueError, match="MODEL.CLASSIFIER.TEN_CROP_REGION='corners'"):
        build_model(classifier_cfg(**{"MODEL.CLASSIFIER.TEN_CROP_REGION": "corners"}))


def test_multiscale_scores_average_every_scale_and_its_flip():
    image = torch.rand(3, 6, 8) * 255
    scores = _known_output_classifier("multiscale").classify(image)
    pixels = image / 100
    by_hand = []
    for size in ((6, 8), (9, 12)):  # shorter side 6 (unchanged) and 9
        view = pixels if size == (6, 8) else torch.nn.functional.interpolate(
            pixels[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        by_hand += [view.mean(dim=(1, 2))] * 2
    expected = torch.softmax(torch.stack(by_hand), dim=1).mean(dim=0)
    torch.testing.assert_close(scores, expected)


def test_cifar10_pickles_load_as_images_with_labels(tmp_path):
    import pickle

    from resnet_backbone.classification.data import load_cifar10

    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8),
                         "labels": [int(x) for x in rng.integers(0, 10, 2)]}
        with open(directory / name, "wb") as f:
            pickle.dump(batches[name], f)
    train = load_cifar10(str(tmp_path), "cifar10_train")
    assert len(train) == 10 and [r["image_id"] for r in train] == list(range(10))
    first = batches["data_batch_1"]
    assert train[0]["label"] == first["labels"][0]
    # The pickled row is the red plane, then green, then blue, each 32x32 row-major.
    assert np.array_equal(train[0]["image"][:, :, 0], first["data"][0, :1024].reshape(32, 32))
    assert np.array_equal(train[1]["image"][:, :, 2], first["data"][1, 2048:].reshape(32, 32))
    assert len(load_cifar10(str(tmp_path), "cifar10_test")) == 2
    with pytest.raises(ValueError, match="10 images cannot give a 5000-image validation set"):
        load_cifar10(str(tmp_path), "cifar10_val5k")
    (directory / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load_cifar10(str(tmp_path), "cifar10_train")


def test_cifar10_45k_5k_split_holds_out_the_last_images_of_the_training_set():
    from detectron2.data import MetadataCatalog

    from resnet_backbone.classification.data import split_train_val

    records = [{"image_id": i} for i in range(50)]
    train, val = (split_train_val(records, part, val_size=5) for part in ("train", "val"))
    assert [r["image_id"] for r in train] == list(range(45))
    assert [r["image_id"] for r in val] == list(range(45, 50))
    assert split_train_val(records, "all", val_size=5) == records
    for name in ("cifar10_train45k", "cifar10_val5k"):
        assert MetadataCatalog.get(name).evaluator_type == "classification"


def test_shape_crops_are_the_objects_labelled_by_class_and_reproducible(tmp_path):
    import pickle

    from resnet_backbone.classification import shapes_crops
    from resnet_backbone.data import SyntheticParams, render_sample

    params = SyntheticParams(seed=3, num_train=4, num_val=2, min_side=64, max_side=80)
    directory = tmp_path / shapes_crops.DIRNAME
    records = shapes_crops.load_shapes_crops(str(directory), "train", params)
    objects = [obj for i in range(4) for obj in render_sample(params, "train", i)[1]]
    assert [r["label"] for r in records] == [obj["category_id"] for obj in objects]
    assert all(r["image"].shape == (32, 32, 3) and r["image"].dtype == np.uint8 for r in records)
    written = (directory / "train_batch").read_bytes()
    (directory / "train_batch").unlink()
    shapes_crops.ensure_batch(str(directory), "train", params)
    assert (directory / "train_batch").read_bytes() == written
    # a batch made with other parameters is made again
    other = SyntheticParams(seed=4, num_train=4, num_val=2, min_side=64, max_side=80)
    shapes_crops.ensure_batch(str(directory), "train", other)
    assert pickle.loads((directory / "train_batch").read_bytes())["batch_label"] == \
        shapes_crops.batch_label("train", other)


def test_shape_crop_is_the_square_around_the_box_edges_extended():
    from resnet_backbone.classification.shapes_crops import crop_object

    image = np.zeros((40, 40, 3), dtype=np.uint8)
    image[10:26, 10:26] = 255  # a 16x16 white square: its 20x20 crop has a 2-pixel black margin
    crop = crop_object(image, [10, 10, 26, 26], size=20)
    assert crop[2:18, 2:18].min() == 255 and crop[:2].max() == 0 and crop[:, 18:].max() == 0
    corner = crop_object(image, [0, 0, 8, 8], size=10)  # beyond the border: edge pixels repeat
    assert corner.shape == (10, 10, 3) and corner.max() == 0


def test_shape_crops_are_registered_as_classification_sets(tmp_path, monkeypatch):
    from detectron2.data import MetadataCatalog

    from resnet_backbone.classification.shapes_crops import SPLITS
    from resnet_backbone.data import SHAPE_CLASSES

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    for name in SPLITS:
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "classification"
        assert meta.thing_classes == list(SHAPE_CLASSES)
        assert meta.dirname == str(tmp_path / "synthetic_shapes_cls")
    assert not list(tmp_path.iterdir())  # nothing is drawn before a split is loaded


def test_full_mode_scores_a_batch_as_each_image_alone(classifier_cfg):
    cfg = classifier_cfg(RESNET20, **{"MODEL.CLASSIFIER.TEST_MODE": "full"})
    model = build_model(cfg).eval()
    images = [{"image": torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)} for _ in range(3)]
    with torch.no_grad():
        batched = model(images)
        alone = [model([image])[0] for image in images]
    for together, single in zip(batched, alone):
        torch.testing.assert_close(together["scores"], single["scores"])


def test_fast_path_switches_apply_to_the_classifier_with_the_same_scores(classifier_cfg):
    """ClassificationTrainer builds through the engine's Trainer.build_model, so the detection
    fast path (folded BN at inference, channels_last) reaches the classifier too."""
    from resnet_backbone.classification.trainer import ClassificationTrainer
    from resnet_backbone.modeling.fast_path import FoldedNormConv2d

    overrides = {"MODEL.CLASSIFIER.TEST_MODE": "center", "MODEL.CLASSIFIER.TEST_RESIZE": 40,
                 "MODEL.CLASSIFIER.TEST_CROP": 32}
    torch.manual_seed(0)
    default = ClassificationTrainer.build_model(classifier_cfg(**overrides)).eval()
    fast = ClassificationTrainer.build_model(classifier_cfg(**overrides, **{
        "MODEL.FAST_PATH.FOLD_FROZEN_BN": True, "MODEL.FAST_PATH.CHANNELS_LAST": True})).eval()
    fast.load_state_dict(default.state_dict())
    assert isinstance(fast.backbone.res3[0].conv1, FoldedNormConv2d)
    image = torch.randint(0, 256, (3, 48, 56), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(fast([{"image": image}])[0]["scores"],
                                   default([{"image": image}])[0]["scores"],
                                   rtol=1e-4, atol=1e-6)
