#!/usr/bin/env python
"""The laptop-sized version of the paper's experiment, on the embedded synthetic data (CPU):

1. train Faster R-CNN (C4) with ResNet-18 and with Plain-18 (the paper's residual-vs-plain
   comparison; `--depth 34`: ResNet-34 and Plain-34) through tools/train_net.py, once per seed
   (`--seeds N`: seeds 0 to N-1), and evaluate them (COCO AP, AP50 and the VOC07 mAP); the data
   is generated on first use. The runs go side by side, one per core: these small convolutions
   gain far less from a second intra-op thread than from a core of their own. The first run's
   log is shown, the others' are written to OUTPUT/<network>/seed<N>.log;
2. draw ground truth beside predictions for a few validation images of each network's first
   seed (tools/draw_detections.py);
3. write the report (tools/report.py: the results with their spread over seeds, every seed's
   training curves) and print what the numbers show.

    python tools/demo.py [--depth 18|34] [--seeds N] [--first-seed S] [--output-dir output/demo]
        [--no-plain] [--diagnose] [KEY VALUE ...]

--diagnose adds, for every run, its AP50 on the training images, the RPN's recall and its AP50
after re-estimating the BN statistics (tools/demo_diagnosis.py; a few minutes per run).

Each run's folder is OUTPUT/<network>/seed<S>, e.g. output/demo/resnet18_c4/seed0.
"""
import argparse
import os
import subprocess
import sys
import time

# Its sibling tools (tools/ in a clone, resnet_backbone/tools in a wheel) import by name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from demo_diagnosis import diagnose, diagnosis_table  # noqa: E402
from draw_detections import draw_detections  # noqa: E402
from report import flatten_metrics, read_run, write_report  # noqa: E402
from seed_options import add_seed_options, seeds_of  # noqa: E402
from seed_spread import Spread  # noqa: E402

from resnet_backbone.data import prepare_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPTHS = (18, 34)
# 95 % prediction intervals of one new seed's synthetic val AP50 with the shipped settings, from
# seeds 0-2 of `python tools/demo.py --seeds 3 [--depth 34]` on a 2-core AMD EPYC machine
# (docs/demos.md lists every seed).
EXPECTED_AP50 = {
    "resnet18_c4": (50.5, 81.5), "plain18_c4": (45.8, 78.6),
    "resnet34_c4": None, "plain34_c4": None,
}


def network_names(depth, plain=True):
    """The demo configs trained for `depth`: configs/Demo/<name>_synthetic.yaml."""
    return [f"resnet{depth}_c4"] + ([f"plain{depth}_c4"] if plain else [])


def config_of(name):
    return os.path.join(REPO, "configs", "Demo", f"{name}_synthetic.yaml")


def title_of(name):
    """'resnet34_c4' -> 'ResNet-34'."""
    kind, depth = ("ResNet", name[6:]) if name.startswith("resnet") else ("Plain", name[5:])
    return f"{kind}-{depth.split('_')[0]}"


def run_dir_of(output_dir, name, seed):
    return os.path.join(output_dir, name, f"seed{seed}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", default=os.path.join(REPO, "output", "demo"))
    parser.add_argument("--depth", type=int, choices=DEPTHS, default=18,
                        help="train ResNet-18 and Plain-18 (default) or ResNet-34 and Plain-34")
    add_seed_options(parser)
    parser.add_argument("--no-plain", action="store_true", help="train only the ResNet")
    parser.add_argument("--num-pictures", type=int, default=4)
    parser.add_argument("--diagnose", action="store_true",
                        help="also measure train AP50, RPN recall and AP50 with precise BN")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE overrides passed to every train_net run")
    args = parser.parse_args(argv)
    args.seed_list = seeds_of(parser, args)
    return args


def training_command(name, seed, run_dir, opts):
    return [sys.executable, os.path.join(REPO, "tools", "train_net.py"),
            "--config-file", config_of(name), "OUTPUT_DIR", run_dir, "SEED", str(seed), *opts]


