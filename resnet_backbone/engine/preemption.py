"""Surviving a scheduler's stop signal: SIGTERM (what SLURM, Kubernetes, `timeout` and `scancel`
send, usually to every process of the job) and SIGUSR1 (what SLURM sends ahead of the end with
`--signal=USR1@<seconds>`).

The training processes turn the signal into a request that the stop hook (`hooks.StopHook`)
answers with a checkpoint and `TrainingInterrupted`. The other processes of the job must live
until that checkpoint is written: DataLoader workers never act on the signals (they end with
their loader, or on their own when the training process is gone), and the process that spawned
the workers of a `--num-gpus` job passes a signal on to them and waits for them.

The workers are forked with the signals blocked, and keep that mask: a worker started by
`spawn` (the default inside the processes `--num-gpus` spawns) runs a fresh interpreter for
seconds before any `worker_init_fn`, with the default action (death) for SIGTERM, and Python's
resource tracker unblocks SIGTERM while starting one. Only a SIGTERM from the worker's own
parent (the DataLoader shutting it down, or the interpreter's exit) ends a worker, as it does
in PyTorch's own worker signal handling.

Where the run is decides what a signal does (`install_handlers`, installed by the training
tools before anything else, and kept to the end):

* start-up (imports, config, start-up checks, building the trainer, loading a checkpoint), an
  evaluation (periodic, final, --eval-only) and the end of a run (before final_metrics.json is
  written): it stops at once, raising `StopRequested` where the process is; the training
  entry points turn it into exit status EXIT_INTERRUPTED and one line saying where the run
  stopped and what to run. Nothing is lost: an evaluation is redone by --resume (the
  checkpoint of its iteration is written before it starts), and start-up wrote nothing that
  is not complete;
* training (`StopRequests` installed by the stop hook): it is recorded, and the hook saves a
  checkpoint and stops at the next iteration every process agrees on;
* a `deferred` section (a checkpoint, the run's config and log being written): it is recorded
  and acted on when the section ends, so a second signal never interrupts a save;
* after the run is done (`finish`): it is recorded and ignored; the run ends with status 0.

This module imports only the standard library: the tools load it by its path before torch and
Detectron2 (`import resnet_backbone.engine.preemption` would run the package's `__init__`, which
imports Detectron2), under its own name, so that the package later finds this same module.
"""
import multiprocessing
import os
import signal
import sys
import threading
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
# The exit status of a run stopped by a stop signal after saving a checkpoint (sysexits.h's
# EX_TEMPFAIL, "try again later"): a batch script requeues the job on it.
EXIT_INTERRUPTED = 75


class StopRequested(BaseException):
    """Raised in the main thread by the stop-signal handler where a run stops at once. Not an
    Exception, so that no `except Exception` of a library on the way swallows it."""

    def __init__(self, signal_name, phase):
        super().__init__(signal_name, phase)
        self.signal_name, self.phase = signal_name, phase

    def __str__(self):
        return stopped_message(self.signal_name, self.phase)


class RunInterrupted(Exception):
    """A run stopped by a stop signal in a resumable state; the message says where and what
    to run (what a worker process passes on to the process that spawned it)."""


class _Run:
    """What the handler of this process needs to know about the run."""
    received = None  # the name of the first stop signal received
    phase = "start-up"  # where the run is, for the message
    prompt = True  # whether a signal stops the run at once (False: recorded only)
    deferring = 0  # depth of `deferred` sections
    recorder = None  # the installed StopRequests (training)
    output_dir = None  # where the run's checkpoints are, once known
    eval_only = False  # the run evaluates only: it is rerun as it is, not resumed


RUN = _Run()


def describe_run(*, output_dir=None, eval_only=None):
    """What the stop messages name: the run's OUTPUT_DIR, and whether it only evaluates."""
    if output_dir is not None:
        RUN.output_dir = output_dir
    if eval_only is not None:
        RUN.eval_only = bool(eval_only)


def _newest_checkpoint():
    """The checkpoint `last_checkpoint` of OUTPUT_DIR names, if it is there."""
    if not RUN.output_dir:
        return None
    try:
        with open(os.path.join(RUN.output_dir, "last_checkpoint")) as f:
            path = os.path.join(RUN.output_dir, f.read().strip())
    except OSError:
        return None
    return path if os.path.isfile(path) else None


def stopped_message(signal_name, phase):
    """One line: which signal stopped the run where, and the command that goes on."""
    head = f"{signal_name} received during {phase}: stopped"
    if RUN.eval_only:
        return f"{head}; run the same command again to evaluate"
    checkpoint = _newest_checkpoint()
    if checkpoint is None:
        return (f"{head} with no checkpoint saved; run the same command with --resume to "
                "start (from MODEL.WEIGHTS)")
    return f"{head}; run the same command with --resume to continue from {checkpoint}"


