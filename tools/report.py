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


def chart_png(rows):
    """Grouped bars, paper vs ours, for every row that has at least one of them: PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.ours is not None or r.paper is not None]
    xs = range(len(shown))
    width = 0.4
    fig, ax = plt.subplots(figsize=(max(6, 1.0 * len(shown)), 6.5))
    for label, offset, values in (("paper", -width / 2, [r.paper for r in shown]),
                                  ("ours", width / 2, [r.ours for r in shown])):
        bars = ax.bar([x + offset for x in xs], [v or 0 for v in values], width, label=label)
        ax.bar_label(bars, ["—" if v is None else f"{v:.1f}" for v in values], fontsize=7)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{r.architecture}\n{r.setting}" for r in shown], fontsize=7,
                       rotation=35, ha="right")
    ax.set_ylabel("AP (%)")
    ax.set_title("Detection results: this package vs He et al. 2015 (Tables 7, 8)")
    ax.legend()
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
    png = chart_png(rows)
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
