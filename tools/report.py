#!/usr/bin/env python
"""Print finished runs beside the paper's tables (detection: 7 and 8; classification: 2, 3, 4
and 6) and write a PNG chart of the same.

    python tools/report.py output/r101_voc0712 output/vgg16_voc0712 output/resnet56_cifar \
        [--markdown output/report.md] [--chart output/report.png]

A run is an OUTPUT_DIR of tools/train_net.py or tools/pretrain_net.py: its config.yaml says what
was trained (and, for a classifier, with which test views), its final_metrics.json holds the
evaluation. Runs on data the paper did not use (the synthetic demo data) are listed with their
own numbers and no paper column. Runs that differ only in SEED (and OUTPUT_DIR) are one setting
trained with several seeds: the markdown adds their mean, range and the 95 % interval of a new
seed (tools/seed_spread.py), and the chart draws the mean with every seed's value beside it. The
chart also draws, for every run that logged them, the detectors' training loss and box-head
foreground accuracy and the classifiers' training error (thin, dashed) and test error (bold)
against iterations, plain nets and ResNets side by side as in the paper's Figs. 4 and 6; the
seeds of one setting share its colour.
"""
import argparse
import io
import json
import os
import sys
from dataclasses import dataclass
from typing import Optional

import yaml
from tabulate import tabulate

from resnet_backbone.engine.trainer import FINAL_METRICS
from resnet_backbone.files import atomic_write

# Its sibling module (tools/ in a clone, resnet_backbone/tools in a wheel) imports by name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paper_results import CLASSIFICATION_RESULTS, DETECTION_RESULTS  # noqa: E402
from seed_spread import Spread  # noqa: E402

# Metrics shown for test sets the paper did not use (COCO-style AP and the VOC07 mAP).
OTHER_METRICS = ("AP50", "AP", "AP75", "bbox_voc07/AP50")
OTHER_CLASSIFICATION_METRICS = {"top1_err": "top-1 err", "top5_err": "top-5 err"}
DETECTION, CLASSIFICATION = "detection", "classification"


@dataclass
class Row:
    table: str  # "Table 7", "Table 8", ... or "—" for data outside the paper
    setting: str
    architecture: str
    run: Optional[str]  # None for a paper row nobody ran
    ours: Optional[float]
    paper: Optional[float]
    task: str = DETECTION

    @property
    def difference(self):
        if self.ours is None or self.paper is None:
            return None
        return self.ours - self.paper


def architecture_of(cfg):
    """'VGG-16', 'ResNet-101', 'Plain-18', 'ResNet-50 FPN' from a run's config dict."""
    model = cfg["MODEL"]
    if model["BACKBONE"]["NAME"].startswith("build_vgg16"):
        return "VGG-16"
    residual = model.get("RESNET_BACKBONE", {}).get("RESIDUAL", True)
    name = f"{'ResNet' if residual else 'Plain'}-{model['RESNETS']['DEPTH']}"
    return name + " FPN" if "fpn" in model["BACKBONE"]["NAME"] else name


def classifier_of(cfg):
    """'ResNet-34 B', 'Plain-18', 'VGG-16': the architecture with its shortcut option, as the
    paper's classification tables name them."""
    name = architecture_of(cfg)
    options = cfg["MODEL"].get("RESNET_BACKBONE", {})
    if name.startswith("ResNet"):
        return f"{name} {options.get('SHORTCUT', 'B')}"
    return name


def test_views_of(cfg):
    """The run's MODEL.CLASSIFIER.TEST_MODE; 10-crop testing with the corners taken from the
    whole image (TEN_CROP_REGION "image", not the protocol the paper cites) is "10crop-image",
    which no paper table has."""
    classifier = cfg["MODEL"].get("CLASSIFIER", {})
    mode = classifier.get("TEST_MODE", "center")
    if mode == "10crop" and classifier.get("TEN_CROP_REGION", "square") != "square":
        return "10crop-image"
    return mode


