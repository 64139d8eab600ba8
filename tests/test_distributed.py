"""Distributed training on the CPU (gloo), testable here: two processes end with identical
weights after consuming disjoint shards of one data stream, their gathered evaluation equals a
single-process one, torchrun works, and start-up problems end the job instead of hanging."""
import json
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from resnet_backbone.engine.stream import ResumableBatchSampler

REPO = Path(__file__).resolve().parents[1]
MAX_ITER, IMS_PER_BATCH = 4, 4
TWO_PROCESSES = (
    "SOLVER.MAX_ITER", str(MAX_ITER), "SOLVER.IMS_PER_BATCH", str(IMS_PER_BATCH),
    "SOLVER.STEPS", "(3,)", "SOLVER.CHECKPOINT_PERIOD", "100", "INPUT.MIN_SIZE_TRAIN", "(80, 96)",
    "DATALOADER.ASPECT_RATIO_GROUPING", "False", "SEED", "5",
)

# Runs tools/train_net.py's main() under resnet_backbone.engine.distributed.run, recording in every
# rank the stream positions and image ids it consumed and its final weights.
DRIVER = textwrap.dedent("""
    import json, os, sys
    import torch
    sys.path.insert(0, os.path.join({repo!r}, "tools"))
    import train_net
    from detectron2.engine import default_argument_parser
    from detectron2.utils import comm
    from resnet_backbone.engine import distributed, trainer as engine
    from resnet_backbone.engine import stream

    OUT = os.environ["RECORD_DIR"]
    seen = []
    _getitem = stream.SeededMapDataset.__getitem__

    def recording_getitem(self, key):
        out = _getitem(self, key)
        seen.append([key[0], out["image_id"]])
        return out

    stream.SeededMapDataset.__getitem__ = recording_getitem
    _train = engine.Trainer.train

    def recording_train(self):
        if os.environ.get("DIE_RANK") == str(comm.get_rank()):
            os.kill(os.getpid(), 9)  # a worker that dies at the start of training
        result = _train(self)
        model = self._trainer.model
        model = getattr(model, "module", model)
        rank = comm.get_rank()
        torch.save(model.state_dict(), os.path.join(OUT, f"rank{{rank}}_weights.pth"))
        with open(os.path.join(OUT, f"rank{{rank}}_seen.json"), "w") as f:
            json.dump(seen, f)
        return result

    engine.Trainer.train = recording_train

    if __name__ == "__main__":
        distributed.run(train_net.main, default_argument_parser().parse_args())
""").format(repo=str(REPO))


@pytest.fixture(scope="module")
def overrides(tiny):
    return (*tiny, *TWO_PROCESSES)


def test_ranks_take_disjoint_shards_of_one_stream_and_resume_by_skipping():
    single = ResumableBatchSampler(6, 4, seed=11)
    ranks = [ResumableBatchSampler(6, 2, seed=11, rank=r, world_size=2) for r in (0, 1)]
    take = lambda sampler, n: [b for _, b in zip(range(n), sampler)]  # noqa: E731
    stream = [item for batch in take(single, 5) for item in batch]
    shards = [[item for batch in take(s, 5) for item in batch] for s in ranks]
    assert shards[0] == stream[0::2] and shards[1] == stream[1::2]
    assert sorted(i for _, i in stream[:6]) == list(range(6))  # each epoch is a permutation
    resumed = ResumableBatchSampler(6, 2, seed=11, rank=1, world_size=2, start_batch=3)
    assert take(resumed, 2) == take(ranks[1], 5)[3:]


