"""Side-by-side tables (markdown and PNG) of finished runs against the paper's Tables 7 and 8.

A run is an OUTPUT_DIR written by `tools/train_net.py`: its `config.yaml` (written by
Detectron2's default_setup) says what was trained and tested, and `final_metrics.json` holds
the evaluation results. Runs on data the paper did not use (the synthetic demo data) are listed
with their own numbers and no paper column.
"""
import json
import os
from dataclasses import dataclass
from typing import Optional

import yaml

FINAL_METRICS = "final_metrics.json"

# (test set, metric key in our results) -> (paper table, description, {architecture: value}).
PAPER_RESULTS = {
    ("voc_2007_test", "AP50"): (
        "Table 7", "VOC 07+12 → VOC 07 test, mAP", {"VGG-16": 73.2, "ResNet-101": 76.4}
    ),
    ("voc_2012_test", "AP50"): (
        "Table 7", "VOC 07++12 → VOC 12 test (server), mAP", {"VGG-16": 70.4, "ResNet-101": 73.8}
    ),
    ("coco_2014_val", "AP50"): (
        "Table 8", "COCO train → val, mAP@.5", {"VGG-16": 41.5, "ResNet-101": 48.4}
    ),
    ("coco_2014_val", "AP"): (
        "Table 8", "COCO train → val, mAP@[.5,.95]", {"VGG-16": 21.2, "ResNet-101": 27.2}
    ),
}
PAPER_ROW_ORDER = list(PAPER_RESULTS)
# Metrics shown for test sets the paper did not use (COCO-style AP and the VOC07 mAP).
OTHER_METRICS = ("AP50", "AP", "AP75", "bbox_voc07/AP50")


@dataclass
class Row:
    table: str  # "Table 7", "Table 8" or "—" for data outside the paper
    setting: str
    architecture: str
    run: Optional[str]  # the run directory, None for a paper row nobody ran
    ours: Optional[float]
    paper: Optional[float]

    @property
    def difference(self):
        if self.ours is None or self.paper is None:
            return None
        return self.ours - self.paper


def architecture_of(cfg):
    """'VGG-16', 'ResNet-101', 'Plain-18' ... from a run's config dict."""
    model = cfg["MODEL"]
    if model["BACKBONE"]["NAME"].startswith("build_vgg16"):
        return "VGG-16"
    residual = model.get("RESNET_BACKBONE", {}).get("RESIDUAL", True)
    name = f"{'ResNet' if residual else 'Plain'}-{model['RESNETS']['DEPTH']}"
    if "fpn" in model["BACKBONE"]["NAME"]:
        name += " FPN"
    return name


def read_run(run_dir):
    """(config dict, {dataset: {metric: value}}) of a finished run; errors name the file."""
    config_path = os.path.join(run_dir, "config.yaml")
    metrics_path = os.path.join(run_dir, FINAL_METRICS)
    for path in (config_path, metrics_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: is {run_dir} a finished train_net run?")
    with open(config_path) as f:
        cfg = yaml.safe_load(f)
    with open(metrics_path) as f:
        metrics = json.load(f)
    return cfg, metrics


def flatten_metrics(results):
    """Detectron2's {"bbox": {"AP": ..}, "bbox_voc07": {"AP50": ..}} of one dataset ->
    {"AP": .., "bbox_voc07/AP50": ..}. On VOC test sets "bbox" comes from the VOC07 evaluator,
    so AP50 is the VOC07 mAP; on COCO, AP50 and AP are mAP@.5 and mAP@[.5,.95]."""
    flat = {}
    for task, values in results.items():
        for key, value in values.items():
            flat[key if task == "bbox" else f"{task}/{key}"] = value
    return flat


def build_rows(run_dirs):
    """One row per (run, test set, metric), plus the paper's rows that no run covered."""
    rows, covered = [], set()
    for run_dir in run_dirs:
        cfg, metrics = read_run(run_dir)
        arch = architecture_of(cfg)
        for dataset, results in metrics.items():
            flat = flatten_metrics(results)
            paper_metrics = [m for (d, m) in PAPER_ROW_ORDER if d == dataset]
            for metric in paper_metrics or [m for m in OTHER_METRICS if m in flat]:
                if (dataset, metric) in PAPER_RESULTS:
                    table, setting, paper = PAPER_RESULTS[(dataset, metric)]
                    covered.add((dataset, metric, arch))
                    rows.append(
                        Row(table, setting, arch, run_dir, flat.get(metric), paper.get(arch))
                    )
                else:
                    rows.append(Row("—", f"{dataset}, {metric}", arch, run_dir, flat[metric], None))
    for dataset, metric in PAPER_ROW_ORDER:
        table, setting, paper = PAPER_RESULTS[(dataset, metric)]
        for arch, value in paper.items():
            if (dataset, metric, arch) not in covered:
                rows.append(Row(table, setting, arch, None, None, value))
    return rows


def _fmt(value, signed=False):
    if value is None:
        return "—"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def to_markdown(rows):
    lines = [
        "| table | train → test, metric | backbone | paper | ours | ours − paper | run |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.table} | {r.setting} | {r.architecture} | {_fmt(r.paper)} | {_fmt(r.ours)} "
            f"| {_fmt(r.difference, signed=True)} | {r.run or 'not run'} |"
        )
    return "\n".join(lines) + "\n"


def write_chart(rows, path):
    """Grouped bars: paper vs ours for every row that has at least one of them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.ours is not None or r.paper is not None]
    labels = [f"{r.architecture}\n{r.setting}" for r in shown]
    width = 0.4
    fig, ax = plt.subplots(figsize=(max(6, 1.0 * len(shown)), 6.5))
    xs = range(len(shown))
    ax.bar([x - width / 2 for x in xs], [r.paper or 0 for r in shown], width, label="paper")
    ax.bar([x + width / 2 for x in xs], [r.ours or 0 for r in shown], width, label="ours")
    for x, r in zip(xs, shown):
        for offset, value in ((-width / 2, r.paper), (width / 2, r.ours)):
            ax.text(x + offset, (value or 0) + 0.5, _fmt(value), ha="center", fontsize=7)
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=7, rotation=35, ha="right")
    ax.set_ylabel("AP (%)")
    ax.set_title("Detection results: this package vs He et al. 2015 (Tables 7, 8)")
    ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(run_dirs, markdown_path, chart_path):
    """Write both files (atomically) and return the markdown text."""
    rows = build_rows(run_dirs)
    text = "# Results against the paper\n\n" + to_markdown(rows)
    tmp = markdown_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, markdown_path)
    write_chart(rows, chart_path)
    return text
