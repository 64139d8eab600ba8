"""Export (resnet_backbone.export, tools/export_model.py): every shipped config's backbone scripts;
the whole detector of each design (C4 ResNet, FPN, VGG-16) traced, scripted and as ONNX in
onnxruntime gives the eager detections at two input sizes; the tool writes what it says and
stops with a clear message on what it cannot do.

Weights are seeded random. The design tests use small models (depth 18, VGG-16 with a 256-wide
box head); the slow test builds every shipped config at its own depth and sets its norm
statistics from the image. The fast subset exports the C4 design and scripts the backbones of
a few configs (basic and bottleneck blocks, plain, SyncBN, FPN, VGG-16); `make test` all. MSRA-pixel configs get torchvision's PIXEL_STD: untrained networks
without normalisation otherwise reach activations in the thousands, whose RPN deltas saturate
and turn float rounding into visible box differences; trained weights do not do that.
"""
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from detectron2.evaluation import inference_on_dataset
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_backbone, build_model
from torch import nn

from conftest import fast_subset
from resnet_backbone import model_zoo
from resnet_backbone.data.evaluation import build_evaluator
from resnet_backbone.export import (
    ExportMismatchError,
    OUTPUT_NAMES,
    compare_detections,
    export_onnx,
    prepare_for_export,
    run_onnx,
    script_detector,
    trace_detector,
)
from resnet_backbone.export.detector import as_batchnorm
from resnet_backbone.modeling.resnet import make_resnet
from resnet_backbone.runs import YamlModelRun
from resnet_backbone.modeling.vgg import make_vgg16

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import export_model  # noqa: E402  (tools/export_model.py)

warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

DETECTION_LEAVES = [
    name for name in model_zoo.list_configs()
    if name.split("/")[0] in ("PascalVOC-Detection", "COCO-Detection", "Demo")
    and name.endswith(".yaml")
    and not Path(name).name.startswith("Base-")
]
TORCHVISION_STD = ["MODEL.PIXEL_STD", "[58.395, 57.12, 57.375]"]
SMALL = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "INPUT.MIN_SIZE_TEST", "96",
         "INPUT.MAX_SIZE_TEST", "160", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.05"]
# Random fc6/fc7 give nearly uniform class scores, about 1/21: keep those above, but not the
# exactly uniform ones of all-zero RoI features, whose ties leave the choice among them to the
# order of each runtime's sort (Detectron2's 0.05 would keep no detection at all).
VGG_SCORES = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.048"]
DESIGNS = {
    "C4": ("Demo/resnet18_c4_synthetic.yaml", []),
    "C4-SyncBN": ("PascalVOC-Detection/resnet18_c4_scratch_voc0712.yaml", []),
    "FPN": ("PascalVOC-Detection/resnet50_fpn_voc0712.yaml",
            ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
             *TORCHVISION_STD]),
    "VGG16": ("PascalVOC-Detection/vgg16_voc0712.yaml",
              ["MODEL.ROI_BOX_HEAD.VGG.FC_DIM", "256", *VGG_SCORES]),
}
SIZES = [(96, 128), (120, 88)]  # traced at the first, checked at both: H and W both change
# The backbones scripted in the fast subset: one of each kind.
REPRESENTATIVE_LEAVES = ("Demo/resnet18_c4_synthetic.yaml", "Demo/plain18_c4_synthetic.yaml",
                         "PascalVOC-Detection/resnet18_c4_scratch_voc0712.yaml",
                         "PascalVOC-Detection/resnet50_fpn_voc0712.yaml",
                         "PascalVOC-Detection/vgg16_voc0712.yaml")


def small_config(name, overrides=()):
    cfg = model_zoo.get_config(name)
    cfg.merge_from_list([*SMALL, *overrides])
    return cfg


