"""Time one Faster R-CNN training step of this package's backbones beside Detectron2's own.

For R-50 and R-101 in the C4 design (build_paper_resnet_backbone + PaperRes5ROIHeads vs
Detectron2's build_resnet_backbone + Res5ROIHeads) and the FPN design
(build_paper_resnet_fpn_backbone vs build_resnet_fpn_backbone, StandardROIHeads for both), and
VGG-16 (conv5_3 + RoIPool + fc6/fc7) beside R-101 C4 as in the paper. Each model runs in its own
process; the models of a comparison take single steps in turn, on the same seeded synthetic
batch and, for ours vs Detectron2's, from the same initial weights (so their first losses agree
exactly). Random weights get FrozenBN statistics calibrated on the batch so that training does
not diverge. Prints the median step time (forward + backward + SGD step, after warm-up), its
spread, CPU time, page faults, the peak memory the steps add, and the ratios Detectron2 / ours
(>= 1: ours is not slower / uses no more memory), and images per second. `--fast-path` adds
R-101 C4 with the switches of configs/Base-FastPath.yaml, compared with the built-in default.

    python tools/benchmark.py                          # CPU, and CUDA too where available
    python tools/benchmark.py --device cpu --repeats 3 --iters 4 --warmup 1
    python tools/benchmark.py --device cuda --amp
    python tools/benchmark.py --models R50-FPN R50-FPN-d2 --threads 1 --json bench.json
    python tools/benchmark.py --device cuda --models R101-C4 R101-C4-d2 --fast-path --warmup 10
    python tools/benchmark.py --device cuda --batch-size 8 --image-size 800 --image-width 1333 \
        --models R101-C4 R101-C4-d2 VGG16-C4 --fast-path --json bench_cuda.json

Defaults: CPU 1 image of 512x672, 128 RoIs per image (about 7 minutes for all models on a quiet
2-core machine); CUDA 2 images of 800x1056 and Detectron2's 512 RoIs per image.
Peak memory: on CPU the peak RSS of the model's process (getrusage), on CUDA
torch.cuda.max_memory_allocated; the harness is tools/benchmark_lib.py.
"""
import argparse
import os
import sys
import warnings

# Detectron2 v0.6 scripts functions at import time, which torch >= 2.9 reports as deprecated.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")

# Its sibling tools (tools/ in a clone, resnet_backbone/tools in a wheel) import as modules.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from benchmark_lib import BENCHMARK_MODELS, format_benchmark, run_benchmark  # noqa: E402

from resnet_backbone.files import write_json  # noqa: E402

DEFAULT_MODELS = [name for name, (_, _, kind) in BENCHMARK_MODELS.items() if kind != "fast"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "all"), default="all",
        help="where to run: cpu, cuda, or all (default: CPU, plus CUDA when available)",
    )
    parser.add_argument("--iters", type=int, default=5, help="timed steps per model (default 5)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps per model first (default 2)"
    )
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="runs of every group, each in fresh processes (default 1); the numbers pool the "
        "timed steps of all runs, which also covers the variation between processes",
    )
    parser.add_argument(
        "--image-size", type=int, default=None,
        help="shorter image side; the longer is 4/3 of it rounded to 32 (default 512 on CPU, "
        "800 on CUDA, Detectron2's training size)",
    )
    parser.add_argument(
        "--image-width", type=int, default=None,
        help="longer image side (default 4/3 of --image-size rounded to 32); 1333 with "
        "--image-size 800 is Detectron2's largest training size, the issue's reference setting",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None,
        help="images per step (default 1 on CPU, 2 on CUDA, Detectron2's 16 images / 8 GPUs)",
    )
    parser.add_argument(
        "--models", nargs="+", default=DEFAULT_MODELS, choices=list(BENCHMARK_MODELS),
        metavar="MODEL",
        help=f"models to run (default all): {', '.join(DEFAULT_MODELS)}; '-d2' is Detectron2's "
        "built-in ResNet. Pairs and VGG16-C4 + R101-C4 run interleaved",
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch threads per model process (default: torch's default, one per core); 1 gives "
        "steadier CPU timings on a machine that other jobs share",
    )
    parser.add_argument(
        "--rois-per-image", type=int, default=None,
        help="MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE (default 128 on CPU, which keeps a full run "
        "at a few minutes since the C4 head runs res5 on every RoI; Detectron2's 512 on CUDA)",
    )
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument(
        "--fast-path", action="store_true",
        help="add R101-C4-fast: R101-C4 with configs/Base-FastPath.yaml (folded FrozenBN, "
        "channels_last, bf16 autocast, torch.compile), compared with Detectron2's R101-C4-d2",
    )
    parser.add_argument(
        "--no-compile", action="store_true",
        help="the fast path without torch.compile (whose first steps compile for minutes on a "
        "CPU; raise --warmup when compiling)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and data (default 0)")
    parser.add_argument("--json", metavar="OUT", help="also write every number to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.fast_path and "R101-C4-fast" not in args.models:
        args.models = [*args.models, "R101-C4-fast"]
    if args.iters < 1 or args.warmup < 0 or args.repeats < 1:
        parser.error("--iters and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.device == "all":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    elif args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False on this machine")
    else:
        devices = [args.device]
    if args.amp and "cuda" not in devices:
        sys.exit("--amp runs on CUDA only; use --device cuda (or all, on a machine with a GPU)")

    def log(message):
        if not args.quiet:
            print(f"[benchmark] {message}", file=sys.stderr, flush=True)

    reports = []
    for device in devices:
        cuda = device == "cuda"
        report = run_benchmark(
            args.models, device=device, iters=args.iters, warmup=args.warmup,
            repeats=args.repeats,
            batch_size=args.batch_size or (2 if cuda else 1),
            image_size=args.image_size or (800 if cuda else 512), image_width=args.image_width,
            rois_per_image=args.rois_per_image or (512 if cuda else 128),
            amp=args.amp and cuda, seed=args.seed, threads=args.threads, log=log,
            compile=not args.no_compile,
        )
        reports.append(report)
        print(format_benchmark(report))
        print(flush=True)
    if args.json:
        write_json(args.json, reports)
        print(f"wrote {args.json}")
    return reports


if __name__ == "__main__":
    main(sys.argv[1:])
