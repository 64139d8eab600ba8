#!/usr/bin/env python
"""The paper's CIFAR-10 study (Fig. 6) at a laptop's scale, on the CPU with no download: trains
plain-20, plain-56, ResNet-20 and ResNet-56 (configs/Demo-Classification/) on the embedded shape
crops through tools/pretrain_net.py, once per seed (`--seeds N`: seeds 0 to N-1; the data is
generated on first use), then writes the report (tools/report.py: the validation errors with
their spread over seeds, every seed's training/validation error curves with plain nets and
ResNets side by side) and prints the final errors and what they show.

    python tools/classification_demo.py [--output-dir output/classification_demo]
        [--nets plain20 plain56 resnet20 resnet56] [--seeds N] [--first-seed S] [KEY VALUE ...]

(--nets takes every word up to the next option: give another option after it before KEY VALUE.)

Each run's folder is OUTPUT/<net>/seed<S>, e.g. output/classification_demo/resnet56/seed0.
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
from seed_options import add_seed_options, seeds_of  # noqa: E402
from seed_spread import Spread  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, "configs", "Demo-Classification")
NETS = ("plain20", "plain56", "resnet20", "resnet56")
FINAL_WINDOW = 5  # logged training errors averaged for the final training error
PAPER_SCHEDULE = ("python tools/pretrain_net.py --config-file configs/CIFAR-10/resnet56.yaml "
                  "(and plain20, plain56, resnet20: CIFAR-10, 64k iterations at batch 128)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default=os.path.join(REPO, "output",
                                                             "classification_demo"))
    parser.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS))
    add_seed_options(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE overrides passed to every pretrain_net run")
    args = parser.parse_args(argv)
    args.seed_list = seeds_of(parser, args)
    return args


def train(net, seed, output_dir, opts):
    """Run tools/pretrain_net.py for one config and seed; returns its OUTPUT_DIR."""
    run_dir = os.path.join(output_dir, net, f"seed{seed}")
    command = [sys.executable, os.path.join(REPO, "tools", "pretrain_net.py"),
               "--config-file", os.path.join(CONFIG_DIR, f"{net}.yaml"), "OUTPUT_DIR", run_dir,
               "SEED", str(seed), *opts]
    print(f"\n=== training {net}, seed {seed}: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True)
    return run_dir


def final_errors(run_dir):
    """(training error averaged over the last logged values, final validation error)."""
    train_curve, test_curve = error_curves(run_dir)
    last = [train_curve[i] for i in sorted(train_curve)[-FINAL_WINDOW:]]
    return (sum(last) / len(last) if last else None,
            test_curve[max(test_curve)] if test_curve else None)


def error_table(runs):
    """One row per network: its final training and validation errors, mean and range over its
    seeds."""
    rows = []
    for net, net_runs in runs.items():
        errors = [final_errors(run) for run in net_runs]
        cells = []
        for column in (0, 1):
            values = [e[column] for e in errors if e[column] is not None]
            cells.append(Spread.of(values).describe(bounds=(0, 100)) if values else None)
        rows.append([classifier_of(read_run(net_runs[0])[0]), *cells])
    return tabulate(rows, ["network", "final training error (%)", "final validation error (%)"],
                    tablefmt="github", missingval="—")


def depth_comparison(runs):
    """For each kind present at both depths: how the 56-layer net's final validation error
    compares with the 20-layer one's, seed by seed, and nothing beyond it."""
    lines = []
    for kind, title in (("plain", "Plain"), ("resnet", "ResNet")):
        shallow, deep = runs.get(f"{kind}20"), runs.get(f"{kind}56")
        if not shallow or not deep:
            continue
        pairs = [(final_errors(s)[1], final_errors(d)[1]) for s, d in zip(shallow, deep)]
        differences = [d - s for s, d in pairs if s is not None and d is not None]
        if not differences:  # no validation error logged (TEST.EVAL_PERIOD 0)
            continue
        worse = sum(d > 0 for d in differences)
        span = f"{min(differences):+.1f} to {max(differences):+.1f}"
        if len(differences) == 1:
            verdict = (f"{title}-56 ends {abs(differences[0]):.1f} points "
                       f"{'above' if differences[0] > 0 else 'below'} {title}-20 in validation "
                       "error at this one seed")
        elif worse == len(differences):
            verdict = f"{title}-56 ends above {title}-20 in validation error at every seed"
        elif worse == 0:
            verdict = f"{title}-56 ends below {title}-20 in validation error at every seed"
        else:
            verdict = (f"{title}-56 ends above {title}-20 at {worse} of {len(differences)} "
                       "seeds and below at the others: these seeds do not rank them")
        lines.append(f"{verdict} (difference {span} points).")
    return lines


def main(argv=None):
    args = parse_args(argv)
    start = time.monotonic()
    seeds = args.seed_list
    runs = {net: [train(net, seed, args.output_dir, args.opts) for seed in seeds]
            for net in args.nets}
    markdown = os.path.join(args.output_dir, "report.md")
    every_run = [run for net_runs in runs.values() for run in net_runs]
    print("\n" + write_report(every_run, markdown, os.path.join(args.output_dir, "report.png")))
    print(f"report: {markdown} and report.png")
    print(error_table(runs))
    for line in depth_comparison(runs):
        print(line)
    print("The paper's final ordering (Fig. 6: Plain-56 above Plain-20, ResNet-56 below "
          f"ResNet-20) comes from its schedule on CIFAR-10: {PAPER_SCHEDULE}.")
    print(f"total time {(time.monotonic() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
