#!/usr/bin/env python
"""Check that the paper's detectors train, save, resume and evaluate on this machine's GPUs.

For each config (default: the R-101 C4 and VGG-16 PASCAL VOC configs, at their own input size,
i.e. the paper's), on the embedded synthetic data and from random weights (nothing is
downloaded; FrozenBN statistics are calibrated on one batch so that training does not diverge):

1. train:  tools/train_net.py --num-gpus N, the first half of --iters, saving a checkpoint;
2. resume: torchrun --nproc_per_node N tools/train_net.py --resume to --iters, which must
           continue from that checkpoint;
3. eval:   tools/train_net.py --eval-only --num-gpus N of the final weights (COCO AP).

One line per step; the exit status is 1 if any step failed (its log's tail is printed).

    python tools/gpu_check.py                       # all GPUs of this machine
    python tools/gpu_check.py --fast-path           # also each config + configs/Base-FastPath.yaml
    python tools/gpu_check.py --configs COCO-Detection/resnet50_fpn_coco2017.yaml --iters 40
    python tools/gpu_check.py --device cpu --iters 4 INPUT.MIN_SIZE_TRAIN "(96,)" ...  # no GPU
"""
import argparse
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# Its sibling tools (tools/ in a clone, resnet_backbone/tools in a wheel) import as modules.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from benchmark_lib import calibrate_frozen_bn  # noqa: E402
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

from resnet_backbone import model_zoo  # noqa: E402
from resnet_backbone.data import prepare_dataset  # noqa: E402
from resnet_backbone.engine.trainer import FINAL_METRICS  # noqa: E402
from resnet_backbone.engine.launch import load_config  # noqa: E402
from resnet_backbone.weights.safe_load import read_checkpoint  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
FAST_PATH = os.path.join(REPO, "configs", "Base-FastPath.yaml")
DEFAULT_CONFIGS = ["PascalVOC-Detection/resnet101_c4_voc0712.yaml",
                   "PascalVOC-Detection/vgg16_voc0712.yaml"]
TRAIN, TEST = "synthetic_shapes_train", "synthetic_shapes_val"


class CheckFailed(RuntimeError):
    pass


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, metavar="CONFIG",
                        help="shipped configs (relative to configs/) or YAML paths")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--num-gpus", type=int, default=None,
                        help="processes per run (default: every GPU; 1 on the CPU)")
    parser.add_argument("--iters", type=int, default=40, help="iterations in all (default 40)")
    parser.add_argument("--ims-per-gpu", type=int, default=2, help="images per process and step")
    parser.add_argument("--fast-path", action="store_true",
                        help="also check every config with configs/Base-FastPath.yaml")
    parser.add_argument("--output-dir", default=None,
                        help="where the runs go (default: a new temporary folder, removed after "
                        "unless a check failed)")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE overrides for every run (e.g. smaller images on a CPU)")
    args = parser.parse_args(argv)
    if args.iters < 2:
        parser.error("--iters must be at least 2 (half are trained, half resumed)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no GPU is visible to torch (use --device cpu to rehearse)")
    if args.num_gpus is None:
        args.num_gpus = torch.cuda.device_count() if args.device == "cuda" else 1
    return args


def config_path(name):
    return name if os.path.isfile(name) else model_zoo.get_config_file(name)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_initial_weights(config_file, overrides, path):
    """Random weights of the config's model with FrozenBN calibrated on two training images (noise
    images give statistics so unlike the data's that the first losses are in the hundreds), saved
    where MODEL.WEIGHTS can load them. Built on the CPU without the fast path (the parameters
    are the same), so that this process holds no GPU memory while the runs train."""
    args = argparse.Namespace(config_file=config_file, opts=[*overrides, "MODEL.DEVICE", "cpu"])
    cfg = load_config(args)
    torch.manual_seed(0)
    model = build_model(cfg)
    mapper = DatasetMapper(cfg, is_train=False)
    calibrate_frozen_bn(model, [mapper(d) for d in DatasetCatalog.get(TRAIN)[:2]])
    torch.save({"model": model.state_dict()}, path)
    return cfg


