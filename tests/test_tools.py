"""The command-line tools: analyze_model reproduces Table 1's multiply-adds; benchmark,
draw_detections and gpu_check (rehearsed on the CPU) run end to end."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import fast_subset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import analyze_model  # noqa: E402  (tools/analyze_model.py)
import paper_results as paper  # noqa: E402  (tools/paper_results.py)
import benchmark  # noqa: E402  (tools/benchmark.py)
import benchmark_lib  # noqa: E402  (tools/benchmark_lib.py)


def cells(line):
    return [cell.strip() for cell in line.strip("|").split("|")]


def assert_matches_table1(row, paper_flops):
    assert row["flops"] == pytest.approx(paper_flops, rel=0.05)
    assert row["paper_flops"] == paper_flops
    assert row["relative_difference"] == pytest.approx(row["flops"] / paper_flops - 1)


# Counting a network takes fvcore from a quarter of a second (ResNet-18) to seconds (ResNet-152,
# VGG-16): the fast subset counts one network of each block type, `make test` every one, and the
# whole table through the tool's --json as well.
@pytest.mark.parametrize("depth", fast_subset(sorted(paper.TABLE1_MULTIPLY_ADDS), fast=(18, 50)))
def test_multiply_adds_match_table1(depth):
    (row,) = analyze_model.analyze([depth], plain=False, vgg=False)
    assert row["name"] == f"ResNet-{depth}"
    assert_matches_table1(row, paper.TABLE1_MULTIPLY_ADDS[depth])


@pytest.mark.slow  # VGG-16's 138M parameters
def test_vgg16_multiply_adds_match_the_paper():
    (row,) = analyze_model.analyze([], plain=False, vgg=True)
    assert row["name"] == "VGG-16"
    assert_matches_table1(row, paper.VGG16_MULTIPLY_ADDS)


@pytest.mark.slow
def test_table1_through_the_tool_as_json(tmp_path):
    out = tmp_path / "table1.json"
    analyze_model.main(["--paper-table1", "--no-plain", "--json", str(out)])
    rows = {row["name"]: row for row in json.loads(out.read_text())["networks"]}
    assert list(rows) == [f"ResNet-{d}" for d in sorted(paper.TABLE1_MULTIPLY_ADDS)] + ["VGG-16"]
    for depth, paper_flops in paper.TABLE1_MULTIPLY_ADDS.items():
        assert_matches_table1(rows[f"ResNet-{depth}"], paper_flops)
    assert_matches_table1(rows["VGG-16"], paper.VGG16_MULTIPLY_ADDS)


def test_analyze_model_prints_the_table(capsys):
    analyze_model.main(["--paper-table1", "--depths", "18", "--no-vgg"])
    rows = {cells(line)[0]: cells(line) for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ")}
    assert rows["ResNet-18"] == ["ResNet-18", "BasicBlock, shortcut B", "11.69", "1.82", "1.8",
                                 "+1.1%"]
    assert rows["plain-18"][1:5] == ["BasicBlock", "11.52", "1.80", "1.8"]  # Table 1 holds too


def test_no_paper_reference_where_the_paper_has_none():
    rows = analyze_model.analyze([50], input_size=64, vgg=False)
    assert [(row["name"], row["paper_flops"]) for row in rows] == [
        ("ResNet-50", None), ("plain-50", None)]


def test_every_benchmark_model_has_a_config_and_a_group():
    from resnet_backbone import model_zoo

    for name, (depth, design, implementation) in benchmark_lib.BENCHMARK_MODELS.items():
        cfg = benchmark_lib.detection_cfg(name)
        # the shipped config, with only the device and the RoIs per image set
        shipped = model_zoo.get_config(benchmark_lib.BENCHMARK_CONFIGS[depth, design])
        shipped.MODEL.DEVICE, shipped.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = "cpu", 512
        assert (cfg == shipped) == (implementation in ("ours", "vgg")), name
        assert cfg.MODEL.BACKBONE.FREEZE_AT == 2 and cfg.MODEL.RESNETS.NORM == "FrozenBN"
        assert cfg.MODEL.BACKBONE.NAME.startswith(
            {"ours": "build_paper_resnet", "fast": "build_paper_resnet", "d2": "build_resnet",
             "vgg": "build_vgg16"}[implementation])
        assert cfg.MODEL.FAST_PATH.FOLD_FROZEN_BN == (implementation == "fast")
        if implementation != "vgg":
            assert cfg.MODEL.RESNETS.DEPTH == depth
    groups = benchmark_lib.benchmark_groups(list(benchmark_lib.BENCHMARK_MODELS))
    assert sorted(sum(groups, [])) == sorted(benchmark_lib.BENCHMARK_MODELS)
    assert groups == [["R50-C4", "R50-C4-d2"],
                      ["R101-C4", "R101-C4-d2", "VGG16-C4", "R101-C4-fast"],
                      ["R50-FPN", "R50-FPN-d2"], ["R101-FPN", "R101-FPN-d2"]]
    assert benchmark_lib.benchmark_groups(["VGG16-C4", "R50-FPN"]) == [["VGG16-C4"], ["R50-FPN"]]
    assert benchmark_lib.benchmark_groups(["R101-C4-d2", "R101-C4-fast"]) == [
        ["R101-C4-d2", "R101-C4-fast"]]


def test_the_fast_path_row_is_base_fastpath():
    cfg = benchmark_lib.detection_cfg("R101-C4-fast")
    assert cfg.MODEL.FAST_PATH.CHANNELS_LAST and cfg.MODEL.FAST_PATH.AUTOCAST == "bfloat16"
    assert cfg.MODEL.FAST_PATH.COMPILE
    assert not benchmark_lib.detection_cfg("R101-C4-fast", compile=False).MODEL.FAST_PATH.COMPILE
    assert benchmark.parse_args(["--fast-path"]).models[-1] == "R101-C4-fast"
    assert "R101-C4-fast" not in benchmark.parse_args([]).models


def test_calibrated_frozen_bn_normalises_its_input():
    from detectron2.layers import FrozenBatchNorm2d

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), FrozenBatchNorm2d(4))
    x = torch.randn(4, 3, 8, 8) * 5 + 2
    assert benchmark_lib.calibrate_frozen_bn(model, x) == 1
    with torch.no_grad():
        y = model(x)
    assert y.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (y.var(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


@pytest.mark.slow
def test_benchmark_runs_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable, str(ROOT / "tools" / "benchmark.py"), "--device", "cpu",
            "--models", "R50-C4", "R50-C4-d2", "--warmup", "1", "--iters", "2",
            "--image-size", "64", "--rois-per-image", "16", "--quiet", "--json", str(out),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    (report,) = json.loads(out.read_text())
    assert list(report["results"]) == ["R50-C4", "R50-C4-d2"]
    ours, theirs = report["results"]["R50-C4"], report["results"]["R50-C4-d2"]
    assert ours["params"] == theirs["params"]  # the same network, built twice
    assert len(ours["times"]["all"]) == 2 and ours["times"]["min"] <= ours["times"]["median"]
    assert ours["peak_memory"] > 2**27  # the RSS of a process running a Faster R-CNN step
    (comparison,) = report["comparisons"]
    assert comparison["time_ratio"] == pytest.approx(
        theirs["times"]["median"] / ours["times"]["median"])
    # Same initial weights, inputs and seeds: the two implementations compute the same losses.
    assert comparison["first_loss_max_abs_difference"] < 1e-4
    printed = [cells(line) for line in completed.stdout.splitlines() if line.startswith("| ")]
    assert ["R50-C4-d2 / R50-C4", f"{comparison['time_ratio']:.3f}"] == printed[-1][:2]


@pytest.mark.slow
def test_benchmark_fast_path_row(tmp_path):
    out = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable, str(ROOT / "tools" / "benchmark.py"), "--device", "cpu",
            "--models", "R101-C4-d2", "--fast-path", "--no-compile", "--warmup", "0",
            "--iters", "2", "--image-size", "64", "--image-width", "96", "--rois-per-image",
            "16", "--quiet", "--json", str(out),
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        # bfloat16 on virtual machines that advertise AMX without enabling it: see
        # tests/test_fast_path.py
        env=dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX512_CORE_BF16"),
    )
    assert completed.returncode == 0, completed.stderr
    (report,) = json.loads(out.read_text())
    assert report["image_size"] == [64, 96]
    fast, builtin = report["results"]["R101-C4-fast"], report["results"]["R101-C4-d2"]
    assert fast["params"] == builtin["params"]  # the fast path changes no parameter
    assert fast["images_per_second"] == pytest.approx(1 / fast["times"]["median"])
    (comparison,) = report["comparisons"]
    assert (comparison["ours"], comparison["reference"]) == ("R101-C4-fast", "R101-C4-d2")
    # Same weights and inputs (the switches' equivalence itself: tests/test_fast_path.py).
    assert set(fast["first_losses"]) == set(builtin["first_losses"])
    assert all(math.isfinite(loss) for loss in fast["first_losses"].values())
    rows = {cells(line)[0]: cells(line) for line in completed.stdout.splitlines()
            if line.startswith("| ")}
    assert rows["R101-C4-fast"][2] == f"{fast['images_per_second']:.2f}"


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory, shipped_config):
    """A run directory as train_net leaves it (config.yaml, model_final.pth), without training:
    the demo's model with its initial weights."""
    from detectron2.modeling import build_model

    run = tmp_path_factory.mktemp("run")
    cfg = shipped_config("Demo/resnet18_c4_synthetic.yaml")
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, run / "model_final.pth")
    (run / "config.yaml").write_text(cfg.dump())
    return run