def image_of_size(height, width, seed=0):
    """A smooth random image (a blurred noise field, 0..255): RPN and box head see structure."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, height // 8, width // 8, generator=generator)
    return F.interpolate(noise, size=(height, width), mode="bilinear")[0] * 255


@pytest.fixture(scope="module", params=fast_subset(sorted(DESIGNS), fast=("C4",)))
def detector(request):
    name, overrides = DESIGNS[request.param]
    torch.manual_seed(0)
    return prepare_for_export(build_model(small_config(name, overrides)))


def eager(detector, image):
    with torch.no_grad():
        return detector(image)


# Tighter than the tool's defaults, with a margin over what was measured (torch 2.14,
# onnxruntime 1.32): TorchScript equal to the last bit, ONNX within 3e-5 px and 1e-7 in score.
TORCHSCRIPT_TOLERANCE = dict(box_tolerance=1e-4, score_tolerance=1e-6)
ONNX_TOLERANCE = dict(box_tolerance=1e-3, score_tolerance=1e-5)


def assert_same_detections(detector, run, what, tolerance):
    for size in SIZES:
        image = image_of_size(*size)
        expected = eager(detector, image)
        assert len(expected[0]) > 0, "no detections: the comparison would be empty"
        compare_detections(expected, run(image), what=what, size=size, **tolerance)


@pytest.mark.parametrize("name", fast_subset(DETECTION_LEAVES, fast=REPRESENTATIVE_LEAVES))
def test_backbone_of_every_shipped_config_scripts(name):
    cfg = model_zoo.get_config(name)
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    as_batchnorm(backbone)  # what the export does; SyncBN's forward does not script
    scripted = torch.jit.script(backbone)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected, actual = backbone(x), scripted(x)
    assert list(actual) == list(expected)
    for feature in expected:
        torch.testing.assert_close(actual[feature], expected[feature], rtol=0, atol=0)


VARIANTS = [
    dict(depth=18, shortcut="A"), dict(depth=18, shortcut="C"), dict(depth=18, residual=False),
    dict(depth=50, shortcut="A", out_features=["res2", "res5"]), dict(depth=50, residual=False),
]


# Every variant under `make test`; in the fast subset shortcut A and a plain net, of basic and
# bottleneck blocks.
@pytest.mark.parametrize("options", fast_subset(VARIANTS, fast=[VARIANTS[i] for i in (0, 2, 3)]),
                         ids=[f"options{index}" for index in range(len(VARIANTS))])
def test_every_resnet_variant_scripts(options):
    torch.manual_seed(0)
    backbone = make_resnet(**options).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, actual = backbone(x), torch.jit.script(backbone)(x)
    for feature in expected:
        torch.testing.assert_close(actual[feature], expected[feature], rtol=0, atol=0)


def test_vgg16_scripts_and_keeps_its_parameter_names():
    torch.manual_seed(0)
    vgg = make_vgg16(out_features=["conv3", "conv5"]).eval()
    names = list(vgg.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected, actual = vgg(x), torch.jit.script(vgg)(x)
    assert list(actual) == ["conv3", "conv5"]
    for feature in expected:
        torch.testing.assert_close(actual[feature], expected[feature], rtol=0, atol=0)
    assert list(vgg.state_dict()) == names and names[0] == "conv1_1.weight"


def test_syncbn_becomes_batchnorm_with_the_same_statistics():
    norm = torch.nn.SyncBatchNorm(8).eval()
    norm.running_mean.uniform_()
    model = torch.nn.Sequential(norm)
    x = torch.randn(2, 8, 4, 4)
    expected = norm(x)
    assert as_batchnorm(model) == 1
    assert type(model[0]) is torch.nn.BatchNorm2d
    torch.testing.assert_close(model[0](x), expected)


def test_traced_torchscript_gives_the_eager_detections(detector):
    traced = trace_detector(detector, image_of_size(*SIZES[0]))
    assert_same_detections(detector, lambda x: tuple(traced(x)), "traced TorchScript",
                           TORCHSCRIPT_TOLERANCE)


def test_scripted_torchscript_gives_the_eager_detections(detector, tmp_path):
    path = tmp_path / "model.ts"
    torch.jit.save(script_detector(detector), str(path))
    loaded = torch.jit.load(str(path))
    assert_same_detections(detector, lambda x: tuple(loaded(x)), "scripted TorchScript",
                           TORCHSCRIPT_TOLERANCE)


def test_onnx_in_onnxruntime_gives_the_eager_detections(detector, tmp_path):
    path = tmp_path / "model.onnx"
    export_onnx(detector, image_of_size(*SIZES[0]), path)
    assert_same_detections(detector, lambda x: run_onnx(path, x), "ONNX", ONNX_TOLERANCE)


def normalise_activations(detector, image):
    """Give every norm layer the statistics of its input on `image` (one pass, in forward order),
    as a trained network's are. Random ResNet-101/152 otherwise reach activations near 1e5 at
    res4, and their RPN proposes no box at all."""
    def set_statistics(norm, inputs):
        norm.running_mean.copy_(inputs[0].mean(dim=(0, 2, 3)))
        norm.running_var.copy_(inputs[0].var(dim=(0, 2, 3)))

    norms = [m for m in detector.modules() if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d))]
    handles = [norm.register_forward_pre_hook(set_statistics) for norm in norms]
    try:
        eager(detector, image)
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.slow
@pytest.mark.parametrize("name", DETECTION_LEAVES)
def test_every_shipped_detector_traces_and_scripts_whole(name):
    """At the config's own depth and head width; on one image size (the designs above cover
    two sizes and ONNX)."""
    torch.manual_seed(0)
    cfg = small_config(name, TORCHVISION_STD)
    # Random networks score nearly uniformly: keep what is just above the uniform score.
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 1.001 / (cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1)
    detector = prepare_for_export(build_model(cfg))
    image = image_of_size(*SIZES[1])
    normalise_activations(detector, image)
    expected = eager(detector, image)
    assert len(expected[0]) > 0, "no detections: the comparison would be empty"
    traced, scripted = trace_detector(detector, image_of_size(*SIZES[0])), script_detector(detector)
    with torch.no_grad():
        for what, exported in (("traced", traced), ("scripted", scripted)):
            compare_detections(expected, tuple(exported(image)), what=f"{name} {what}",
                               **TORCHSCRIPT_TOLERANCE)


def test_compare_detections_reports_what_differs():
    boxes, scores, classes = torch.rand(3, 4) * 100, torch.rand(3), torch.tensor([0, 1, 2])
    assert compare_detections((boxes, scores, classes), (boxes, scores, classes)) == {
        "detections": 3, "max_box_difference_px": 0.0, "max_score_difference": 0.0}
    with pytest.raises(ExportMismatchError, match="2 detections, the eager model 3"):
        compare_detections((boxes, scores, classes), (boxes[:2], scores[:2], classes[:2]))
    with pytest.raises(ExportMismatchError, match="boxes differ .* by up to 0.5 px"):
        compare_detections((boxes, scores, classes), (boxes + 0.5, scores, classes))
    with pytest.raises(ExportMismatchError, match="other classes"):
        compare_detections((boxes, scores, classes), (boxes, scores, classes + 1))
    with pytest.raises(ExportMismatchError, match="boxes differ"):  # a class on another box
        compare_detections((boxes, scores, classes), (boxes, scores, classes.flip(0)))


def test_compare_detections_accepts_ties_in_another_order():
    """Equal scores leave the order of their detections to the sort of each runtime."""
    boxes, scores = torch.rand(4, 4) * 100, torch.tensor([0.5, 0.2, 0.2, 0.1])
    classes = torch.tensor([3, 1, 2, 1])
    order = torch.tensor([0, 2, 1, 3])
    result = compare_detections((boxes, scores, classes),
                                (boxes[order], scores[order], classes[order]))
    assert result["max_box_difference_px"] == 0.0 and result["max_score_difference"] == 0.0


# --- tools/export_model.py -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_image(tmp_path_factory):
    import cv2

    path = tmp_path_factory.mktemp("sample") / "sample.png"
    cv2.imwrite(str(path), image_of_size(120, 150).permute(1, 2, 0).byte().numpy())
    return path


@pytest.mark.parametrize("fmt, method", fast_subset([
    ("torchscript", "tracing"), ("torchscript", "scripting"), ("onnx", "tracing")],
    fast=[("torchscript", "tracing")]))
def test_export_model_writes_a_checked_file(fmt, method, sample_image, tmp_path, capsys):
    name, overrides = DESIGNS["C4"]
    path = export_model.main([
        "--config-file", model_zoo.get_config_file(name), "--format", fmt,
        "--export-method", method, "--output", str(tmp_path), "--sample-image", str(sample_image),
        *SMALL, *overrides,
    ])
    assert Path(path) == tmp_path / {"torchscript": "model.ts", "onnx": "model.onnx"}[fmt]
    info = json.loads((tmp_path / "export.json").read_text())
    assert info["outputs"] == list(OUTPUT_NAMES) and info["input"]["channel_order"] == "RGB"
    sizes = [check["image_size"] for check in info["checks"]]
    assert sizes == [[96, 120], [72, 90]]  # the sample at the test size, and at 3/4 of it
    assert all(check["detections"] > 0 for check in info["checks"])
    assert f"{fmt} ({method}) vs eager on a 96x120 image" in capsys.readouterr().out


@pytest.mark.slow  # a whole export (its check replaced by a mismatch)
def test_a_failed_check_leaves_no_export_json(sample_image, tmp_path, monkeypatch):
    """export.json vouches for the file: not even the one of an earlier export may remain."""
    (tmp_path / "export.json").write_text("{}")

    def mismatch(*args, **kwargs):
        raise ExportMismatchError("boxes differ")

    monkeypatch.setattr(export_model, "compare_detections", mismatch)
    name, overrides = DESIGNS["C4"]
    with pytest.raises(SystemExit, match="the exported file is at .*model.ts, export.json was not"):
        export_model.main(["--config-file", model_zoo.get_config_file(name), "--output",
                           str(tmp_path), "--sample-image", str(sample_image), *SMALL, *overrides])
    assert (tmp_path / "model.ts").exists() and not (tmp_path / "export.json").exists()


@pytest.mark.slow  # tools/export_model.py in a subprocess
def test_export_model_loads_the_weights_and_traces_on_the_first_test_image(train_net, tmp_path):
    """In a subprocess on the synthetic data: without --sample-image the first image of
    DATASETS.TEST[0] is used; the file holds the weights of MODEL.WEIGHTS."""
    name, overrides = DESIGNS["C4"]
    cfg = small_config(name, overrides)
    torch.manual_seed(1)
    model = build_model(cfg)
    weights = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict()}, weights)
    output = tmp_path / "exported"
    run = train_net("--output", str(output), *SMALL, *overrides, "MODEL.WEIGHTS", str(weights),
                    config=model_zoo.get_config_file(name),
                    script=ROOT / "tools" / "export_model.py")
    assert run.returncode == 0, run.stderr
    info = json.loads((output / "export.json").read_text())
    assert Path(info["sample_image"]).name == "val_000000.jpg"
    image = export_model.read_sample_image(YamlModelRun(cfg), info["sample_image"])
    expected = eager(prepare_for_export(model), image)
    assert len(expected[0]) > 0
    compare_detections(expected, tuple(torch.jit.load(str(output / "model.ts"))(image)),
                       **TORCHSCRIPT_TOLERANCE)


@pytest.mark.slow  # a whole export and its check, for the way the flags are given
def test_export_model_takes_detectron2_style_opts(sample_image, tmp_path):
    name, overrides = DESIGNS["C4"]
    export_model.main([
        "--config-file", model_zoo.get_config_file(name), "--output", str(tmp_path),
        "--sample-image", str(sample_image), "--opts", *SMALL, *overrides,
    ])
    assert json.loads((tmp_path / "export.json").read_text())["opts"] == [*SMALL, *overrides]


@pytest.mark.slow  # exports, then evaluates the file and the eager model on the test set
def test_run_eval_evaluates_the_exported_file_as_the_eager_model(sample_image, tmp_path,
                                                                  datasets_dir, monkeypatch):
    """--run-eval (Detectron2's flag): the exported file over DATASETS.TEST[0] with training's
    evaluator scores what the eager model with the same weights scores."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets_dir))
    name, overrides = DESIGNS["C4"]
    options = [*overrides, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
    cfg = small_config(name, options)
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    weights = tmp_path / "model_final.pth"
    torch.save({"model": model.state_dict()}, weights)
    out = tmp_path / "exported"
    export_model.main(["--config-file", model_zoo.get_config_file(name), "--output", str(out),
                       "--sample-image", str(sample_image), "--run-eval", *SMALL, *options,
                       "MODEL.WEIGHTS", str(weights)])
    exported = json.loads((out / "export.json").read_text())["evaluation"]
    run = YamlModelRun(cfg)
    name_of_test_set = run.test_datasets[0]
    eager = inference_on_dataset(model, run.test_loader(name_of_test_set),
                                 build_evaluator(None, name_of_test_set, str(tmp_path / "eager")))
    assert exported["bbox"]["AP50"] == pytest.approx(eager["bbox"]["AP50"], abs=1e-6)
    assert exported["bbox"]["AP"] == pytest.approx(eager["bbox"]["AP"], abs=1e-6)


def run_failing(capsys, *args):
    with pytest.raises(SystemExit) as stop:
        export_model.main(list(args))
    return str(stop.value.code) + capsys.readouterr().err


def test_scripting_to_onnx_says_why_not(capsys, tmp_path):
    message = run_failing(capsys, "--config-file", model_zoo.get_config_file(DESIGNS["C4"][0]),
                          "--format", "onnx", "--export-method", "scripting",
                          "--output", str(tmp_path))
    assert "ONNX needs --export-method tracing" in message
    assert "Box2BoxTransform" in message
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, expected", [
    (["--sample-image", "missing.png"], "--sample-image missing.png: no such file"),
    (["--sample-image", __file__], "not a readable image"),
    (["MODEL.DEVICE", "cpu", "DATASETS.TEST", "()"], "DATASETS.TEST is empty"),
    (["MODEL.DEVICE", "cpu", "DATASETS.TEST", "('no_such_set',)"],
     "DATASETS.TEST[0]='no_such_set' gives no image"),
    (["MODEL.NO_SUCH_KEY", "1"], "MODEL.NO_SUCH_KEY"),
])
def test_bad_input_names_the_flag_or_key(args, expected, capsys, tmp_path):
    config = model_zoo.get_config_file(DESIGNS["C4"][0])
    message = run_failing(capsys, "--config-file", config, "--output", str(tmp_path), *args)
    assert expected in message


