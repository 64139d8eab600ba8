"""tools/classification_demo.py end to end on the embedded shape crops, two nets at two seeds in
a few iterations: runs by network and seed, the report's spread over seeds, and closing lines
that compare depths seed by seed and name the paper's schedule."""
import sys

import pytest

from conftest import REPO

CLASSIFICATION_DEMO = REPO / "tools" / "classification_demo.py"
sys.path.insert(0, str(REPO / "tools"))
import classification_demo  # noqa: E402  (tools/classification_demo.py)

TINY_CLASSIFIER = ("SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "2",
                   "TEST.EVAL_PERIOD", "1", "SOLVER.IMS_PER_BATCH", "8")


@pytest.mark.slow
def test_classification_demo_trains_every_seed_and_reports_them(train_net, tmp_path):
    result = train_net("--output-dir", str(tmp_path), "--nets", "plain20", "plain56", "--seeds",
                       "2", *TINY_CLASSIFIER, config=None, script=CLASSIFICATION_DEMO,
                       timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    for net in ("plain20", "plain56"):
        for seed in (0, 1):
            assert f"=== training {net}, seed {seed}:" in result.stdout
            config = (tmp_path / net / f"seed{seed}" / "config.yaml").read_text()
            assert f"SEED: {seed}" in config
    report = (tmp_path / "report.md").read_text()
    assert "## Spread over seeds" in report and "| Plain-56 " in report
    assert "over 2 seeds" in result.stdout
    assert "Plain-56 ends " in result.stdout and "(difference " in result.stdout
    assert "configs/CIFAR-10/resnet56.yaml" in result.stdout
    assert "ResNet-56 ends" not in result.stdout  # no ResNets trained, nothing said of them


def test_seeds_come_from_the_seed_options_and_not_from_the_overrides(capsys):
    assert classification_demo.parse_args(["--seeds", "3", "--first-seed", "2"]).seed_list == [2, 3, 4]
    with pytest.raises(SystemExit):
        classification_demo.parse_args(["SEED", "3"])
    assert "give the seeds with --seeds/--first-seed, not SEED" in capsys.readouterr().err
