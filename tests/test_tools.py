"""tools/analyze_model.py reproduces Table 1's multiply-adds; tools/benchmark.py runs end to end."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_backbone.analysis import (
    BENCHMARK_MODELS,
    BENCHMARK_PAIRS,
    PAPER_TABLE1_GFLOPS,
    PAPER_VGG16_GFLOPS,
    benchmark_groups,
    detection_cfg,
)

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def table1(tmp_path_factory):
    out = tmp_path_factory.mktemp("analysis") / "table1.json"
    load_tool("analyze_model").main(["--no-plain", "--json", str(out)])
    return {row["name"]: row for row in json.loads(out.read_text())["networks"]}


@pytest.mark.parametrize("depth", sorted(PAPER_TABLE1_GFLOPS))
def test_multiply_adds_match_table1(table1, depth):
    row = table1[f"ResNet-{depth}"]
    assert row["flops"] == pytest.approx(PAPER_TABLE1_GFLOPS[depth] * 1e9, rel=0.05)
    assert abs(row["relative_difference"]) < 0.05


def test_vgg16_multiply_adds_match_the_paper(table1):
    assert table1["VGG-16"]["flops"] == pytest.approx(PAPER_VGG16_GFLOPS * 1e9, rel=0.05)
    # 138.4M parameters: the well-known size of VGG-16 with its classifier.
    assert table1["VGG-16"]["params"] == pytest.approx(138.36e6, rel=1e-3)


def test_resnet50_parameters_are_torchvisions(table1):
    assert table1["ResNet-50"]["params"] == 25_557_032  # torchvision resnet50, same layers


def test_analyze_model_prints_the_table(capsys):
    load_tool("analyze_model").main(["--depths", "18", "--no-plain", "--no-vgg"])
    out = capsys.readouterr().out
    assert "| ResNet-18 | basic, shortcut B | 11.69 | 1.82 | 1.8 | +1.1% |" in out


def test_every_benchmark_model_has_a_config_and_a_group():
    for name, (depth, design, implementation) in BENCHMARK_MODELS.items():
        cfg = detection_cfg(name)
        assert cfg.MODEL.BACKBONE.FREEZE_AT == 2 and cfg.MODEL.RESNETS.NORM == "FrozenBN"
        if implementation == "d2":
            assert not cfg.MODEL.BACKBONE.NAME.startswith("build_paper")
    groups = benchmark_groups(list(BENCHMARK_MODELS))
    assert sorted(sum(groups, [])) == sorted(BENCHMARK_MODELS)
    assert ["R101-C4", "R101-C4-d2", "VGG16-C4"] in groups
    assert all(list(pair) in groups or list(pair) + ["VGG16-C4"] in groups
               for pair in BENCHMARK_PAIRS)


def test_benchmark_runs_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    python_path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=python_path)
    completed = subprocess.run(
        [
            sys.executable, str(ROOT / "tools" / "benchmark.py"), "--device", "cpu",
            "--models", "R50-C4", "R50-C4-d2", "--warmup", "1", "--iters", "1",
            "--image-size", "64", "--rois-per-image", "16", "--quiet", "--json", str(out),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "| R50-C4-d2 / R50-C4 |" in completed.stdout
    (report,) = json.loads(out.read_text())
    (comparison,) = report["comparisons"]
    assert comparison["time_ratio"] > 0 and comparison["memory_ratio"] > 0
    # Same initial weights, inputs and seeds: the two implementations compute the same losses.
    assert comparison["first_loss_max_abs_difference"] < 1e-4
    assert report["results"]["R50-C4"]["peak_memory"] > 0
