#!/usr/bin/env python
"""Print finished runs beside the paper's Tables 7 and 8 and write a PNG chart of the same.

    python tools/report.py output/r101_voc0712 output/vgg16_voc0712 \
        [--markdown output/report.md] [--chart output/report.png]

A run is an OUTPUT_DIR of tools/train_net.py: its config.yaml says what was trained, its
final_metrics.json holds the evaluation. Runs on data the paper did not use (the synthetic demo
data) are listed with their own numbers and no paper column.
"""
import argparse
import io
import json
import os
from dataclasses import dataclass
from typing import Optional

import yaml
from tabulate import tabulate

from resnet_backbone.files import atomic_write
from resnet_backbone.engine import FINAL_METRICS
from resnet_backbone.paper import DETECTION_RESULTS

# Metrics shown for test sets the paper did not use (COCO-style AP and the VOC07 mAP).
OTHER_METRICS = ("AP50", "AP", "AP75", "bbox_voc07/AP50")


@dataclass
class Row:
    table: str  # "Table 7", "Table 8" or "—" for data outside the paper
    setting: str
    architecture: str
    run: Optional[str]  # None for a paper row nobody ran
    ours: Optional[float]
    paper: Optional[float]

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


def build_rows(run_dirs):
    """One row per (run, test set, metric), then the paper's rows that no run covered."""
    rows, covered = [], set()
    for run_dir in run_dirs:
        cfg, metrics = read_run(run_dir)
        arch = architecture_of(cfg)
        for dataset, results in metrics.items():
            flat = flatten_metrics(results)
            paper_metrics = [m for (d, m) in DETECTION_RESULTS if d == dataset]
            if paper_metrics:
                for metric in paper_metrics:
                    table, setting, paper = DETECTION_RESULTS[dataset, metric]
                    covered.add((dataset, metric, arch))
                    rows.append(Row(table, setting, arch, run_dir, flat.get(metric),
                                    paper.get(arch)))
            else:
                rows += [Row("—", f"{dataset}, {metric}", arch, run_dir, flat[metric], None)
                         for metric in OTHER_METRICS if metric in flat]
    for (dataset, metric), (table, setting, paper) in DETECTION_RESULTS.items():
        rows += [Row(table, setting, arch, None, None, value)
                 for arch, value in paper.items() if (dataset, metric, arch) not in covered]
    return rows


def to_markdown(rows):
    table = [[r.table, r.setting, r.architecture, r.paper, r.ours,
              None if r.difference is None else f"{r.difference:+.1f}", r.run or "not run"]
             for r in rows]
    headers = ["table", "train → test, metric", "backbone", "paper", "ours", "ours − paper", "run"]
    return tabulate(table, headers, tablefmt="github", floatfmt=".1f", missingval="—",
                    disable_numparse=[5]) + "\n"  # keep the sign of "+0.6"


def training_losses(run_dir):
    """{iteration: total_loss} from the run's metrics.json (Detectron2's JSONWriter; a resumed
    run appends to it, and the last value of an iteration wins); {} when there is none."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    return {e["iteration"]: e["total_loss"] for e in entries if "total_loss" in e}


def chart_png(rows, run_dirs):
    """PNG bytes: the runs' results side by side per test set and metric, the paper's value
    marked where a run matches a paper row; and, where the runs logged it, their training loss
    against iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.ours is not None]
    losses = {run: training_losses(run) for run in run_dirs}
    losses = {run: curve for run, curve in losses.items() if curve}
    fig, axes = plt.subplots(1, 2 if losses else 1, squeeze=False,
                             figsize=(12 if losses else 7, 6))
    bars_axis = axes[0][0]
    settings = list(dict.fromkeys(r.setting for r in shown))
    runs = list(dict.fromkeys(r.run for r in shown))
    width = 0.8 / len(runs)
    for index, run in enumerate(runs):
        of_run = {r.setting: r for r in shown if r.run == run}
        xs = [settings.index(setting) + (index - (len(runs) - 1) / 2) * width
              for setting in of_run]
        bars = bars_axis.bar(xs, [r.ours for r in of_run.values()], width,
                             label=f"{next(iter(of_run.values())).architecture} "
                                   f"({os.path.basename(run)})")
        bars_axis.bar_label(bars, [f"{r.ours:.1f}" for r in of_run.values()], fontsize=7)
        paper = [(x, r.paper) for x, r in zip(xs, of_run.values()) if r.paper is not None]
        if paper:
            bars_axis.scatter(*zip(*paper), marker="_", s=400, color="black", zorder=3,
                              label="paper" if index == 0 else None)
    bars_axis.set_xticks(range(len(settings)))
    bars_axis.set_xticklabels(settings, fontsize=7, rotation=25, ha="right")
    bars_axis.set_ylabel("AP (%)")
    bars_axis.set_title("Detection results (black lines: He et al. 2015, Tables 7, 8)")
    bars_axis.legend(fontsize=7)
    if losses:
        loss_axis = axes[0][1]
        for run, curve in losses.items():
            cfg, _ = read_run(run)
            iterations = sorted(curve)
            loss_axis.plot(iterations, [curve[i] for i in iterations], marker=".",
                           label=f"{architecture_of(cfg)} ({os.path.basename(run)})")
        loss_axis.set_xlabel("iteration")
        loss_axis.set_ylabel("training loss")
        loss_axis.set_title("Training loss")
        loss_axis.legend()
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
    parser.add_argument("runs", nargs="+", help="OUTPUT_DIRs of finished tools/train_net.py runs")
    parser.add_argument("--markdown", default="report.md")
    parser.add_argument("--chart", default="report.png")
    args = parser.parse_args(argv)
    print(write_report(args.runs, args.markdown, args.chart))
    print(f"written: {args.markdown}, {args.chart}")


if __name__ == "__main__":
    main()
