"""tools/demo.py: the runs of every network and seed trained side by side, one per core, then
pictures and the report; the closing lines say what the printed numbers support."""
import os
import sys

import pytest

from conftest import REPO

DEMO = REPO / "tools" / "demo.py"
sys.path.insert(0, str(REPO / "tools"))
import demo  # noqa: E402  (tools/demo.py)


def without_seed(overrides):
    """The KEY VALUE overrides without SEED: the demo gives each run its seed itself."""
    pairs = list(zip(overrides[::2], overrides[1::2]))
    return [item for key, value in pairs if key != "SEED" for item in (key, value)]


@pytest.mark.slow
def test_demo_trains_every_network_and_seed_and_reports_them(train_net, tiny, tmp_path):
    result = train_net("--output-dir", str(tmp_path), "--num-pictures", "1", "--seeds", "2",
                       "--first-seed", "3", *without_seed(tiny), config=None, script=DEMO)
    assert result.returncode == 0, result.stderr[-3000:]
    threads = max(1, len(os.sched_getaffinity(0)) // 4)
    assert result.stdout.count(f"=== training on {threads} thread(s)") == 4
    for name in ("resnet18_c4", "plain18_c4"):
        for seed in (3, 4):
            run = tmp_path / name / f"seed{seed}"
            assert (run / "final_metrics.json").is_file()
            assert f"SEED: {seed}" in (run / "config.yaml").read_text()
        assert len(list((tmp_path / name / "seed3" / "pictures").glob("*.png"))) == 1
        assert not (tmp_path / name / "seed4" / "pictures").exists()
    assert "Starting training" in (tmp_path / "plain18_c4" / "seed4.log").read_text()
    report = (tmp_path / "report.md").read_text()
    assert "## Spread over seeds" in report
    assert "| ResNet-18 " in report and "| Plain-18 " in report and "| 3, 4 " in report
    assert "result on the synthetic validation split, seeds 3-4: ResNet-18 AP50" in result.stdout
    assert "over 2 seeds" in result.stdout
    assert "You changed the settings with" in result.stdout


@pytest.mark.slow
def test_demo_names_the_log_of_a_failed_run(train_net, tiny, tmp_path):
    result = train_net("--output-dir", str(tmp_path), *without_seed(tiny), "SOLVER.NO_SUCH_KEY", "1",
                       config=None, script=DEMO)
    assert result.returncode != 0
    assert "demo training failed: resnet18_c4 seed 0 (exit status 1, log above)" in result.stderr
    plain_log = tmp_path / "plain18_c4" / "seed0.log"
    assert f"plain18_c4 seed 0 (exit status 1, log {plain_log})" in result.stderr
    assert "SOLVER.NO_SUCH_KEY" in plain_log.read_text()


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds must be at least 1, got 0"),
    (["--first-seed", "-1"], "--first-seed must not be negative"),
    (["SEED", "4"], "give the seeds with --seeds/--first-seed, not SEED"),
])
def test_bad_seed_arguments_stop_before_training(argv, message, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(argv)
    assert message in capsys.readouterr().err


def test_depth_34_trains_the_34_layer_pair():
    args = demo.parse_args(["--depth", "34", "--seeds", "3"])
    names = demo.network_names(args.depth)
    assert names == ["resnet34_c4", "plain34_c4"]
    assert [demo.title_of(n) for n in names] == ["ResNet-34", "Plain-34"]
    assert all(os.path.isfile(demo.config_of(n)) for n in names)
    command = demo.training_command("plain34_c4", 2, "out/plain34_c4/seed2", ["SOLVER.MAX_ITER", "5"])
    assert command[-6:] == ["OUTPUT_DIR", "out/plain34_c4/seed2", "SEED", "2", "SOLVER.MAX_ITER", "5"]


def results(resnet, plain, first_seed=0):
    return {"resnet18_c4": {first_seed + i: {"AP50": v, "AP": v / 2} for i, v in enumerate(resnet)},
            "plain18_c4": {first_seed + i: {"AP50": v, "AP": v / 2} for i, v in enumerate(plain)}}


def test_one_seed_gives_the_gap_and_says_one_seed_does_not_rank():
    lines = demo.demo_summary(results([64.4], [62.0]), minutes=13.04).splitlines()
    assert lines[0] == ("result on the synthetic validation split, seed 0: ResNet-18 AP50 64.4 "
                        "(AP 32.2), Plain-18 AP50 62.0 (AP 31.0).")
    assert lines[1].startswith("ResNet-18 is 2.4 AP50 points ahead of Plain-18 at this seed. "
                               "One seed does not rank them")
    low, high = demo.EXPECTED_AP50["resnet18_c4"]
    assert f"ResNet-18 {low:.1f} to {high:.1f}" in lines[2]
    assert lines[2].endswith("Every figure above lies inside.")
    assert lines[-1] == "total time 13.0 min"
    assert "faster" not in "\n".join(lines) and "converg" not in "\n".join(lines)


def test_several_seeds_give_mean_range_and_the_verdict_the_seeds_support():
    summary = demo.demo_summary(results([64.4, 69.6, 64.0], [62.0, 65.6, 59.0]), minutes=40)
    assert ("ResNet-18 AP50 66.0 (64.0 to 69.6 over 3 seeds; a new seed 50.5 to 81.5), AP 33.0"
            in summary)
    assert ("ResNet-18 is ahead of Plain-18 at every one of the 3 seeds (AP50 difference +2.4 "
            "to +5.0 points).") in summary
    mixed = demo.demo_summary(results([60.0, 69.6], [62.0, 65.6]), minutes=1)
    assert "ahead of Plain-18 at 1 of 2 seeds and behind at the others: these seeds do not rank" in mixed
    behind = demo.demo_summary(results([50.0, 55.0], [60.0, 61.0]), minutes=1)
    assert "ResNet-18 is behind Plain-18 at every one of the 2 seeds (AP50 difference -10.0 to -6.0" in behind


def test_a_figure_outside_the_measured_range_is_named():
    summary = demo.demo_summary(results([20.0], [62.0], first_seed=7), minutes=1)
    assert "Outside it: ResNet-18 seed 7 (20.0)." in summary


def test_changed_settings_or_the_resnet_alone():
    summary = demo.demo_summary({"resnet18_c4": {0: {"AP50": 2.0, "AP": 0.5}}}, minutes=0.5,
                                opts=["SOLVER.MAX_ITER", "2"])
    assert "Plain-18" not in summary and "Outside it" not in summary
    assert "You changed the settings with SOLVER.MAX_ITER 2: the expected ranges" in summary