@pytest.mark.slow
def test_draw_detections_writes_side_by_side_pictures(untrained_run, train_net, tmp_path):
    from PIL import Image

    completed = train_net(str(untrained_run), "--num-images", "2", "--score-threshold", "0",
                          "--output-dir", str(tmp_path), config=None,
                          script=ROOT / "tools" / "draw_detections.py")
    assert completed.returncode == 0, completed.stderr[-3000:]
    paths = completed.stdout.split()
    assert len(paths) == 2
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)
    for path in paths:
        width, height = Image.open(path).size
        assert width >= 2 * 2 * 160 and height >= 2 * 160  # two panels, each scaled 2x


GPU_CHECK_TINY = ("INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", "96",
                  "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.RPN.POST_NMS_TOPK_TEST",
                  "20", "DATALOADER.NUM_WORKERS", "0", "MODEL.FAST_PATH.COMPILE", "False")


def run_gpu_check(train_net, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gpu_check.py"), "--device", "cpu", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=train_net.env(ONEDNN_MAX_CPU_ISA="AVX512_CORE_BF16"),  # see tests/test_fast_path.py
    )


@pytest.mark.slow
def test_gpu_check_rehearsed_on_cpu(train_net):
    """tools/gpu_check.py's train / torchrun resume / eval steps, with and without the fast path,
    on the CPU at a tiny size (the GPU figures of docs/speed.md come from the same script). Its runs
    go to a temporary folder it removes (R-101 checkpoints are hundreds of MB each)."""
    completed = run_gpu_check(
        train_net, "--configs", "PascalVOC-Detection/resnet101_c4_voc0712.yaml", "--fast-path",
        "--iters", "4", *GPU_CHECK_TINY)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = [line for line in completed.stdout.splitlines() if line.startswith("[gpu_check]")]
    for variant in ("resnet101_c4_voc0712.yaml |", "resnet101_c4_voc0712.yaml + fast path |"):
        steps = [line for line in lines if variant in line]
        assert [line.split(" | ")[1].strip() for line in steps] == ["train", "resume", "eval"]
        assert all(line.endswith("| ok") for line in steps)
        assert "iterations 0-1 at 96 px" in steps[0]
        assert "from model_final.pth, iterations 2-3" in steps[1]
    assert lines[-1] == "[gpu_check] 2 of 2 configs passed"


@pytest.mark.slow
def test_gpu_check_reports_a_failing_step(train_net):
    completed = run_gpu_check(
        train_net, "--configs", "PascalVOC-Detection/vgg16_voc0712.yaml", "--iters", "2",
        *GPU_CHECK_TINY, "SOLVER.BASE_LR", "1e6")
    assert completed.returncode == 1
    assert "vgg16_voc0712.yaml | FAILED | exit status 1" in completed.stdout
    assert "diverged" in completed.stdout  # the tail of the failing run's log
    summary, kept = completed.stdout.splitlines()[-2:]
    assert summary == "[gpu_check] 0 of 1 configs passed"
    kept = Path(kept.split(" kept in ")[1])  # the failed run's logs stay for the user
    try:
        assert (kept / "PascalVOC-Detection_vgg16_voc0712.yaml" / "train.log").is_file()
    finally:
        shutil.rmtree(kept)
