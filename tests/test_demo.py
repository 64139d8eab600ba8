"""tools/demo.py end to end on the tiny synthetic split: ResNet-18 and Plain-18 trained side by
side, each on its share of the cores, then pictures and the report of both."""
import os
import sys

import pytest

from conftest import REPO

DEMO = REPO / "tools" / "demo.py"
sys.path.insert(0, str(REPO / "tools"))
import demo  # noqa: E402  (tools/demo.py)


@pytest.mark.slow
def test_demo_trains_both_runs_side_by_side_and_reports_them(train_net, tiny, tmp_path):
    result = train_net("--output-dir", str(tmp_path), "--num-pictures", "1", *tiny,
                       config=None, script=DEMO)
    assert result.returncode == 0, result.stderr[-3000:]
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    for name in ("resnet18_c4", "plain18_c4"):
        assert f"=== training {name} on {threads} thread(s)" in result.stdout
        assert (tmp_path / name / "final_metrics.json").is_file()
        assert len(list((tmp_path / name / "pictures").glob("*.png"))) == 1
    assert "Starting training" in (tmp_path / "plain18_c4.log").read_text()
    report = (tmp_path / "report.md").read_text()
    assert "ResNet-18" in report and "Plain-18" in report
    assert "result on the synthetic validation split: ResNet-18 AP50" in result.stdout
    assert "ResNet-18 is " in result.stdout and "NOT met" not in result.stdout


@pytest.mark.slow
def test_demo_names_the_log_of_a_failed_run(train_net, tiny, tmp_path):
    result = train_net("--output-dir", str(tmp_path), *tiny, "SOLVER.NO_SUCH_KEY", "1",
                       config=None, script=DEMO)
    assert result.returncode != 0
    assert "demo training failed: resnet18_c4 (exit status 1, log above), plain18_c4" in result.stderr
    assert str(tmp_path / "plain18_c4.log") in result.stderr
    assert "SOLVER.NO_SUCH_KEY" in (tmp_path / "plain18_c4.log").read_text()


def test_the_summary_gives_the_comparison_and_what_to_expect_without_internal_targets():
    summary = demo.demo_summary({"resnet18_c4": {"AP50": 73.5, "AP": 39.6},
                                 "plain18_c4": {"AP50": 25.5, "AP": 13.2}}, minutes=9.04)
    lines = summary.splitlines()
    assert lines[0] == ("result on the synthetic validation split: ResNet-18 AP50 73.5 (AP 39.6), "
                        "Plain-18 AP50 25.5 (AP 13.2).")
    assert lines[1].startswith("ResNet-18 is 48.0 AP50 points ahead of Plain-18, the same 18 "
                               "layers without shortcuts.")
    assert "AP50 ResNet-18 61.1 to 73.5; Plain-18 25.5 to 28.0" in lines[2]
    assert "another CPU type may differ" in lines[2]
    assert lines[-1] == "total time 9.0 min"
    assert "target" not in summary and "NOT met" not in summary


def test_the_summary_of_resnet18_alone_or_changed_settings():
    summary = demo.demo_summary({"resnet18_c4": {"AP50": 2.0, "AP": 0.5}}, minutes=0.5,
                                opts=["SOLVER.MAX_ITER", "2"])
    assert "Plain-18" not in summary and "AP50 ResNet-18 61.1 to 73.5" in summary
    assert "You changed the settings with SOLVER.MAX_ITER 2: the expected figures" in summary
    behind = demo.demo_summary({"resnet18_c4": {"AP50": 20.0, "AP": 9.0},
                                "plain18_c4": {"AP50": 25.0, "AP": 11.0}}, minutes=1)
    assert "ResNet-18 is 5.0 AP50 points behind Plain-18" in behind
