"""tools/analyze_model.py --config-file: Detectron2's analysis tasks (flop, activation,
parameter, structure) for any detector config; Table 1 mode is tests/test_tools.py's."""
import json
import re
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import analyze_model  # noqa: E402  (tools/analyze_model.py)

PLAIN18 = REPO / "configs" / "Demo" / "plain18_c4_synthetic.yaml"


@pytest.mark.slow  # the tool in a subprocess, on the synthetic data
def test_flops_and_activations_over_test_images(train_net, demo_config, tmp_path):
    out = tmp_path / "analysis.json"
    completed = train_net("--tasks", "flop", "activation", "parameter", "-n", "2",
                          "--json", str(out), "INPUT.MIN_SIZE_TEST", "96",
                          config=demo_config, script=REPO / "tools" / "analyze_model.py")
    assert completed.returncode == 0, completed.stderr[-3000:]
    numbers = json.loads(out.read_text())
    assert numbers["flop"]["images"] == numbers["activation"]["images"] == 2
    # ResNet-18 C4 on 96-pixel images: res5 on every RoI dominates, convolutions are nearly all
    assert 1e8 < numbers["flop"]["mean"] < 1e10
    assert numbers["flop"]["by_operator"]["conv"] > 0.95 * numbers["flop"]["mean"]
    assert numbers["activation"]["mean_millions"] > 0
    assert numbers["parameter"]["total"] == pytest.approx(11.79e6, rel=1e-3)
    printed = completed.stdout
    for section in ("== flop ==", "== activation ==", "== parameter =="):
        assert section in printed
    assert "over 2 image(s) of synthetic_shapes_val" in printed
    assert "| roi_heads.res5" in printed  # fvcore's per-module table


def test_parameters_and_structure_need_no_data(capsys):
    results = analyze_model.main(["--config-file", str(PLAIN18), "--tasks", "parameter",
                                  "structure", "MODEL.ROI_HEADS.NUM_CLASSES", "3"])
    from detectron2.modeling import build_model

    from resnet_backbone.model_zoo import get_config

    cfg = get_config("Demo/plain18_c4_synthetic.yaml")
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    expected = sum(p.numel() for p in build_model(cfg).parameters())
    assert results["parameter"]["total"] == expected
    assert "PaperRes5ROIHeads" in results["structure"] and "BasicBlock" in results["structure"]
    assert "shortcut" not in results["structure"]  # the plain net has none
    assert f"parameters: {expected / 1e6:.3f}M" in capsys.readouterr().out


def test_bad_requests_are_named():
    with pytest.raises(ValueError, match="DATASETS.TEST is empty"):
        analyze_model.main(["--config-file", str(PLAIN18), "--tasks", "flop",
                            "DATASETS.TEST", "()"])
    with pytest.raises(SystemExit):
        analyze_model.parse_args(["MODEL.DEVICE", "cpu"])  # overrides need --config-file
    for argv in ([],  # nothing to count
                 ["--tasks", "flop"],  # --tasks without --config-file
                 ["--paper-table1", "--tasks", "flop"],
                 ["--config-file", "x.yaml", "--depths", "50"],  # a Table 1 flag
                 ["--config-file", "x.yaml", "--paper-table1"]):
        with pytest.raises(SystemExit):
            analyze_model.parse_args(argv)


def test_detectron2_defaults_and_output_line(capsys, datasets_dir, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets_dir))
    assert analyze_model.parse_args(["--config-file", "x.yaml"]).num_inputs == 100
    analyze_model.main(["--config-file", str(PLAIN18), "--tasks", "flop", "-n", "1",
                        "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "96"])
    out = capsys.readouterr().out
    assert re.search(r"^Total GFlops: \d+\.\d±\d+\.\d$", out, re.M), out


def test_overrides_may_follow_the_tasks():
    args = analyze_model.parse_args(["--config-file", "x.yaml", "--tasks", "flop", "structure",
                                     "MODEL.DEVICE", "cpu", "SEED", "3"])
    assert args.tasks == ["flop", "structure"]
    assert args.opts == ["MODEL.DEVICE", "cpu", "SEED", "3"]
    with pytest.raises(SystemExit):
        analyze_model.parse_args(["--config-file", "x.yaml", "--tasks", "flops"])