def test_onnx_without_onnxruntime_says_what_to_install(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    message = run_failing(capsys, "--config-file", model_zoo.get_config_file(DESIGNS["C4"][0]),
                          "--format", "onnx", "--output", str(tmp_path))
    assert ("--format onnx needs the package onnxruntime, which the `export` extra installs: "
            "pip install 'resnet_backbone[export]'") in message
    assert not any(tmp_path.iterdir())


def test_missing_config_and_an_output_that_is_a_file_are_named(capsys, tmp_path):
    message = run_failing(capsys, "--config-file", "missing.yaml", "--output", str(tmp_path))
    assert "--config-file missing.yaml: no such file" in message
    output = tmp_path / "model.ts"
    output.write_text("")
    config = model_zoo.get_config_file(DESIGNS["C4"][0])
    message = run_failing(capsys, "--config-file", config, "--output", str(output))
    assert f"--output {output} is a file, not a folder" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given without CUDA")
def test_cuda_config_without_cuda_names_model_device(sample_image, capsys, tmp_path):
    config = model_zoo.get_config_file("PascalVOC-Detection/resnet18_c4_voc0712.yaml")
    message = run_failing(capsys, "--config-file", config, "--output", str(tmp_path),
                          "--sample-image", str(sample_image), "MODEL.WEIGHTS", "")
    assert "MODEL.DEVICE='cuda' but CUDA is not available" in message


def test_a_classifier_config_is_refused_naming_the_key(sample_image, capsys, tmp_path):
    config = model_zoo.get_config_file("ImageNet-Classification/resnet18.yaml")
    message = run_failing(capsys, "--config-file", config, "--output", str(tmp_path),
                          "--sample-image", str(sample_image), "MODEL.DEVICE", "cpu",
                          "MODEL.WEIGHTS", "")
    assert "classification config (MODEL.META_ARCHITECTURE ImageClassifier)" in message
