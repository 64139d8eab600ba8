#!/usr/bin/env python
"""The laptop-sized version of the paper's experiment, on the embedded synthetic data (CPU):

1. train Faster R-CNN (C4) with ResNet-18 and with Plain-18 (the paper's residual-vs-plain
   comparison) through tools/train_net.py and evaluate them (COCO AP, AP50 and the VOC07 mAP);
   the data is generated on first use. The runs go side by side, each on its share of the
   cores: these small convolutions gain far less from a second intra-op thread than from a
   core of their own. ResNet-18's log is shown, the others' are written to OUTPUT/<run>.log;
2. draw ground truth beside predictions for a few validation images (tools/draw_detections.py);
3. write the report (tools/report.py: markdown, and a chart of both runs' results and training
   losses side by side) and print where everything is.

    python tools/demo.py [--output-dir output/demo] [--no-plain] [KEY VALUE ...]
"""
import argparse
import os
import subprocess
import sys
import time
from contextlib import ExitStack

# Its sibling tools (tools/ in a clone, resnet_backbone/tools in a wheel) import by name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from draw_detections import draw_detections  # noqa: E402
from report import flatten_metrics, read_run, write_report  # noqa: E402

from resnet_backbone.data import prepare_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIGS = {
    "resnet18_c4": os.path.join(REPO, "configs", "Demo", "resnet18_c4_synthetic.yaml"),
    "plain18_c4": os.path.join(REPO, "configs", "Demo", "plain18_c4_synthetic.yaml"),
}
# Synthetic val AP50 of `make demo` with the shipped settings, at one commit on two CPU types
# (docs/measurements.md, "CPU demo"): each machine repeats its figures exactly, the two differ.
MEASURED_AP50 = {"resnet18_c4": (61.1, 73.5), "plain18_c4": (25.5, 28.0)}
NET_NAMES = {"resnet18_c4": "ResNet-18", "plain18_c4": "Plain-18"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default=os.path.join(REPO, "output", "demo"))
    parser.add_argument("--no-plain", action="store_true", help="train only ResNet-18")
    parser.add_argument("--num-pictures", type=int, default=4)
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE overrides passed to every train_net run")
    return parser.parse_args(argv)


def start_training(name, output_dir, opts, threads, log=None):
    """Start tools/train_net.py for one demo config on `threads` cores, its output to the
    terminal or to the file `log`; returns (run dir, process)."""
    run_dir = os.path.join(output_dir, name)
    command = [sys.executable, os.path.join(REPO, "tools", "train_net.py"),
               "--config-file", DEMO_CONFIGS[name], "OUTPUT_DIR", run_dir, *opts]
    print(f"\n=== training {name} on {threads} thread(s), output "
          f"{'below' if log is None else 'in ' + log.name}: {' '.join(command)}", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return run_dir, subprocess.Popen(command, env=env, stdout=log, stderr=log)


def train_side_by_side(names, output_dir, opts):
    """Train the demo configs at once, the cores split evenly; returns their run dirs."""
    prepare_dataset("synthetic_shapes_train")  # once, before the runs would race to make it
    os.makedirs(output_dir, exist_ok=True)
    threads = max(1, len(os.sched_getaffinity(0)) // len(names))
    log_paths = {name: os.path.join(output_dir, f"{name}.log") for name in names[1:]}
    with ExitStack() as files:
        started = {names[0]: start_training(names[0], output_dir, opts, threads)}
        for name, path in log_paths.items():
            log = files.enter_context(open(path, "w"))
            started[name] = start_training(name, output_dir, opts, threads, log)
        failed = [f"{name} (exit status {code}, log {log_paths.get(name, 'above')})"
                  for name, (_, process) in started.items() if (code := process.wait())]
    if failed:
        raise SystemExit("demo training failed: " + ", ".join(failed))
    return [run_dir for run_dir, _ in started.values()]


def main(argv=None):
    args = parse_args(argv)
    start = time.monotonic()
    names = ["resnet18_c4"] if args.no_plain else ["resnet18_c4", "plain18_c4"]
    runs = train_side_by_side(names, args.output_dir, args.opts)

    for run in runs:
        paths = draw_detections(run, os.path.join(run, "pictures"), num_images=args.num_pictures)
        print(f"detections of {os.path.basename(run)}: {len(paths)} PNGs in {run}/pictures")
    markdown = os.path.join(args.output_dir, "report.md")
    print("\n" + write_report(runs, markdown, os.path.join(args.output_dir, "report.png")))
    print(f"report: {markdown} and report.png")
    print("\n" + demo_summary({os.path.basename(run): bbox_metrics(run) for run in runs},
                              minutes=(time.monotonic() - start) / 60, opts=args.opts))


def bbox_metrics(run):
    """The COCO box metrics (AP, AP50, ...) of a finished run's first test set."""
    _, metrics = read_run(run)
    return flatten_metrics(next(iter(metrics.values())))


def demo_summary(metrics, *, minutes, opts=()):
    """What the demo's numbers mean: each net's AP50 and AP, the residual net's lead over the
    plain one with the same layers (the comparison the demo exists for), and what to expect."""
    measured = "; ".join(f"{NET_NAMES[name]} {low:.1f} to {high:.1f}"
                         for name, (low, high) in MEASURED_AP50.items() if name in metrics)
    results = ", ".join(f"{NET_NAMES[name]} AP50 {m['AP50']:.1f} (AP {m['AP']:.1f})"
                        for name, m in metrics.items())
    lines = [f"result on the synthetic validation split: {results}."]
    if {"resnet18_c4", "plain18_c4"} <= set(metrics):
        gap = metrics["resnet18_c4"]["AP50"] - metrics["plain18_c4"]["AP50"]
        lines.append(
            f"ResNet-18 is {abs(gap):.1f} AP50 points {'ahead of' if gap >= 0 else 'behind'} "
            "Plain-18, the same 18 layers without shortcuts. On this short schedule from scratch "
            "expect the residual net far ahead: the paper (Sec. 4.1) found ResNet-18 converging "
            "faster than plain-18, and deeper plain nets training worse than shallower ones."
        )
    lines.append(
        f"What to expect with the shipped settings: AP50 {measured} (measured on two CPU types "
        "at one commit). A machine repeats its own figures exactly, but another CPU type may "
        "differ by 10 points and more: its kernels round floating point differently, and "
        "training from scratch amplifies that (docs/getting_started.md, \"The CPU demo\")."
    )
    if opts:
        lines.append(f"(You changed the settings with {' '.join(opts)}: the expected figures "
                     "above do not apply.)")
    lines.append(f"total time {minutes:.1f} min")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