def read_run(run_dir):
    """(config dict, {dataset: {task: {metric: value}}}) of a finished run."""
    config_path = os.path.join(run_dir, "config.yaml")
    metrics_path = os.path.join(run_dir, FINAL_METRICS)
    for path in (config_path, metrics_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: is {run_dir} a finished train_net run?")
    with open(config_path) as f:
        cfg = yaml.safe_load(f)
    with open(metrics_path) as f:
        return cfg, json.load(f)


@dataclass
class SeedGroup:
    """Runs of one setting that differ only in SEED: `label` names the network (and, where two
    settings share a network, the folder above the runs)."""
    label: str
    runs: list
    seeds: list


def setting_key(cfg):
    """The run's config without what differs between seeds of one setting."""
    return json.dumps({k: v for k, v in cfg.items() if k not in ("SEED", "OUTPUT_DIR")},
                      sort_keys=True, default=str)


def seed_groups(run_dirs):
    """The runs grouped by setting, in the order first met, each group's runs by seed."""
    groups = {}
    for run in run_dirs:
        cfg, metrics = read_run(run)
        name = classifier_of(cfg) if task_of(metrics) == CLASSIFICATION else architecture_of(cfg)
        groups.setdefault(setting_key(cfg), (name, []))[1].append((cfg.get("SEED", -1), run))
    names = [name for name, _ in groups.values()]
    found = []
    for name, members in groups.values():
        members.sort(key=lambda member: member[0])
        runs = [run for _, run in members]
        label = name
        if names.count(name) > 1:
            label += f" ({os.path.basename(setting_folder(runs[0]))})"
        found.append(SeedGroup(label, runs, [seed for seed, _ in members]))
    return found


def setting_folder(run):
    """output/demo/resnet18_c4 for output/demo/resnet18_c4/seed0; the run itself otherwise."""
    run = os.path.normpath(run)
    name = os.path.basename(run)
    return os.path.dirname(run) if name.startswith("seed") and name[4:].isdigit() else run


def flatten_metrics(results):
    """{"bbox": {"AP": ..}, "bbox_voc07": {"AP50": ..}} -> {"AP": .., "bbox_voc07/AP50": ..}."""
    return {
        key if task == "bbox" else f"{task}/{key}": value
        for task, values in results.items() for key, value in values.items()
    }


def detection_rows(run_dir, cfg, metrics, covered):
    arch, rows = architecture_of(cfg), []
    for dataset, results in metrics.items():
        flat = flatten_metrics(results)
        paper_metrics = [m for (d, m) in DETECTION_RESULTS if d == dataset]
        for metric in paper_metrics:
            table, setting, paper = DETECTION_RESULTS[dataset, metric]
            covered.add((setting, arch))
            rows.append(Row(table, setting, arch, run_dir, flat.get(metric), paper.get(arch)))
        if not paper_metrics:
            rows += [Row("—", f"{dataset}, {metric}", arch, run_dir, flat[metric], None)
                     for metric in OTHER_METRICS if metric in flat]
    return rows


def classification_rows(run_dir, cfg, metrics, covered):
    """Rows of the paper's tables for the run's test set and test views (MODEL.CLASSIFIER.
    TEST_MODE); the run's top-1/top-5 error alone where the paper has none."""
    arch = classifier_of(cfg)
    test_mode = test_views_of(cfg)
    rows = []
    for dataset, results in metrics.items():
        ours = results[CLASSIFICATION]
        tables = CLASSIFICATION_RESULTS.get((dataset, test_mode), [])
        for table, setting, metric, paper in tables:
            covered.add((table, setting, arch))
            rows.append(Row(table, setting, arch, run_dir, ours.get(metric), paper.get(arch),
                            CLASSIFICATION))
        if not tables:
            rows += [Row("—", f"{dataset} ({test_mode}), {label}", arch, run_dir, ours[metric],
                         None, CLASSIFICATION)
                     for metric, label in OTHER_CLASSIFICATION_METRICS.items()]
    return rows


def task_of(metrics):
    return CLASSIFICATION if any(CLASSIFICATION in r for r in metrics.values()) else DETECTION


def build_rows(run_dirs):
    """One row per (run, test set, metric), then, for each task the runs cover, the paper's rows
    that no run covered."""
    rows, covered, tasks = [], set(), set()
    for run_dir in run_dirs:
        cfg, metrics = read_run(run_dir)
        task = task_of(metrics)
        tasks.add(task)
        rows_of = classification_rows if task == CLASSIFICATION else detection_rows
        rows += rows_of(run_dir, cfg, metrics, covered)
    if DETECTION in tasks:
        for table, setting, paper in DETECTION_RESULTS.values():
            rows += [Row(table, setting, arch, None, None, value)
                     for arch, value in paper.items() if (setting, arch) not in covered]
    if CLASSIFICATION in tasks:
        for tables in CLASSIFICATION_RESULTS.values():
            for table, setting, _, paper in tables:
                rows += [Row(table, setting, arch, None, None, value, CLASSIFICATION)
                         for arch, value in paper.items()
                         if (table, setting, arch) not in covered]
    return rows


MARKDOWN_LAYOUT = {  # task -> (headers, number format)
    DETECTION: (["table", "train → test, metric", "backbone", "paper", "ours", "ours − paper",
                 "run"], ".1f"),
    CLASSIFICATION: (["table", "test set, metric", "network", "paper (%)", "ours (%)",
                      "ours − paper", "run"], ".2f"),
}


def to_markdown(rows):
    """One table per task present (detection first), blank-line separated."""
    tables = []
    for task, (headers, number_format) in MARKDOWN_LAYOUT.items():
        of_task = [r for r in rows if r.task == task]
        if not of_task:
            continue
        table = [[r.table, r.setting, r.architecture, r.paper, r.ours,
                  None if r.difference is None else f"{r.difference:+{number_format}}",
                  r.run or "not run"]
                 for r in of_task]
        tables.append(tabulate(table, headers, tablefmt="github", floatfmt=number_format,
                               missingval="—", disable_numparse=[5]))  # keep "+0.6"'s sign
    return "\n\n".join(tables) + "\n"


def spread_markdown(rows, groups):
    """Mean, range and a new seed's 95 % interval of every figure of the settings trained with
    several seeds; "" when there is none."""
    table = []
    for group in groups:
        if len(group.runs) < 2:
            continue
        of_group = [r for r in rows if r.run in group.runs and r.ours is not None]
        for setting in dict.fromkeys(r.setting for r in of_group):
            values = [r.ours for r in of_group if r.setting == setting]
            if len(values) != len(group.runs):
                continue
            spread = Spread.of(values)
            interval = spread.new_seed
            table.append([group.label, setting, ", ".join(map(str, group.seeds)), spread.mean,
                          f"{spread.low:.1f} to {spread.high:.1f}",
                          "—" if interval is None else
                          f"{max(interval[0], 0):.1f} to {min(interval[1], 100):.1f}"])
    if not table:
        return ""
    return "## Spread over seeds\n\n" + tabulate(
        table, ["network", "test set, metric", "seeds", "mean", "range", "a new seed (95 %)"],
        tablefmt="github", floatfmt=".1f") + "\n"


def metric_log(run_dir):
    """The entries of the run's metrics.json (Detectron2's JSONWriter; a resumed run appends to
    it); [] when there is none."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def logged_curve(entries, key):
    """{iteration: value} of `key`; the last value logged at an iteration wins."""
    return {e["iteration"]: e[key] for e in entries if key in e}


# Detectron2's FastRCNNOutputs logs the share of foreground RoIs the box head classifies right.
FOREGROUND_ACCURACY = "fast_rcnn/fg_cls_accuracy"


def training_losses(run_dir):
    """{iteration: total_loss}; {} when the run logged none."""
    return logged_curve(metric_log(run_dir), "total_loss")


def foreground_accuracies(run_dir):
    """{iteration: box-head accuracy on foreground RoIs in %}; {} when the run logged none."""
    return {i: 100 * v for i, v in logged_curve(metric_log(run_dir), FOREGROUND_ACCURACY).items()}


def error_curves(run_dir):
    """(training error, test error) of a classifier run, each {iteration: top-1 error in %}:
    ImageClassifier's "train_top1_err" and the periodic evaluation's top-1 error of the first
    test set (TEST.EVAL_PERIOD)."""
    entries = metric_log(run_dir)
    test_keys = sorted({k for e in entries for k in e if k.endswith("classification/top1_err")})
    test = logged_curve(entries, test_keys[0]) if test_keys else {}
    return logged_curve(entries, "train_top1_err"), test


def draw_bars(axis, rows, groups, ylabel, title, paper_tables):
    """Each setting's mean over its seeds as a bar, every seed's value as a dot on it, side by
    side per test set and metric; the paper's value (from `paper_tables`) marked by a black line
    where a run matches a paper row."""
    settings = list(dict.fromkeys(r.setting for r in rows))
    groups = [g for g in groups if any(r.run in g.runs for r in rows)]
    width = 0.8 / len(groups)
    for index, group in enumerate(groups):
        colour = f"C{index}"
        of_group = [r for r in rows if r.run in group.runs]
        xs, means, papers = [], [], []
        for setting in dict.fromkeys(r.setting for r in of_group):
            values = [r.ours for r in of_group if r.setting == setting]
            x = settings.index(setting) + (index - (len(groups) - 1) / 2) * width
            xs.append(x)
            means.append(sum(values) / len(values))
            axis.scatter([x] * len(values), values, s=10, color="black", zorder=4)
            paper = next((r.paper for r in of_group if r.setting == setting), None)
            if paper is not None:
                papers.append((x, paper))
        seeds = f", {len(group.runs)} seeds" if len(group.runs) > 1 else ""
        bars = axis.bar(xs, means, width, color=colour, alpha=0.8,
                        label=f"{group.label}{seeds}")
        axis.bar_label(bars, [f"{m:.1f}" for m in means], fontsize=7)
        if papers:
            axis.scatter(*zip(*papers), marker="_", s=400, color="black", zorder=3,
                         label="paper" if index == 0 else None)
    axis.set_xticks(range(len(settings)))
    axis.set_xticklabels(settings, fontsize=7, rotation=25, ha="right")
    axis.set_ylabel(ylabel)
    if any(r.paper is not None for r in rows):
        title += f" (black lines: He et al. 2015, {paper_tables})"
    if any(len(g.runs) > 1 for g in groups):
        title += "\nbars: mean over seeds, dots: each seed"
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7)


def draw_curves(axis, curves, groups, ylabel, title):
    """One thin line per run, the runs of one setting in its colour."""
    for index, group in enumerate(groups):
        drawn = [run for run in group.runs if curves.get(run)]
        for run in drawn:
            iterations = sorted(curves[run])
            axis.plot(iterations, [curves[run][i] for i in iterations], color=f"C{index}",
                      linewidth=1.0, alpha=0.8)
        if drawn:
            seeds = f" ({len(drawn)} seeds)" if len(drawn) > 1 else ""
            axis.plot([], [], color=f"C{index}", label=group.label + seeds)
    axis.set_xlabel("iteration")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(fontsize=8)


def draw_error_curves(axis, curves, groups, title):
    """Fig. 6's style: training error thin and dashed, test error bold, one colour per setting,
    every seed drawn."""
    for index, group in enumerate(groups):
        colour = f"C{index}"
        drawn = [run for run in group.runs if run in curves]
        for run in drawn:
            for curve, style in ((curves[run][0], dict(linestyle="--", linewidth=0.8)),
                                 (curves[run][1], dict(linewidth=1.8, alpha=0.85))):
                iterations = sorted(curve)
                axis.plot(iterations, [curve[i] for i in iterations], color=colour, **style)
        if drawn:
            seeds = f" ({len(drawn)} seeds)" if len(drawn) > 1 else ""
            axis.plot([], [], color=colour, label=group.label + seeds)
    axis.set_xlabel("iteration")
    axis.set_ylabel("top-1 error (%)")
    axis.set_title(f"{title} (dashed: training, bold: test)")
    axis.legend(fontsize=8)


def chart_png(rows, run_dirs):
    """PNG bytes, one panel each where there is something to draw: detection results and
    classification errors beside the paper's; the detectors' training loss and box-head
    foreground accuracy; the classifiers' error curves, plain nets and ResNets in separate
    panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = seed_groups(run_dirs)
    panels = []
    shown = [r for r in rows if r.ours is not None]
    detection = [r for r in shown if r.task == DETECTION]
    classification = [r for r in shown if r.task == CLASSIFICATION]
    if detection:
        panels.append(lambda axis: draw_bars(
            axis, detection, groups, "AP (%)", "Detection results", "Tables 7, 8"))
    if classification:
        panels.append(lambda axis: draw_bars(
            axis, classification, groups, "error (%)", "Classification error", "Tables 2-4, 6"))
    classifiers = {r.run for r in classification}
    detectors = [run for run in run_dirs if run not in classifiers]
    for read, ylabel, title in (
            (training_losses, "training loss", "Training loss"),
            (foreground_accuracies, "foreground RoIs classified right (%)",
             "Box head while training")):
        curves = {run: read(run) for run in detectors}
        if any(curves.values()):
            panels.append(lambda axis, curves=curves, ylabel=ylabel, title=title: draw_curves(
                axis, curves, groups, ylabel, title))
    curves = {run: error_curves(run) for run in run_dirs if run in classifiers}
    for kind in ("Plain", "ResNet"):
        of_kind = [g for g in groups if g.label.startswith(kind)
                   and any(c[0] or c[1] for run, c in curves.items() if run in g.runs)]
        if of_kind:
            panels.append(lambda axis, of_kind=of_kind, kind=kind: draw_error_curves(
                axis, curves, of_kind, f"{kind} nets"))
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(6 * len(panels) + 1, 6))
    for draw, axis in zip(panels, axes[0]):
        draw(axis)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, dpi=110, format="png")
    plt.close(fig)
    return png.getvalue()


def write_report(run_dirs, markdown_path, chart_path):
    """Write the markdown table and the chart, each atomically; return the markdown."""
    rows = build_rows(run_dirs)
    text = "# Results against the paper\n\n" + to_markdown(rows)
    spread = spread_markdown(rows, seed_groups(run_dirs))
    if spread:
        text += "\n" + spread
    atomic_write(markdown_path, lambda f: f.write(text.encode("utf-8")))
    png = chart_png(rows, run_dirs)
    atomic_write(chart_path, lambda f: f.write(png))
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="OUTPUT_DIRs of finished tools/train_net.py or tools/pretrain_net.py runs")
    parser.add_argument("--markdown", default="report.md")
    parser.add_argument("--chart", default="report.png")
    args = parser.parse_args(argv)
    print(write_report(args.runs, args.markdown, args.chart))
    print(f"written: {args.markdown}, {args.chart}")


if __name__ == "__main__":
    main()
