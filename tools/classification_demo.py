#!/usr/bin/env python
"""The paper's CIFAR-10 study (Fig. 6) at a laptop's scale, on the CPU with no download: trains
plain-20, plain-56, ResNet-20 and ResNet-56 (configs/Demo-Classification/) on the embedded shape
crops through tools/pretrain_net.py (the data is generated on first use), then writes the report
(tools/report.py: the validation errors, and the training/validation error curves with plain
nets and ResNets side by side) and prints the final errors.

    python tools/classification_demo.py [--output-dir output/classification_demo]
        [--nets plain20 plain56 resnet20 resnet56] [KEY VALUE ...]
"""
import argparse
import os
import subprocess
import sys
import time

from tabulate import tabulate

# Its sibling tools (tools/ in a clone, resnet_backbone/tools in a wheel) import by name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from report import classifier_of, error_curves, read_run, write_report  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs", "Demo-Classification")
NETS = ("plain20", "plain56", "resnet20", "resnet56")
FINAL_WINDOW = 5  # logged training errors averaged for the final training error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default=os.path.join(REPO, "output",
                                                             "classification_demo"))
    parser.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS))
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE overrides passed to every pretrain_net run")
    return parser.parse_args(argv)


def train(net, output_dir, opts):
    """Run tools/pretrain_net.py for one config; returns its OUTPUT_DIR."""
    run_dir = os.path.join(output_dir, net)
    command = [sys.executable, os.path.join(REPO, "tools", "pretrain_net.py"),
               "--config-file", os.path.join(CONFIG_DIR, f"{net}.yaml"), "OUTPUT_DIR", run_dir,
               *opts]
    print(f"\n=== training {net}: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True)
    return run_dir


def final_errors(run_dir):
    """(network, training error averaged over the last logged values, final test error)."""
    train, test = error_curves(run_dir)
    last = [train[i] for i in sorted(train)[-FINAL_WINDOW:]]
    cfg, _ = read_run(run_dir)
    return (classifier_of(cfg), sum(last) / len(last) if last else None,
            test[max(test)] if test else None)


def main(argv=None):
    args = parse_args(argv)
    start = time.monotonic()
    runs = [train(net, args.output_dir, args.opts) for net in args.nets]
    markdown = os.path.join(args.output_dir, "report.md")
    print("\n" + write_report(runs, markdown, os.path.join(args.output_dir, "report.png")))
    print(f"report: {markdown} and report.png")
    print(tabulate([final_errors(run) for run in runs],
                   ["network", "final training error (%)", "final validation error (%)"],
                   tablefmt="github", floatfmt=".1f", missingval="—"))
    print(f"total time {(time.monotonic() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
