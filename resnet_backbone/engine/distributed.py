"""Starting one training function on one or many processes, with Detectron2's `launch` or under
`torchrun`, so that start-up problems end the job with a message instead of hanging.

* Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the environment) the process
  group is initialised from the environment and nothing is spawned.
* Otherwise Detectron2's `launch` spawns `--num-gpus` processes per machine (gloo on CPU, NCCL on
  GPUs). A `--dist-url tcp://HOST:PORT` port already in use on the first machine is reported
  before spawning; a worker that raises or dies ends the whole job (torch.multiprocessing
  terminates the others) with a message naming it; collectives time out after
  $RESNET_BACKBONE_DIST_TIMEOUT_MIN minutes (default 10) instead of Detectron2's 30.
* Stop signals (`preemption.py`): every process of the job handles them; a worker stopped by
  one passes its message on as `preemption.RunInterrupted`, and when this process received one
  too (a scheduler signals the whole job), a worker that died of it or of its peers' stopping
  also ends the job as interrupted.
* `create_ddp_model` lets a CPU model train under gloo with both Detectron2 v0.6 and upstream
  main (whose create_ddp_model gives DistributedDataParallel device_ids for any model).
"""
import functools
import logging
import os
import socket
import sys
from datetime import timedelta
from urllib.parse import urlparse

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch
from detectron2.engine.defaults import create_ddp_model as _detectron2_create_ddp_model
from detectron2.utils import comm

from . import preemption
from .preemption import (EXIT_INTERRUPTED, RunInterrupted, StopRequested,
                         forwarding_stop_signals_to_children)

logger = logging.getLogger(__name__)

TIMEOUT_ENV = "RESNET_BACKBONE_DIST_TIMEOUT_MIN"
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class DistributedJobError(RuntimeError):
    """A process of a distributed job could not start, raised, or died; the others were
    stopped."""


def share_rank0_buffers(model):
    """Give every process of the job rank 0's buffers (BN running statistics). DDP sends rank
    0's buffers at the start of each training forward, but that forward then updates each
    rank's copy from its own batch, so after training the ranks hold different statistics and
    the checkpoint holds rank 0's. An evaluation that scores each rank's share of the images
    with that rank's own statistics then scores no model that exists on disk, and differs from
    `--eval-only` of the saved weights and from a run resumed from them."""
    if comm.get_world_size() == 1:
        return
    with torch.no_grad():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def dist_timeout():
    return timedelta(minutes=float(os.environ.get(TIMEOUT_ENV, "10")))


def under_torchrun(environ=os.environ):
    return all(v in environ for v in _TORCHRUN_VARS)


def world_size_of(args, environ=os.environ):
    if under_torchrun(environ):
        return int(environ["WORLD_SIZE"])
    return args.num_gpus * args.num_machines


def check_port_free(dist_url, machine_rank=0):
    """On the first machine, a tcp:// rendezvous port must be free; raise a clear error if not."""
    if not dist_url or machine_rank != 0 or not dist_url.startswith("tcp://"):
        return
    url = urlparse(dist_url)
    if url.hostname not in ("127.0.0.1", "localhost", "0.0.0.0", socket.gethostname()):
        try:
            local = socket.gethostbyname(url.hostname) in (
                "127.0.0.1", socket.gethostbyname(socket.gethostname()))
        except OSError:
            local = False
        if not local:
            return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the rendezvous store binds: sockets of an ended run in TIME-WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", url.port))
        except OSError as e:
            raise DistributedJobError(
                f"--dist-url {dist_url}: port {url.port} is already in use ({e.strerror}); "
                "another job may be running there. Pass another --dist-url port, or "
                "--dist-url auto for a free one on a single machine."
            ) from None


def create_ddp_model(model, **kwargs):
    """Detectron2's `create_ddp_model`, with no device_ids for a CPU model (which
    DistributedDataParallel rejects them for)."""
    if not any(p.is_cuda for p in model.parameters()):
        kwargs.setdefault("device_ids", None)
    return _detectron2_create_ddp_model(model, **kwargs)


def _init_from_env():
    world_size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    has_gpu = torch.cuda.is_available()
    if has_gpu:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if has_gpu else "gloo", init_method="env://",
                            world_size=world_size, rank=rank, timeout=dist_timeout())
    if hasattr(comm, "create_local_process_group"):  # Detectron2 after v0.6
        comm.create_local_process_group(local_size)
    else:
        machine = rank // local_size
        for i in range(world_size // local_size):
            group = dist.new_group(list(range(i * local_size, (i + 1) * local_size)))
            if i == machine:
                comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()


def _run_then_leave_group(main_func, args):
    """`main_func(args)` with the stop-signal handlers installed (a spawned process may not
    have run the tool's own first lines), a stop passed on as RunInterrupted (an Exception,
    which a spawned process reports to its parent), then the process group is destroyed: a
    gloo group still alive at interpreter exit can abort the process ("terminate called
    without an active exception", SIGABRT) after a run that succeeded, which `launch` would
    report as a dead worker. Not after an error, when other processes may still be inside a
    collective."""
    preemption.install_handlers()
    try:
        result = main_func(args)
    except StopRequested as stop:
        raise RunInterrupted(str(stop)) from None
    preemption.finish()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return result


def run(main_func, args, *, passed_on=()):
    """Run `main_func(args)` in every process of the job described by `args` (Detectron2's
    --num-gpus / --num-machines / --machine-rank / --dist-url) or by torchrun's environment.
    A spawned worker's exception of a class in `passed_on` is raised here as that class (with
    its message); stop signals to this process are passed on to the workers
    (`preemption.py`), and after one any worker's end is RunInterrupted."""
    main_func = functools.partial(_run_then_leave_group, main_func)
    if under_torchrun():
        if int(os.environ["WORLD_SIZE"]) > 1:
            _init_from_env()
        return main_func(args)
    world_size = args.num_gpus * args.num_machines
    if world_size == 1:  # as launch() does
        return main_func(args)
    if args.dist_url != "auto":
        check_port_free(args.dist_url, args.machine_rank)
    try:
        with forwarding_stop_signals_to_children():
            return launch(main_func, args.num_gpus, num_machines=args.num_machines,
                          machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,),
                          timeout=dist_timeout())
    except mp.ProcessExitedException as e:
        if preemption.received() or e.exit_code == EXIT_INTERRUPTED:
            raise _interrupted(e) from None
        raise DistributedJobError(
            f"worker process {e.error_index} died ({e}); the other workers were stopped"
        ) from None
    except mp.ProcessRaisedException as e:
        text = str(e).strip().splitlines()
        for error_class in passed_on:
            name = f"{error_class.__module__}.{error_class.__qualname__}: "
            if text and text[-1].startswith(name):
                raise error_class(text[-1][len(name):]) from None
        if preemption.received():
            raise _interrupted(e, text[-1] if text else None) from None
        raise DistributedJobError(
            f"worker process {e.error_index} failed with: {text[-1] if text else e}; the other "
            f"workers were stopped. Its traceback:\n{e}"
        ) from None


def _interrupted(error, last_line=None):
    """The job stopped after this process received a stop signal: a worker ended by it (before
    its handlers were installed) or by its peers' stopping."""
    detail = f"{error}".strip().splitlines()[0] if last_line is None else last_line
    return RunInterrupted(preemption.stopped_message(
        preemption.received() or "a stop signal",
        f"the run of the workers (worker {error.error_index}: {detail})"))


def exit_with_message(error, status=1):
    """One line on stderr for errors of a kind the user can fix, then exit with `status`."""
    print(f"\nERROR: {type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(status)
