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
    """Records stop signals received by this process while installed (main thread only)."""

    def __init__(self):
        self.received = None  # the name of the first stop signal received
        self._previous = {}

    def _record(self, signum, frame):
        self.received = self.received or signal.Signals(signum).name

    def install(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._record) for s in STOP_SIGNALS}

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


@contextmanager
def forwarding_stop_signals_to_children():
    """While inside, this process survives stop signals and passes them on to its child
    processes (which save and stop): they may have been sent to this process alone."""
    def forward(signum, frame):
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
