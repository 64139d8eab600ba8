"""RESNET_BACKBONE_SOLVER.WRITE_PERIOD sets how often training metrics are written
(Detectron2's DefaultTrainer fixes 20 iterations)."""
import json

import pytest


def logged_iterations(output_dir):
    lines = (output_dir / "metrics.json").read_text().splitlines()
    return [record["iteration"] for record in map(json.loads, lines) if "total_loss" in record]


@pytest.mark.slow
@pytest.mark.parametrize("period, expected", [(None, [2]), ("1", [0, 1, 2]), ("2", [1, 2])])
def test_metrics_are_written_every_write_period(train_net, tiny, tmp_path, period, expected):
    overrides = ["RESNET_BACKBONE_SOLVER.WRITE_PERIOD", period] if period else []
    result = train_net(*tiny, "SOLVER.MAX_ITER", "3", "DATASETS.TEST", "()", *overrides,
                       "OUTPUT_DIR", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert logged_iterations(tmp_path) == expected  # and always after the last iteration


@pytest.mark.slow
def test_a_write_period_below_one_is_rejected_naming_the_key(train_net, tiny, tmp_path):
    out = tmp_path / "out"
    result = train_net(*tiny, "DATASETS.TEST", "()", "RESNET_BACKBONE_SOLVER.WRITE_PERIOD", "0",
                       "OUTPUT_DIR", str(out))
    assert result.returncode != 0
    assert "RESNET_BACKBONE_SOLVER.WRITE_PERIOD=0: use 1 or more iterations" in result.stderr
    assert not out.exists()  # a start-up check
