"""A stop signal (SIGTERM, SIGUSR1) to the whole process group of a training job, in every phase
of the run (start-up, the first iteration, a checkpoint write with a second signal during the
next save, an evaluation in the middle of training, the final evaluation), with 1 and 2
processes and a DataLoader worker each: the job exits with 75 and one line saying where it
stopped, and `--resume` ends with the weights and final_metrics.json of a run never interrupted.

Start-up is hit by waiting until the tool has installed its handlers (the caught-signal mask
in /proc) or has spawned its workers; the other phases by STOP_DRIVER, which runs the tool and
sends the signal to its own group from inside the named phase."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# 6 iterations; checkpoints after iterations 1, 3 and 5 (model_final.pth); evaluations after
# iteration 3 and at the end.
JOB = (
    "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.STEPS", "(4,)",
    "TEST.EVAL_PERIOD", "4", "INPUT.MIN_SIZE_TRAIN", "(80, 96)", "SEED", "3",
    "DATALOADER.NUM_WORKERS", "1",
)

# Runs tools/train_net.py; the first process of the job to reach STOP_AT sends STOP_SIGNAL to
# the process group (then, at a checkpoint write, the other signal during the next one).
STOP_DRIVER = textwrap.dedent("""
    import os, signal, sys
    from resnet_backbone.engine import trainer as engine, preemption

    AT, MARK = os.environ["STOP_AT"], os.environ["STOP_MARK"]
    SIGNALS = [signal.Signals[os.environ["STOP_SIGNAL"]]]
    SIGNALS.append(signal.SIGTERM if SIGNALS[0] == signal.SIGUSR1 else signal.SIGUSR1)

    def stop(n=0):
        try:  # once per job, whichever process gets here first
            os.close(os.open(f"{{MARK}}.{{n}}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os.killpg(0, SIGNALS[n])

    if AT == "the first iteration":
        _run_step = engine.Trainer.run_step

        def run_step(self):
            stop()
            return _run_step(self)

        engine.Trainer.run_step = run_step
    elif AT == "a checkpoint write":
        _atomic_write, saves = engine.atomic_write, []

        def atomic_write(path, write):
            def interrupted(f):
                write(f)
                if path.endswith(".pth") and len(saves) < 2:
                    saves.append(path)
                    stop(len(saves) - 1)  # the data written, not yet renamed
            return _atomic_write(path, interrupted)

        engine.atomic_write = atomic_write
    else:  # an evaluation: after its first image
        _build_evaluator = engine.Trainer.build_evaluator.__func__

        def build_evaluator(cls, *args, **kwargs):
            evaluator = _build_evaluator(cls, *args, **kwargs)
            _process = evaluator.process

            def process(inputs, outputs):
                _process(inputs, outputs)
                if preemption.RUN.phase == AT:
                    stop()

            evaluator.process = process
            return evaluator

        engine.Trainer.build_evaluator = classmethod(build_evaluator)

    # Imported, not run as __main__: the processes spawned for --num-gpus import this script
    # again, and with it the patches above.
    sys.path.insert(0, {tools!r})
    import train_net

    if __name__ == "__main__":
        from detectron2.engine import default_argument_parser

        train_net.detection_run.run(default_argument_parser().parse_args())
""")

PHASES = ["start-up", "the first iteration", "a checkpoint write",
          "the evaluation after iteration 3", "the final evaluation"]
# Every phase with both process counts; each signal in every phase and with every count.
CASES = [(phase, processes, (signal.SIGTERM, signal.SIGUSR1)[(i + processes) % 2])
         for i, phase in enumerate(PHASES) for processes in (1, 2)]


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _caught_signals(pid):
    """The signals `pid` has handlers for (its SigCgt mask), or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    mask = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M).group(1), 16)
    return {s for s in (signal.SIGTERM, signal.SIGUSR1) if mask >> (s - 1) & 1}


