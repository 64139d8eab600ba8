"""Training that survives kills: checkpoints are atomic, and a run killed with SIGKILL and
restarted with --resume ends with exactly the weights of an uninterrupted run (CPU, fixed SEED).
Also: a diverging run (loss spike, weights out of bounds, non-finite loss) stops before saving
diverged weights, names the checkpoint from before the divergence, and recovers by following
its message (--resume with a lower SOLVER.BASE_LR and RESUME_WITH_CONFIG_LR)."""
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# 6 iterations, a checkpoint every 2 (after iterations 1, 3, 5), no evaluation.
SIX_ITERATIONS = (
    "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.STEPS", "(4,)",
    "INPUT.MIN_SIZE_TRAIN", "(80, 96)", "SEED", "3", "DATASETS.TEST", "()",
)


@pytest.fixture
def six(tiny):
    return (*tiny, *SIX_ITERATIONS)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(train_net, six, tmp_path):
    # One data-loader worker process (as the demo): its RNG state must not matter either.
    tiny = [*six, "DATALOADER.NUM_WORKERS", "1"]
    straight = tmp_path / "straight"
    result = train_net(*tiny, "OUTPUT_DIR", str(straight))
    assert result.returncode == 0, result.stderr[-3000:]

    killed = tmp_path / "killed"
    train_net.kill_after_first_checkpoint(killed, *tiny, "OUTPUT_DIR", str(killed))
    killed_at = (killed / "last_checkpoint").read_text()

    result = train_net("--resume", *tiny, "OUTPUT_DIR", str(killed))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {killed / killed_at}" in result.stdout
    assert (killed / "last_checkpoint").read_text() == "model_final.pth"
    final = torch.load(killed / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 5
    expected = _weights(straight / "model_final.pth")
    assert final["model"].keys() == expected.keys()
    different = [k for k in expected if not torch.equal(expected[k], final["model"][k])]
    assert not different, f"weights differ after resuming from {killed_at}: {different[:5]}"
    assert not list(killed.glob(".*.tmp"))


ADVICE = re.compile(
    r"FloatingPointError: training stopped at iteration (\d+): it has diverged .*last_checkpoint "
    r"now names the newest checkpoint from before the divergence: (\S+)(?: \([^)]*\))?\. .*run "
    r"the same "
    r"command with (--resume) and the overrides SOLVER.BASE_LR <lower> (\S+ True): it continues")


def _advice(result):
    match = ADVICE.search(result.stderr)
    assert match, result.stderr[-3000:]
    return int(match.group(1)), Path(match.group(2)), match.group(3), match.group(4).split()


def _finite(weights):
    return all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


@pytest.mark.slow
def test_non_finite_loss_stops_naming_the_checkpoint_from_before_it(train_net, six, tmp_path):
    out = tmp_path / "nan"
    # With the early checks off, an absurd learning rate makes the loss (or the predicted
    # boxes) non-finite within a few iterations; a checkpoint is attempted after every one.
    result = train_net(*six, "SOLVER.MAX_ITER", "20", "SOLVER.STEPS", "(19,)",
                       "SOLVER.BASE_LR", "1e12", "SOLVER.CHECKPOINT_PERIOD", "1",
                       "RESNET_BACKBONE_SOLVER.LOSS_SPIKE_FACTOR", "0.0",
                       "RESNET_BACKBONE_SOLVER.WEIGHT_NORM_GROWTH", "0.0", "OUTPUT_DIR", str(out))
    assert result.returncode != 0
    iteration, good, _, _ = _advice(result)
    assert 1 < iteration < 19
    # the checkpoint of iteration - 1 (if written) holds the weights that gave the bad loss
    assert good.parent == out and good.is_file()
    assert (out / "last_checkpoint").read_text() == good.name
    assert torch.load(good, map_location="cpu", weights_only=True)["iteration"] <= iteration - 2
    assert _finite(_weights(good))
    closer = out / f"model_{iteration - 1:07d}.pth"  # exists, but is not trusted: said so
    if closer.exists():
        assert f"{closer.name}: saved within two iterations of it" in result.stderr
    assert not (out / "model_final.pth").exists()
    assert not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_diverged_run_recovers_by_following_the_message(train_net, six, tmp_path):
    """A learning rate warming up to 100 makes the loss jump after a few iterations: the run
    stops there, names a checkpoint from before, and the advised --resume with a lower
    SOLVER.BASE_LR finishes from that checkpoint with the new learning rate."""
    out = tmp_path / "diverged"
    run = (*six, "SOLVER.MAX_ITER", "8", "SOLVER.STEPS", "(7,)", "SOLVER.CHECKPOINT_PERIOD", "1",
           "SOLVER.WARMUP_ITERS", "100", "SOLVER.WARMUP_FACTOR", "0.0001",
           "OUTPUT_DIR", str(out))
    result = train_net(*run, "SOLVER.BASE_LR", "100.0")
    assert result.returncode != 0
    assert "LOSS_SPIKE_FACTOR" in result.stderr or "WEIGHT_NORM_GROWTH" in result.stderr
    iteration, good, flag, overrides = _advice(result)
    assert (out / "last_checkpoint").read_text() == good.name
    saved = torch.load(good, map_location="cpu", weights_only=True)
    assert saved["iteration"] <= iteration - 2 and _finite(saved["model"])
    diverged_lrs = saved["trainer"]["hooks"]["LRScheduler"]["base_lrs"]

    # Without the key, a lowered BASE_LR is not silently ignored: the log says which is used.
    ignored = train_net(flag, *run, "SOLVER.BASE_LR", "0.01", "SOLVER.MAX_ITER",
                        str(saved["iteration"] + 2))
    assert ("the checkpoint's learning rate 100 is used, not the config's 0.01"
            in ignored.stdout + ignored.stderr)
    (out / "last_checkpoint").write_text(good.name)

    result = train_net(flag, *run, "SOLVER.BASE_LR", "0.01", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert f"resuming from {good} at iteration {saved['iteration'] + 1}" in log
    assert "learning rate 0.01 from the config (the checkpoint's: 100)" in log
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 7 and _finite(final["model"])
    resumed_lrs = final["trainer"]["hooks"]["LRScheduler"]["base_lrs"]
    assert resumed_lrs == pytest.approx([lr * 1e-4 for lr in diverged_lrs])


def _checkpointer(directory, model):
    from resnet_backbone.engine.trainer import AtomicCheckpointer

    return AtomicCheckpointer(model, str(directory))


def test_failed_save_leaves_the_previous_checkpoint_and_pointer(tmp_path, monkeypatch):
    model = torch.nn.Linear(64, 64)
    checkpointer = _checkpointer(tmp_path, model)
    checkpointer.save("model_0000001", iteration=1)
    good = (tmp_path / "model_0000001.pth").read_bytes()

    def half_written(data, f):  # a disk filling up (or a crash) in the middle of torch.save
        f.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError, match="No space left"):
        checkpointer.save("model_0000003", iteration=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert (tmp_path / "model_0000001.pth").read_bytes() == good


class _Guarded:
    """A StopHook on a one-layer model, fed losses by hand; `saved` lists its checkpoints."""

    def __init__(self, **factors):
        from detectron2.utils.events import EventStorage

        from resnet_backbone.engine.hooks import StopHook

        self.model = torch.nn.Linear(4, 4)
        self.storage = EventStorage()
        self.iter, self.max_iter = -1, 1000
        self.guard = StopHook(**{"loss_spike_factor": 10.0, "loss_window": 5,
                                 "weight_norm_growth": 10.0, **factors})
        self.guard.trainer = self
        self.guard.before_train()
        self.guard.signals.uninstall()  # the test process keeps its own signal handling
        self.saved, self.cfg = [], types.SimpleNamespace(OUTPUT_DIR="out")
        self.checkpointer = types.SimpleNamespace(
            save=lambda name, iteration: self.saved.append((name, iteration)))

    def step(self, loss):
        self.iter += 1
        self.storage.put_scalar("total_loss", loss)
        self.guard.after_step()


def test_a_loss_spike_stops_training_but_fluctuations_do_not():
    from resnet_backbone.engine.hooks import TrainingDiverged

    run = _Guarded()
    for loss in (5.0, 7.0, 30.0, 3.0, 2.0, 1.0, 0.5, 0.4, 3.9, 0.3):  # falls, two bad batches
        run.step(loss)
    with pytest.raises(TrainingDiverged, match=r"total loss 40 is above RESNET_BACKBONE_SOLVER"
                                               r"\.LOSS_SPIKE_FACTOR=10 times the median 0\.5"):
        run.step(40.0)
    # 10x the median, but far below the loss at the start of training: noise
    late = _Guarded(weight_norm_growth=0.0)
    for loss in (2.3, 2.2, *[0.01] * 5, 0.2):
        late.step(loss)
    resumed = _Guarded(weight_norm_growth=0.0)  # the start loss comes with the checkpoint
    resumed.guard.load_state_dict(late.guard.state_dict())
    for loss in (0.01, 0.01, 0.01, 0.2):
        resumed.step(loss)
    with pytest.raises(TrainingDiverged):
        resumed.step(3.0)
    unchecked = _Guarded(loss_spike_factor=0.0)
    for loss in (1.0, 1.0, 1.0, 1e9):
        unchecked.step(loss)


def test_weights_growing_out_of_bounds_stop_training_before_they_are_saved():
    from resnet_backbone.engine.hooks import TrainingDiverged

    run = _Guarded(loss_spike_factor=0.0)
    with torch.no_grad():
        run.model.weight.mul_(5)
    run.step(1.0)
    with torch.no_grad():
        run.model.weight.mul_(100)
    with pytest.raises(TrainingDiverged, match="weight norm .* above RESNET_BACKBONE_SOLVER"
                                               r"\.WEIGHT_NORM_GROWTH=10 times"):
        run.step(1.0)
    with torch.no_grad():
        run.model.weight[0, 0] = float("nan")
    with pytest.raises(TrainingDiverged):
        run.step(1.0)


def test_costly_divergence_checks_run_every_check_period_and_before_each_checkpoint(monkeypatch):
    """The weight norm (a GPU sync) is read only on check iterations; with several processes
    the verdicts are exchanged only then, naming the iteration where the loss spiked."""
    from detectron2.utils import comm

    from resnet_backbone.engine.hooks import TrainingDiverged

    run = _Guarded(loss_spike_factor=0.0, check_period=5, checkpoint_period=7)
    reads = []
    norm = run.guard._weight_norm
    monkeypatch.setattr(run.guard, "_weight_norm", lambda: reads.append(run.iter) or norm())
    for _ in range(11):
        run.step(1.0)
    assert reads == [4, 6, 9]  # iterations 5, 7 and 10 done (the 7th: a checkpoint follows)

    exchanges = []
    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "all_gather",
                        lambda mine: exchanges.append(run.iter) or [mine, (None, None)])
    run = _Guarded(weight_norm_growth=0.0, check_period=5)
    for loss in (1.0, 1.0, 1.0):
        run.step(loss)
    run.step(50.0)  # iteration 3 spikes; the ranks learn it after iteration 4
    with pytest.raises(TrainingDiverged, match="total loss 50") as stopped:
        run.step(1.0)
    assert stopped.value.iteration == 3 and exchanges == [4]


def test_a_stop_signal_saves_and_stops_on_the_next_exchange(monkeypatch):
    """A stop signal seen by any process: a checkpoint of the iteration just done, then
    TrainingInterrupted naming it; with several processes on the next exchange (one
    all_gather carries both verdicts), alone at once."""
    from detectron2.utils import comm

    from resnet_backbone.engine.hooks import TrainingInterrupted

    alone = _Guarded(check_period=5)
    alone.step(1.0)
    alone.guard.signals.received = "SIGUSR1"
    with pytest.raises(TrainingInterrupted, match=r"SIGUSR1 received: saved out/model_0000001"
                                                  r"\.pth after iteration 1; run the same "
                                                  "command with --resume"):
        alone.step(1.0)
    assert alone.saved == [("model_0000001", 1)]

    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(comm, "synchronize", lambda: None)
    exchanges = []
    monkeypatch.setattr(comm, "all_gather",  # the other process got SIGTERM
                        lambda mine: exchanges.append(mine) or [mine, (None, "SIGTERM")])
    pair = _Guarded(check_period=5)
    for _ in range(4):
        pair.step(1.0)
    assert exchanges == [] and pair.saved == []
    with pytest.raises(TrainingInterrupted, match="SIGTERM received: saved out/model_0000004"):
        pair.step(1.0)
    assert exchanges == [(None, None)] and pair.saved == [("model_0000004", 4)]


def test_the_checkpoint_before_a_divergence_is_of_this_run_or_older_than_its_start(tmp_path):
    model = torch.nn.Linear(2, 2)
    for i in (3, 5, 7, 9):  # 7 and 9: left by an earlier attempt that got further
        _checkpointer(tmp_path, model).save(f"model_{i:07d}", iteration=i)
    checkpointer = _checkpointer(tmp_path, model)  # resumed from 5, saves 6 and 8
    for i in (6, 8):
        checkpointer.save(f"model_{i:07d}", iteration=i)
    lineage = checkpointer.checkpoints_of_lineage(started_at=6)
    assert sorted(lineage) == [3, 5, 6, 8]
    assert lineage[8] == str(tmp_path / "model_0000008.pth")
    # Another process of the same run, which saved nothing itself, knows the main process's
    # periodic checkpoints from the period: every 3 iterations (those ending iteration 8).
    other = _checkpointer(tmp_path, model).checkpoints_of_lineage(started_at=6, period=3)
    assert sorted(other) == [3, 5, 8]


def test_diverged_weights_are_never_saved(tmp_path):
    model = torch.nn.Linear(4, 4)
    checkpointer = _checkpointer(tmp_path, model)
    checkpointer.save("model_0000001")
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="not saving model_0000002.*weight"):
        checkpointer.save("model_0000002")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not (tmp_path / "model_0000002.pth").exists()