@pytest.fixture(scope="module")
def two_process_run(train_net, overrides, tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    driver = out / "driver.py"
    driver.write_text(DRIVER)
    result = train_net("--num-gpus", "2", "--dist-url", "auto", *overrides,
                       "OUTPUT_DIR", str(out / "train"), script=driver, RECORD_DIR=str(out))
    assert result.returncode == 0, result.stderr[-4000:]
    return out


@pytest.mark.distributed
def test_two_processes_end_with_identical_weights_on_disjoint_shards(two_process_run):
    out = two_process_run
    weights = [torch.load(out / f"rank{r}_weights.pth") for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    # Every parameter is identical (DDP averages the gradients). BatchNorm running statistics
    # are buffers each rank computes on its own images (Detectron2 builds DDP with
    # broadcast_buffers=False; use SyncBN to share them); rank 0's are the ones saved.
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    parameters = [k for k in weights[0] if not k.endswith(statistics)]
    assert len(parameters) > 50
    different = [k for k in parameters if not torch.equal(weights[0][k], weights[1][k])]
    assert not different, different[:5]
    final = torch.load(out / "train" / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(final[k], weights[0][k]) for k in final)

    seen = [json.loads((out / f"rank{r}_seen.json").read_text()) for r in (0, 1)]
    per_rank = MAX_ITER * IMS_PER_BATCH // 2
    assert [len(s) for s in seen] == [per_rank, per_rank]
    positions = [{p for p, _ in s} for s in seen]
    assert all(p % 2 == 0 for p in positions[0]) and all(p % 2 == 1 for p in positions[1])
    assert positions[0] | positions[1] == set(range(MAX_ITER * IMS_PER_BATCH))
    for step in range(MAX_ITER):  # in every iteration the two ranks train on different images
        ids = [{i for _, i in s[2 * step:2 * step + 2]} for s in seen]
        assert not ids[0] & ids[1], (step, ids)


@pytest.mark.distributed
def test_gathered_evaluation_equals_single_process(two_process_run, train_net, overrides,
                                                   tmp_path):
    out = two_process_run
    gathered = json.loads((out / "train" / "final_metrics.json").read_text())
    result = train_net("--eval-only", *overrides,
                       "MODEL.WEIGHTS", str(out / "train" / "model_final.pth"),
                       "OUTPUT_DIR", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr[-3000:]
    single = json.loads((tmp_path / "eval" / "final_metrics.json").read_text())
    assert gathered.keys() == single.keys() == {"synthetic_shapes_val"}
    for task, metrics in single["synthetic_shapes_val"].items():
        for name, value in metrics.items():
            assert gathered["synthetic_shapes_val"][task][name] == pytest.approx(
                value, abs=1e-6, nan_ok=True), (task, name)


@pytest.mark.distributed
def test_torchrun_environment_rendezvous(train_net, overrides, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = train_net.command(*overrides, "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "(1,)",
                                "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path / "out"))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(port), *command[1:]],
        capture_output=True, text=True, env=train_net.env(), cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Rank of current process: 0. World size: 2" in result.stdout + result.stderr
    assert (tmp_path / "out" / "log.txt.rank1").is_file()  # a second process took part
    assert (tmp_path / "out" / "model_final.pth").is_file()


@pytest.mark.slow
def test_port_in_use_is_reported(train_net, overrides, tmp_path):
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = train_net("--num-gpus", "2", "--dist-url", f"tcp://127.0.0.1:{port}",
                           *overrides, "OUTPUT_DIR", str(tmp_path / "out"), timeout=120)
    assert result.returncode != 0
    assert f"port {port} is already in use" in result.stderr


@pytest.mark.distributed
def test_a_worker_that_dies_ends_the_job(train_net, overrides, tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    result = train_net("--num-gpus", "2", "--dist-url", "auto", *overrides,
                       "OUTPUT_DIR", str(tmp_path / "out"), script=driver,
                       RECORD_DIR=str(tmp_path), DIE_RANK="1", timeout=240)
    assert result.returncode != 0
    assert "DistributedJobError: worker process 1 died" in result.stderr
    assert f"signal {signal.Signals(9).name}" in result.stderr or "SIGKILL" in result.stderr


def test_ddp_of_a_cpu_model_with_upstream_detectron2(monkeypatch, tmp_path):
    """Upstream main's create_ddp_model passes device_ids=[local rank] unless given some;
    DistributedDataParallel refuses those for a CPU model."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from resnet_backbone.engine import distributed

    def upstream_create_ddp_model(model, *, fp16_compression=False, **kwargs):
        if "device_ids" not in kwargs:
            kwargs["device_ids"] = [0]  # [comm.get_local_rank()] in a launched process
        return DistributedDataParallel(model, **kwargs)

    monkeypatch.setattr(distributed, "_detectron2_create_ddp_model", upstream_create_ddp_model)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                            world_size=1)
    try:
        model = distributed.create_ddp_model(torch.nn.Linear(2, 2), broadcast_buffers=False)
        assert isinstance(model, DistributedDataParallel)
        with pytest.raises(ValueError, match="device_ids"):
            upstream_create_ddp_model(torch.nn.Linear(2, 2))
    finally:
        dist.destroy_process_group()


def test_port_of_an_ended_run_in_time_wait_is_free():
    from resnet_backbone.engine.distributed import check_port_free

    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            accepted.close()  # the side that closes first holds the port in TIME-WAIT
            client.recv(1)
    check_port_free(f"tcp://127.0.0.1:{port}")
