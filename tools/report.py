#!/usr/bin/env python
"""Print finished runs beside the paper's tables (detection: 7 and 8; classification: 2, 3, 4
and 6) and write a PNG chart of the same.

    python tools/report.py output/r101_voc0712 output/vgg16_voc0712 output/resnet56_cifar \
        [--markdown output/report.md] [--chart output/report.png]

A run is an OUTPUT_DIR of tools/train_net.py or tools/pretrain_net.py: its config.yaml says what
was trained (and, for a classifier, with which test views), its final_metrics.json holds the
evaluation. Runs on data the paper did not use (the synthetic demo data) are listed with their
own numbers and no paper column. The chart also draws, where the runs logged them, the detectors'
training loss and the classifiers' training error (thin, dashed) and test error (bold) against
iterations, plain nets and ResNets side by side as in the paper's Figs. 4 and 6.
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


def training_losses(run_dir):
    """{iteration: total_loss}; {} when the run logged none."""
    return logged_curve(metric_log(run_dir), "total_loss")


def error_curves(run_dir):
    """(training error, test error) of a classifier run, each {iteration: top-1 error in %}:
    ImageClassifier's "train_top1_err" and the periodic evaluation's top-1 error of the first
    test set (TEST.EVAL_PERIOD)."""
    entries = metric_log(run_dir)
    test_keys = sorted({k for e in entries for k in e if k.endswith("classification/top1_err")})
    test = logged_curve(entries, test_keys[0]) if test_keys else {}
    return logged_curve(entries, "train_top1_err"), test


def label_of(run, architecture):
    return f"{architecture} ({os.path.basename(run)})"


def draw_bars(axis, rows, ylabel, title, paper_tables):
    """The runs' results side by side per setting, the paper's value (from `paper_tables`)
    marked by a black line where a run matches a paper row."""
    settings = list(dict.fromkeys(r.setting for r in rows))
    runs = list(dict.fromkeys(r.run for r in rows))
    width = 0.8 / len(runs)
    for index, run in enumerate(runs):
        of_run = {r.setting: r for r in rows if r.run == run}
        xs = [settings.index(setting) + (index - (len(runs) - 1) / 2) * width
              for setting in of_run]
        bars = axis.bar(xs, [r.ours for r in of_run.values()], width,
                        label=label_of(run, next(iter(of_run.values())).architecture))
        axis.bar_label(bars, [f"{r.ours:.1f}" for r in of_run.values()], fontsize=7)
        paper = [(x, r.paper) for x, r in zip(xs, of_run.values()) if r.paper is not None]
        if paper:
            axis.scatter(*zip(*paper), marker="_", s=400, color="black", zorder=3,
                         label="paper" if index == 0 else None)
    axis.set_xticks(range(len(settings)))
    axis.set_xticklabels(settings, fontsize=7, rotation=25, ha="right")
    axis.set_ylabel(ylabel)
    if any(r.paper is not None for r in rows):
        title += f" (black lines: He et al. 2015, {paper_tables})"
    axis.set_title(title)
    axis.legend(fontsize=7)


def draw_losses(axis, losses, architectures):
    for run, curve in losses.items():
        iterations = sorted(curve)
        axis.plot(iterations, [curve[i] for i in iterations], marker=".",
                  label=label_of(run, architectures[run]))
    axis.set_xlabel("iteration")
    axis.set_ylabel("training loss")
    axis.set_title("Training loss")
    axis.legend()


def draw_error_curves(axis, curves, architectures, title):
    """Fig. 6's style: training error thin and dashed, test error bold, one colour per run."""
    for index, (run, (train, test)) in enumerate(curves.items()):
        colour = f"C{index}"
        for curve, style in ((train, dict(linestyle="--", linewidth=0.8)),
                             (test, dict(linewidth=2.2))):
            iterations = sorted(curve)
            axis.plot(iterations, [curve[i] for i in iterations], color=colour, **style)
        axis.plot([], [], color=colour, label=label_of(run, architectures[run]))
    axis.set_xlabel("iteration")
    axis.set_ylabel("top-1 error (%)")
    axis.set_title(f"{title} (dashed: training, bold: test)")
    axis.legend(fontsize=8)


def chart_png(rows, run_dirs):
    """PNG bytes, one panel each where there is something to draw: detection results and
    classification errors beside the paper's; the detectors' training loss; the classifiers'
    error curves, plain nets and ResNets in separate panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    architectures = {run: classifier_of(cfg) if task_of(metrics) == CLASSIFICATION
                     else architecture_of(cfg)
                     for run, (cfg, metrics) in ((run, read_run(run)) for run in run_dirs)}
    panels = []
    shown = [r for r in rows if r.ours is not None]
    detection = [r for r in shown if r.task == DETECTION]
    classification = [r for r in shown if r.task == CLASSIFICATION]
    if detection:
        panels.append(lambda axis: draw_bars(
            axis, detection, "AP (%)", "Detection results", "Tables 7, 8"))
    if classification:
        panels.append(lambda axis: draw_bars(
            axis, classification, "error (%)", "Classification error", "Tables 2-4, 6"))
    classifiers = {r.run for r in classification}
    losses = {run: training_losses(run) for run in run_dirs if run not in classifiers}
    losses = {run: curve for run, curve in losses.items() if curve}
    if losses:
        panels.append(lambda axis: draw_losses(axis, losses, architectures))
    curves = {run: error_curves(run) for run in run_dirs if run in classifiers}
    for kind in ("Plain", "ResNet"):
        of_kind = {run: c for run, c in curves.items()
                   if architectures[run].startswith(kind) and (c[0] or c[1])}
        if of_kind:
            panels.append(lambda axis, of_kind=of_kind, kind=kind: draw_error_curves(
                axis, of_kind, architectures, f"{kind} nets"))
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