def run_step(command, log_path, env):
    with open(log_path, "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if result.returncode:
        with open(log_path) as log:
            tail = "".join(log.readlines()[-25:])
        raise CheckFailed(f"exit status {result.returncode}; the end of {log_path}:\n{tail}")


def training_summary(output_dir, first_iter):
    """Loss and timing of the iterations from `first_iter` on, from metrics.json and log.txt."""
    with open(os.path.join(output_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = [r for r in rows if "total_loss" in r and r["iteration"] >= first_iter]
    if not rows:
        raise CheckFailed(f"{output_dir}/metrics.json has no training rows from {first_iter}")
    losses = [r["total_loss"] for r in rows]
    if not all(map(math.isfinite, losses)):
        raise CheckFailed(f"non-finite loss in {output_dir}/metrics.json: {losses}")
    with open(os.path.join(output_dir, "log.txt")) as f:
        memory = re.findall(r"max_mem: (\d+)M", f.read())
    return {"last": rows[-1]["iteration"], "loss": (losses[0], losses[-1]),
            "seconds": rows[-1].get("time"), "max_mem_mb": int(memory[-1]) if memory else None}


def describe(summary, images_per_step):
    seconds, memory = summary["seconds"], summary["max_mem_mb"]
    speed = (f"{seconds:.3f} s/it, {images_per_step / seconds:.1f} img/s" if seconds
             else "time n/a")
    peak = f"peak {memory / 1024:.1f} GiB" if memory else "peak n/a (CPU)"
    return f"{speed} | {peak} | loss {summary['loss'][0]:.3f} -> {summary['loss'][1]:.3f}"


def check_config(name, config_file, args, workdir, env, report):
    """The three steps for one config; `report(step, text)` prints one line per step."""
    half = args.iters // 2
    processes = args.num_gpus
    images = args.ims_per_gpu * processes
    out = os.path.join(workdir, name.replace("/", "_"))
    run_dir = os.path.join(out, "run")
    os.makedirs(out, exist_ok=True)
    common = [
        "MODEL.DEVICE", args.device, "DATASETS.TRAIN", f"('{TRAIN}',)",
        "DATASETS.TEST", f"('{TEST}',)", "MODEL.ROI_HEADS.NUM_CLASSES", "5",
        "SOLVER.IMS_PER_BATCH", str(images), "SOLVER.BASE_LR", "0.002",
        # Random weights give large first gradients: bounded steps keep the check finite.
        "SOLVER.CLIP_GRADIENTS.ENABLED", "True", "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "norm",
        "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "1.0",
        "SOLVER.WARMUP_ITERS", str(max(1, half // 2)), "SOLVER.STEPS", "()",
        "SOLVER.CHECKPOINT_PERIOD", str(half), "TEST.EVAL_PERIOD", "0",
        "OUTPUT_DIR", run_dir, *args.opts,
    ]
    weights = os.path.join(out, "initial.pth")
    cfg = make_initial_weights(config_file, [*common, "MODEL.WEIGHTS", ""], weights)
    size = f"{cfg.INPUT.MIN_SIZE_TRAIN[0]} px (max {cfg.INPUT.MAX_SIZE_TRAIN})"
    launch = ["--num-gpus", str(processes), "--dist-url", "auto"]
    script = [sys.executable, TRAIN_NET, "--config-file", config_file]

    run_step([*script, *launch, *common, "MODEL.WEIGHTS", weights, "SOLVER.MAX_ITER", str(half)],
             os.path.join(out, "train.log"), env)
    summary = training_summary(run_dir, 0)
    report("train", f"--num-gpus {processes} | iterations 0-{summary['last']} at {size} | "
                    + describe(summary, images))

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                str(processes), "--master_port", str(free_port()), TRAIN_NET,
                "--config-file", config_file, "--resume"]
    run_step([*torchrun, *common, "MODEL.WEIGHTS", weights, "SOLVER.MAX_ITER", str(args.iters)],
             os.path.join(out, "resume.log"), env)
    with open(os.path.join(out, "resume.log")) as f:
        resumed = re.search(r"resuming from (\S+) at iteration (\d+)", f.read())
    if not resumed or int(resumed.group(2)) != half:
        raise CheckFailed(f"the --resume run did not continue from iteration {half} "
                          f"(see {out}/resume.log)")
    saved = read_checkpoint(os.path.join(run_dir, "model_final.pth"))
    if saved.get("iteration") != args.iters - 1:
        raise CheckFailed(f"model_final.pth is of iteration {saved.get('iteration')}, "
                          f"expected {args.iters - 1}")
    summary = training_summary(run_dir, half)
    report("resume", f"torchrun --nproc_per_node {processes} | from "
                     f"{os.path.basename(resumed.group(1))}, iterations {half}-{summary['last']} "
                     f"| " + describe(summary, images))

    eval_dir = os.path.join(out, "eval")
    start = time.perf_counter()
    run_step([*script, *launch, "--eval-only", *common, "OUTPUT_DIR", eval_dir,
              "MODEL.WEIGHTS", os.path.join(run_dir, "model_final.pth")],
             os.path.join(out, "eval.log"), env)
    with open(os.path.join(eval_dir, FINAL_METRICS)) as f:
        bbox = json.load(f)[TEST]["bbox"]
    report("eval", f"--eval-only --num-gpus {processes} | {TEST} | AP {bbox['AP']:.1f}, "
                   f"AP50 {bbox['AP50']:.1f} (random start, {args.iters} iterations) | "
                   f"{time.perf_counter() - start:.0f} s with start-up")


def checks_to_run(args, workdir):
    """(label, config file) of each check: every config and, with --fast-path, every config
    again with configs/Base-FastPath.yaml added to its _BASE_."""
    checks = []
    for name in args.configs:
        checks.append((name, config_path(name)))
        if args.fast_path:
            fast = os.path.join(workdir, os.path.basename(name).replace(".yaml", "_fast.yaml"))
            with open(fast, "w") as f:
                f.write(f"_BASE_: [{json.dumps(checks[-1][1])}, {json.dumps(FAST_PATH)}]\n")
            checks.append((f"{name} + fast path", fast))
    return checks


def main(argv=None):
    args = parse_args(argv)
    device = (torch.cuda.get_device_name() if args.device == "cuda" else "CPU")
    print(f"[gpu_check] {device} x {args.num_gpus}, torch {torch.__version__}", flush=True)
    prepare_dataset(TRAIN)
    prepare_dataset(TEST)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    failed = 0
    workdir = args.output_dir or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(workdir, exist_ok=True)
    checks = checks_to_run(args, workdir)
    for label, config_file in checks:
        def report(step, text, label=label):
            print(f"[gpu_check] {label} | {step:6} | {text} | ok", flush=True)
        try:
            check_config(label.replace(" + fast path", "_fast"), config_file, args, workdir, env,
                         report)
        except CheckFailed as error:
            failed += 1
            print(f"[gpu_check] {label} | FAILED | {error}", flush=True)
    print(f"[gpu_check] {len(checks) - failed} of {len(checks)} configs passed", flush=True)
    if failed and not args.output_dir:
        print(f"[gpu_check] the runs and their logs are kept in {workdir}", flush=True)
    elif not args.output_dir:
        shutil.rmtree(workdir)  # checkpoints of R-101 are hundreds of MB each
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
