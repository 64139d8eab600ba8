"""tools/demo.py end to end on the tiny synthetic split: ResNet-18 and Plain-18 trained side by
side, each on its share of the cores, then pictures and the report of both."""
import os

import pytest

from conftest import REPO

DEMO = REPO / "tools" / "demo.py"


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
    assert "benchmark targets: ResNet-18 AP50" in result.stdout


@pytest.mark.slow
def test_demo_names_the_log_of_a_failed_run(train_net, tiny, tmp_path):
    result = train_net("--output-dir", str(tmp_path), *tiny, "SOLVER.NO_SUCH_KEY", "1",
                       config=None, script=DEMO)
    assert result.returncode != 0
    assert "demo training failed: resnet18_c4 (exit status 1, log above), plain18_c4" in result.stderr
    assert str(tmp_path / "plain18_c4.log") in result.stderr
    assert "SOLVER.NO_SUCH_KEY" in (tmp_path / "plain18_c4.log").read_text()