SAVE_FOREVER = """
import sys, torch
from resnet_backbone.engine.trainer import AtomicCheckpointer
model = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(16)])  # ~17 MB
checkpointer = AtomicCheckpointer(model, sys.argv[1])
i = 0
while True:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(i)
    checkpointer.save(f"model_{i:07d}", iteration=i)
    i += 1
"""


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_a_partial_checkpoint(tmp_path):
    """Kill a process that does nothing but save checkpoints, at several moments: whatever
    `last_checkpoint` names is complete and holds what that save wrote."""
    from resnet_backbone.engine.trainer import AtomicCheckpointer

    script = tmp_path / "save_forever.py"
    script.write_text(SAVE_FOREVER)
    out = tmp_path / "out"
    out.mkdir()
    for delay in (0.0, 0.13, 0.31, 0.57):
        process = subprocess.Popen([sys.executable, str(script), str(out)], cwd=REPO,
                                   env=dict(os.environ, OMP_NUM_THREADS="1"))
        try:
            deadline = time.time() + 120
            while not (out / "last_checkpoint").exists():
                assert process.poll() is None and time.time() < deadline
                time.sleep(0.01)
            time.sleep(delay)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(60)
        name = (out / "last_checkpoint").read_text()
        data = torch.load(out / name, map_location="cpu", weights_only=True)
        i = data["iteration"]
        assert name == f"model_{i:07d}.pth"
        assert all(torch.equal(v, torch.full_like(v, i)) for v in data["model"].values())
        for path in out.glob("model_*.pth"):  # every file that has its final name is complete
            torch.load(path, map_location="cpu", weights_only=True)
        # a resumed trainer removes what the killed save left behind
        from resnet_backbone.engine.trainer import remove_stale_temporaries

        remove_stale_temporaries(str(out))
        assert not list(out.glob(".*"))
    assert AtomicCheckpointer(torch.nn.Linear(1, 1), str(out)).has_checkpoint()