def _spawned_workers(pid):
    """The processes `pid` started with multiprocessing's spawn (the job's workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [c for c in children if "spawn_main" in _text(Path(f"/proc/{c}/cmdline"))]


def _text(path):
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _wait_for(condition, process, what):
    deadline = time.time() + 300
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"no {what} after 300 s"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def straight(train_net, tiny, tmp_path_factory):
    """`straight(processes)`: the OUTPUT_DIR of an uninterrupted run of the job (made once)."""
    done = {}

    def run(processes):
        if processes not in done:
            out = tmp_path_factory.mktemp(f"straight{processes}")
            result = train_net("--num-gpus", str(processes), *tiny, *JOB, "OUTPUT_DIR", str(out))
            assert result.returncode == 0, result.stderr[-3000:]
            done[processes] = out
        return done[processes]

    return run


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; Linux signals")
@pytest.mark.parametrize("phase,processes,signum", [
    pytest.param(*case, marks=[pytest.mark.distributed] if case[1] == 2 else [],
                 id=f"{case[0].replace(' ', '-')}-{case[1]}-{case[2].name}") for case in CASES])
def test_a_stop_signal_in_any_phase_exits_75_and_resume_ends_as_an_uninterrupted_run(
        train_net, tiny, straight, tmp_path, phase, processes, signum):
    job = ("--num-gpus", str(processes), *tiny, *JOB)
    out = tmp_path / "out"
    kwargs = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                  start_new_session=True)
    if phase == "start-up":
        process = train_net.popen(*job, "OUTPUT_DIR", str(out), **kwargs)
    else:
        driver = tmp_path / "stop_driver.py"
        driver.write_text(STOP_DRIVER.format(tools=str(REPO / "tools")))
        env = train_net.env(STOP_AT=phase, STOP_SIGNAL=signum.name,
                            STOP_MARK=str(tmp_path / "stop_sent"))
        process = subprocess.Popen(train_net.command(*job, "OUTPUT_DIR", str(out),
                                                     script=driver),
                                   env=env, cwd=REPO, **kwargs)
    try:
        if phase == "start-up" and processes == 1:  # the handlers are in, torch is loading
            _wait_for(lambda: _caught_signals(process.pid) == {signal.SIGTERM, signal.SIGUSR1},
                      process, "stop-signal handlers")
            os.killpg(process.pid, signum)
        elif phase == "start-up":  # the workers are starting
            _wait_for(lambda: len(_spawned_workers(process.pid)) == processes, process,
                      "spawned workers")
            os.killpg(process.pid, signum)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 75, stderr[-3000:]
    stopped = re.findall(r"^ERROR: (?:RunInterrupted|TrainingInterrupted): "
                         r"(SIGTERM|SIGUSR1) received(?: during (.+?): stopped|: saved)", stderr,
                         re.M)
    assert stopped, stderr[-3000:]
    assert stopped[-1][0] == signum.name
    if phase in ("start-up", "the first iteration", "a checkpoint write"):
        assert not (out / "final_metrics.json").exists()
    if phase == "start-up" and processes == 1:
        assert stopped[-1][1] == "start-up" and not out.exists()
    if phase.startswith("the") and "evaluation" in phase:
        assert stopped[-1][1] == phase, stderr[-3000:]
        assert not (out / "final_metrics.json").exists()
    if (out / "last_checkpoint").exists():  # names a complete checkpoint
        torch.load(out / (out / "last_checkpoint").read_text(), map_location="cpu",
                   weights_only=True)
    if out.exists():
        assert not list(out.glob(".*.tmp"))
        if (out / "config.yaml").exists():
            assert "MAX_ITER: 6" in (out / "config.yaml").read_text()
    if phase == "the final evaluation":  # (another process may have stopped before the save)
        final = "model_final" if processes == 1 else "model_"
        assert re.search(rf"--resume to continue from \S+{final}\S*\.pth$", stderr, re.M)

    result = train_net("--resume", *job, "OUTPUT_DIR", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    expected = straight(processes)
    resumed, weights = _weights(out / "model_final.pth"), _weights(expected / "model_final.pth")
    assert all(torch.equal(resumed[k], weights[k]) for k in weights)
    metrics = json.loads((out / "final_metrics.json").read_text())
    assert metrics == json.loads((expected / "final_metrics.json").read_text())
    if phase == "the evaluation after iteration 3":  # redone by --resume, at its iteration
        evaluations = [json.loads(line) for line in (out / "metrics.json").open()
                       if "bbox/AP50" in line]
        assert [e["iteration"] for e in evaluations][-2:] == [3, 6]  # 6: the final one


def test_where_the_run_is_decides_what_a_stop_signal_does(tmp_path, monkeypatch):
    """In this process: at once in a prompt phase (naming it and the newest checkpoint), held
    to the end of a deferred section (a save), recorded only in training and once done."""
    from resnet_backbone.engine import preemption

    monkeypatch.setattr(preemption, "RUN", preemption._Run())
    previous = {s: signal.getsignal(s) for s in preemption.STOP_SIGNALS}
    try:
        preemption.install_handlers()
        preemption.describe_run(output_dir=str(tmp_path))
        with pytest.raises(preemption.StopRequested) as stop:
            os.kill(os.getpid(), signal.SIGUSR1)
        assert str(stop.value) == ("SIGUSR1 received during start-up: stopped with no checkpoint "
                                   "saved; run the same command with --resume to start (from "
                                   "MODEL.WEIGHTS)")
        preemption.RUN.received = None
        (tmp_path / "model_0000003.pth").write_bytes(b"")
        (tmp_path / "last_checkpoint").write_text("model_0000003.pth")
        saved = []
        with pytest.raises(preemption.StopRequested, match="during the evaluation after "
                           rf"iteration 3: stopped; .* continue from {tmp_path}/model_0000003"):
            with preemption.stopping_promptly("the evaluation after iteration 3"):
                with preemption.deferred():
                    os.kill(os.getpid(), signal.SIGTERM)
                    os.kill(os.getpid(), signal.SIGUSR1)  # a second one
                    saved.append("complete")
        assert saved == ["complete"] and preemption.received() == "SIGTERM"

        preemption.RUN.received = None
        training = preemption.StopRequests()
        training.install()
        os.kill(os.getpid(), signal.SIGTERM)  # recorded for the stop hook
        assert training.received == "SIGTERM"
        training.uninstall()
        with pytest.raises(preemption.StopRequested, match="during the final evaluation"):
            with preemption.stopping_promptly("the final evaluation"):
                pass
        preemption.finish()
        os.kill(os.getpid(), signal.SIGTERM)  # done: ignored
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