def start_training(command, threads, log=None):
    """Start one training command on `threads` cores, its output to the terminal or to the file
    `log`."""
    print(f"\n=== training on {threads} thread(s), output "
          f"{'below' if log is None else 'in ' + log.name}: {' '.join(command)}", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


def train_all(jobs, output_dir, opts):
    """Train every (network, seed) of `jobs`, as many at once as there are cores (at most one
    run per core), the first run's output on the terminal and every other's in its log; returns
    {(network, seed): run dir}. After a failure no further run starts; the runs under way
    finish, then the failures are reported with their logs."""
    prepare_dataset("synthetic_shapes_train")  # once, before the runs would race to make it
    cores = len(os.sched_getaffinity(0))
    at_once = min(len(jobs), cores)
    threads = max(1, cores // at_once)
    run_dirs = {job: run_dir_of(output_dir, *job) for job in jobs}
    waiting, running, failed = list(jobs), {}, {}
    while waiting or running:
        while waiting and len(running) < at_once and not failed:
            job = waiting.pop(0)
            os.makedirs(os.path.dirname(run_dirs[job]), exist_ok=True)
            log = None if job == jobs[0] else open(run_dirs[job] + ".log", "w")
            running[job] = (start_training(training_command(*job, run_dirs[job], opts),
                                           threads, log), log)
        if failed and not running:
            break
        time.sleep(0.2)
        for job, (process, log) in list(running.items()):
            code = process.poll()
            if code is None:
                continue
            del running[job]
            if log is not None:
                log.close()
            if code:
                where = "above" if log is None else log.name
                failed[job] = f"{job[0]} seed {job[1]} (exit status {code}, log {where})"
    if failed:
        raise SystemExit("demo training failed: "
                         + ", ".join(failed[job] for job in jobs if job in failed))
    return run_dirs


def main(argv=None):
    args = parse_args(argv)
    start = time.monotonic()
    names = network_names(args.depth, plain=not args.no_plain)
    seeds = args.seed_list
    run_dirs = train_all([(name, seed) for seed in seeds for name in names], args.output_dir,
                         args.opts)
    for name in names:
        run = run_dirs[name, seeds[0]]
        paths = draw_detections(run, os.path.join(run, "pictures"), num_images=args.num_pictures)
        print(f"detections of {title_of(name)}, seed {seeds[0]}: {len(paths)} PNGs in "
              f"{run}/pictures")
    markdown = os.path.join(args.output_dir, "report.md")
    print("\n" + write_report(list(run_dirs.values()), markdown,
                              os.path.join(args.output_dir, "report.png")))
    print(f"report: {markdown} and report.png")
    results = {name: {seed: bbox_metrics(run_dirs[name, seed]) for seed in seeds}
               for name in names}
    if args.diagnose:
        print("\n" + diagnosis_table([diagnose(run) for run in run_dirs.values()]))
    print("\n" + demo_summary(results, minutes=(time.monotonic() - start) / 60, opts=args.opts))


def bbox_metrics(run):
    """The COCO box metrics (AP, AP50, ...) of a finished run's first test set."""
    _, metrics = read_run(run)
    return flatten_metrics(next(iter(metrics.values())))


def seeds_text(seeds):
    seeds = sorted(seeds)
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def demo_summary(results, *, minutes, opts=()):
    """What the printed numbers show, and nothing more: each network's AP50 (mean and range over
    the seeds), how the ResNet compares with the plain net of the same depth seed by seed, and
    whether each figure lies where the shipped settings' measured seeds say a new seed lands.
    `results`: {network: {seed: {"AP50": .., "AP": ..}}}."""
    some = next(iter(results.values()))
    seeds = sorted(some)
    parts = []
    for name, by_seed in results.items():
        ap50 = Spread.of([by_seed[s]["AP50"] for s in seeds])
        ap = Spread.of([by_seed[s]["AP"] for s in seeds])
        if len(seeds) == 1:
            parts.append(f"{title_of(name)} AP50 {ap50.mean:.1f} (AP {ap.mean:.1f})")
        else:
            parts.append(f"{title_of(name)} AP50 {ap50.describe(bounds=(0, 100))}, AP "
                         f"{ap.mean:.1f}")
    lines = [f"result on the synthetic validation split, {seeds_text(seeds)}: "
             + ", ".join(parts) + "."]
    residual = next((name for name in results if name.startswith("resnet")), None)
    plain = next((name for name in results if name.startswith("plain")), None)
    if residual and plain:
        gaps = [results[residual][s]["AP50"] - results[plain][s]["AP50"] for s in seeds]
        lines.append(comparison(title_of(residual), title_of(plain), gaps))
    lines.append(expectation(results, seeds, changed=bool(opts)))
    if opts:
        lines.append(f"(You changed the settings with {' '.join(opts)}: the expected ranges "
                     "above are those of the shipped settings and do not apply.)")
    lines.append(f"total time {minutes:.1f} min")
    return "\n".join(lines)


def comparison(residual, plain, gaps):
    """The residual net against the plain one, seed by seed, in the words the gaps support."""
    if len(gaps) == 1:
        gap = gaps[0]
        return (f"{residual} is {abs(gap):.1f} AP50 points {'ahead of' if gap >= 0 else 'behind'}"
                f" {plain} at this seed. One seed does not rank them: run --seeds 3 or more for"
                " the spread between seeds (docs/demos.md).")
    ahead = sum(gap > 0 for gap in gaps)
    span = f"{min(gaps):+.1f} to {max(gaps):+.1f}"
    if ahead == len(gaps):
        verdict = f"{residual} is ahead of {plain} at every one of the {len(gaps)} seeds"
    elif ahead == 0:
        verdict = f"{residual} is behind {plain} at every one of the {len(gaps)} seeds"
    else:
        verdict = (f"{residual} is ahead of {plain} at {ahead} of {len(gaps)} seeds and behind"
                   " at the others: these seeds do not rank them")
    return f"{verdict} (AP50 difference {span} points)."


def expectation(results, seeds, *, changed):
    """Each network's measured new-seed range, and whether this run's seeds fall inside it."""
    known = {name: EXPECTED_AP50.get(name) for name in results}
    ranges = "; ".join(f"{title_of(name)} {low:.1f} to {high:.1f}"
                       for name, bounds in known.items() if bounds for low, high in [bounds])
    if not ranges:
        return "No measured range of the shipped settings exists for these networks yet."
    text = (f"Where one new seed lands with the shipped settings (95 %, from 3 measured seeds, "
            f"docs/demos.md): AP50 {ranges}.")
    if changed:
        return text
    outside = [f"{title_of(name)} seed {seed} ({results[name][seed]['AP50']:.1f})"
               for name, bounds in known.items() if bounds for seed in seeds
               if not bounds[0] <= results[name][seed]["AP50"] <= bounds[1]]
    if outside:
        return text + " Outside it: " + ", ".join(outside) + "."
    return text + " Every figure above lies inside."


if __name__ == "__main__":
    main()