def received():
    """The name of the first stop signal this process received, or None."""
    return RUN.received


def _stop_if_requested():
    if RUN.received and RUN.prompt and not RUN.deferring:
        raise StopRequested(RUN.received, RUN.phase)


def _on_stop_signal(signum, frame):
    name = signal.Signals(signum).name
    RUN.received = RUN.received or name
    if RUN.recorder is not None:
        RUN.recorder.received = RUN.recorder.received or name
    _stop_if_requested()


def install_handlers():
    """From now on this process handles SIGTERM and SIGUSR1 as the module docstring says
    (main thread only; elsewhere Python cannot install signal handlers)."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, _on_stop_signal)


def stop_later(signal_name):
    """Act on a stop signal (received by some process of the job) at the next point where the
    run stops at once, as if this process had received it."""
    RUN.received = RUN.received or signal_name


@contextmanager
def stopping_promptly(phase):
    """Inside, a stop signal (also one received before) stops the run at once: StopRequested
    names `phase`."""
    previous = RUN.phase, RUN.prompt
    RUN.phase, RUN.prompt = phase, True
    try:
        _stop_if_requested()
        yield
    finally:
        RUN.phase, RUN.prompt = previous


@contextmanager
def deferred():
    """Inside, stop signals are recorded only; one received meanwhile stops the run when the
    section ends (if it stops at once where the section is)."""
    RUN.deferring += 1
    try:
        yield
    finally:
        RUN.deferring -= 1
    _stop_if_requested()


def finish():
    """The run is done: stop signals from now on are recorded and ignored."""
    RUN.phase, RUN.prompt = "the end of the run, after it was done", False


@contextmanager
def exiting_when_stopped():
    """A StopRequested raised inside ends the process with EXIT_INTERRUPTED and its one line
    (for code that runs before the entry point's own handling of errors: its imports)."""
    try:
        yield
    except StopRequested as stop:
        print(f"\nERROR: {RunInterrupted.__name__}: {stop}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)


# How DataLoader workers are started: fork, so that they inherit the blocked signals (on Linux,
# where clusters run; macOS keeps its default, spawn, as forking its system libraries is unsafe,
# and there a worker starting at the moment of a signal can still die of it).
WORKER_START_METHOD = "fork" if sys.platform.startswith("linux") else None


@contextmanager
def stop_signals_blocked():
    """Signals sent meanwhile are held, and delivered on leaving."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _exit_on_sigterm_from_parent():
    while True:
        if signal.sigwaitinfo({signal.SIGTERM}).si_pid == os.getppid():
            os._exit(0)


def exit_only_when_parent_asks(worker_id=None):
    """`worker_init_fn` of the loaders `iterate_shielded` starts: their SIGTERM stays blocked,
    and a thread waits for it, ending the worker only when its parent sent it (where the
    platform has sigwaitinfo: not macOS, whose workers keep the default handling)."""
    if hasattr(signal, "sigwaitinfo"):
        threading.Thread(target=_exit_on_sigterm_from_parent, daemon=True).start()


def iterate_shielded(loader):
    """Iterate a DataLoader (made with `worker_init_fn=exit_only_when_parent_asks`) whose
    workers start, by WORKER_START_METHOD, with the stop signals blocked: a worker that died on
    the job-wide signal would crash training before it saves ("DataLoader worker ... is killed
    by signal: Terminated")."""
    with stop_signals_blocked():
        iterator = iter(loader)
    yield from iterator


class ShieldedLoader:
    """A DataLoader built elsewhere (Detectron2's test loader), iterated as `iterate_shielded`
    does; `len` as the loader's."""

    def __init__(self, loader):
        if getattr(loader, "num_workers", 0) and WORKER_START_METHOD:
            loader.multiprocessing_context = WORKER_START_METHOD
            loader.worker_init_fn = exit_only_when_parent_asks
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return iterate_shielded(self.loader)


class StopRequests:
    """While installed (the training loop, main thread only), stop signals to this process are
    recorded in `received` (the name of the first one) instead of stopping it, except inside
    `stopping_promptly` (an evaluation during training)."""

    def __init__(self):
        self.received = None  # the name of the first stop signal received
        self._previous = {}

    def install(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, _on_stop_signal) for s in STOP_SIGNALS}
            RUN.recorder, RUN.phase, RUN.prompt = self, "training", False

    def uninstall(self):
        if RUN.recorder is self:
            RUN.recorder, RUN.phase, RUN.prompt = None, "the end of training", True
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


@contextmanager
def forwarding_stop_signals_to_children():
    """While inside, this process survives stop signals, records them (`received`) and passes
    them on to its child processes (which save and stop): they may have been sent to this
    process alone."""
    def forward(signum, frame):
        RUN.received = RUN.received or signal.Signals(signum).name
        for child in multiprocessing.active_children():
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                pass

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