@pytest.mark.slow
@pytest.mark.parametrize("processes,signum", [(1, signal.SIGTERM), (2, signal.SIGTERM),
                                              (1, signal.SIGUSR1)],
                         ids=["1-SIGTERM", "2-SIGTERM", "1-SIGUSR1"])
def test_stop_signal_to_the_whole_job_saves_and_resumes_bit_identically(train_net, six, tmp_path,
                                                                       processes, signum):
    """As a scheduler does: the signal goes to every process of the job (the launcher, the
    training processes, their DataLoader workers). The run saves, exits with 75 naming the
    checkpoint, and --resume ends with the weights of a run never interrupted."""
    job = ("--num-gpus", str(processes), *six, "DATALOADER.NUM_WORKERS", "1",
           "SOLVER.IMS_PER_BATCH", "2", "SOLVER.STEPS", "(400,)", "SOLVER.CHECKPOINT_PERIOD",
           "1000")
    out = tmp_path / "preempted"
    process = train_net.popen(*job, "SOLVER.MAX_ITER", "500", "OUTPUT_DIR", str(out),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        deadline = time.time() + 300
        while "Starting training from iteration" not in _text(out / "log.txt"):
            assert process.poll() is None and time.time() < deadline
            time.sleep(0.1)
        time.sleep(2)
        os.killpg(process.pid, signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 75, stderr[-3000:]
    match = re.search(rf"ERROR: TrainingInterrupted: {signum.name} received: saved (\S+) after "
                      r"iteration (\d+); run the same command with --resume", stderr)
    assert match, stderr[-3000:]
    saved, iteration = Path(match.group(1)), int(match.group(2))
    assert (out / "last_checkpoint").read_text() == saved.name
    assert torch.load(saved, map_location="cpu", weights_only=True)["iteration"] == iteration

    end = ("SOLVER.MAX_ITER", str(iteration + 3))
    result = train_net("--resume", *job, *end, "OUTPUT_DIR", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {saved} at iteration {iteration + 1}" in result.stdout + result.stderr
    straight = tmp_path / "straight"
    result = train_net(*job, *end, "OUTPUT_DIR", str(straight))
    assert result.returncode == 0, result.stderr[-3000:]
    resumed, expected = _weights(out / "model_final.pth"), _weights(straight / "model_final.pth")
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)


def _text(path):
    return path.read_text() if path.exists() else ""
