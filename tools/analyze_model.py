"""Parameters and multiply-adds of the paper's networks next to its Table 1, or of the model of
any config, as Detectron2's tools/analyze_model.py counts them.

With --paper-table1: counts the ImageNet classifier of each shipped config
(configs/ImageNet-Classification: ResNet-18..152 and their plain counterparts, stem + res2..res5
+ global average pool + 1000-way fc; VGG-16, 13 convs + pool5 + fc6/fc7/fc8) with fvcore at
224x224. fvcore counts one multiply-add as one flop, the paper's unit, and counts trainable
BatchNorm's affine too (about 0.5% of the total).

    python tools/analyze_model.py --paper-table1
    python tools/analyze_model.py --paper-table1 --depths 50 --stride-in-3x3  # torchvision's
    python tools/analyze_model.py --paper-table1 --json analysis.json

With --config-file (trailing overrides): Detectron2's tool, its flags, defaults and output
(`Total GFlops: mean±std`): the tasks `parameter` and `structure` of the model of any config,
and for detectors `flop` and `activation` averaged over --num-inputs images (default 100, as
Detectron2's) of the config's first test set with its weights loaded
(tools/model_analysis.py):

    python tools/analyze_model.py --config-file configs/Demo/resnet18_c4_synthetic.yaml \
        --tasks flop parameter --num-inputs 10
    python tools/analyze_model.py --tasks parameter structure \
        --config-file configs/PascalVOC-Detection/resnet101_c4_voc0712.yaml
"""
import argparse
import os
import sys
import warnings

# Detectron2 v0.6 scripts functions at import time, which torch >= 2.9 reports as deprecated.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")

# Its sibling modules (tools/ in a clone, resnet_backbone/tools in a wheel) import by name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from fvcore.nn import FlopCountAnalysis, parameter_count  # noqa: E402
from tabulate import tabulate  # noqa: E402
from torch import nn  # noqa: E402

import model_analysis as analysis  # noqa: E402
import paper_results as paper  # noqa: E402
import resnet_backbone.classification  # noqa: E402,F401 (Table 1 builds ImageClassifiers)
from resnet_backbone.files import write_json  # noqa: E402
from resnet_backbone.model_zoo import get_config  # noqa: E402
from resnet_backbone.modeling.resnet import DEPTH_TABLE  # noqa: E402


class Logits(nn.Module):
    """An `ImageClassifier`'s backbone and head on a batch of tensors: what Table 1 counts."""

    def __init__(self, classifier):
        super().__init__()
        self.backbone, self.head = classifier.backbone, classifier.head

    def forward(self, x):
        # The fully-convolutional form: equal to the fc layers at 224x224, valid at any size.
        return self.head.dense_forward(next(iter(self.backbone(x).values())))


def classifier(config, **overrides):
    """The ImageNet classifier of a shipped config, on the CPU, with `overrides` (KEY: value)."""
    cfg = get_config(f"ImageNet-Classification/{config}")
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *sum(overrides.items(), ())])
    return Logits(build_model(cfg))


def count(model, input_size):
    """Parameters and fvcore multiply-adds of `model` on one input_size x input_size image."""
    counter = FlopCountAnalysis(model.eval(), torch.zeros(1, 3, input_size, input_size))
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    with torch.no_grad():
        flops = counter.total()
    return {"params": parameter_count(model)[""], "flops": flops,
            "flops_by_operator": dict(counter.by_operator())}


def analyze(depths, *, input_size=224, stride_in_1x1=True, plain=True, vgg=True):
    """One row per network with its counts and the paper's multiply-adds (None where the paper
    gives none: plain-50/101/152, or an input size other than 224)."""
    networks = []
    for residual in (True, False) if plain else (True,):
        for depth in depths:
            in_paper = residual or depth in paper.PLAIN_DEPTHS_IN_PAPER
            model = classifier(f"resnet{depth}.yaml", **{
                "MODEL.RESNET_BACKBONE.RESIDUAL": residual,
                "MODEL.RESNETS.STRIDE_IN_1X1": stride_in_1x1,
            })
            networks.append((
                f"{'ResNet' if residual else 'plain'}-{depth}",
                DEPTH_TABLE[depth][0].__name__ + (", shortcut B" if residual else ""),
                model, paper.TABLE1_MULTIPLY_ADDS[depth] if in_paper else None,
            ))
    if vgg:
        networks.append(("VGG-16", "13 conv + 3 fc", classifier("vgg16.yaml"),
                         paper.VGG16_MULTIPLY_ADDS))
    rows = []
    for name, layout, model, paper_flops in networks:
        if input_size != 224:
            paper_flops = None
        row = dict(name=name, layout=layout, input_size=input_size, paper_flops=paper_flops,
                   **count(model, input_size))
        row["relative_difference"] = None if paper_flops is None else row["flops"] / paper_flops - 1
        rows.append(row)
    return rows


def format_rows(rows):
    """Markdown table of `analyze` rows."""
    table = [
        [row["name"], row["layout"], row["params"] / 1e6, row["flops"] / 1e9,
         None if row["paper_flops"] is None else row["paper_flops"] / 1e9,
         None if row["relative_difference"] is None else f"{row['relative_difference']:+.1%}"]
        for row in rows
    ]
    headers = ["network", "layout", "params (M)", "multiply-adds (1e9)", "paper (1e9)",
               "ours vs paper"]
    return tabulate(table, headers, tablefmt="github", floatfmt=("", "", ".2f", ".2f", ".1f"),
                    missingval="—")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper-table1", action="store_true",
                        help="count the paper's Table 1 networks (ImageNet classifiers) instead "
                        "of the model of a config")
    parser.add_argument("--depths", type=int, nargs="+", default=sorted(DEPTH_TABLE),
                        choices=sorted(DEPTH_TABLE), metavar="DEPTH",
                        help="ResNet depths to count (default: all of Table 1)")
    parser.add_argument("--input-size", type=int, default=224,
                        help="side of the square input (default 224, the paper's)")
    parser.add_argument("--stride-in-3x3", action="store_true",
                        help="bottleneck stride in the 3x3 conv (torchvision) instead of the first "
                        "1x1 (MSRA's models, which Table 1 counts)")
    parser.add_argument("--no-plain", action="store_true", help="leave out the plain nets")
    parser.add_argument("--no-vgg", action="store_true", help="leave out VGG-16")
    parser.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")
    parser.add_argument("--config-file", metavar="CONFIG",
                        help="count the model of this config instead of Table 1's networks: a "
                        "shipped name, a .yaml or .py file, or a training run's OUTPUT_DIR")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help=f"with --config-file: what to count, any of {list(analysis.TASKS)} "
                        "(default: flop parameter)")
    parser.add_argument("-n", "--num-inputs", type=int, default=100,
                        help="with --config-file: test images that flops and activations are "
                        "averaged over (default 100, as Detectron2's tool)")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="with --config-file: config overrides (KEY VALUE for YAML, "
                        "key=value for LazyConfigs)")
    args = parser.parse_args(argv)
    table1_flags = [flag for flag, given in (
        ("--depths", args.depths != sorted(DEPTH_TABLE)), ("--input-size", args.input_size != 224),
        ("--stride-in-3x3", args.stride_in_3x3), ("--no-plain", args.no_plain),
        ("--no-vgg", args.no_vgg)) if given]
    if args.paper_table1 == bool(args.config_file):
        parser.error("name what to count: --config-file CONFIG (a model, as Detectron2's "
                     "tools/analyze_model.py) or --paper-table1 (the paper's Table 1 networks)")
    if args.config_file and table1_flags:
        parser.error(f"{', '.join(table1_flags)} apply to --paper-table1, not to --config-file")
    if args.paper_table1 and args.tasks is not None:
        parser.error("--tasks applies to --config-file; --paper-table1 counts parameters and "
                     "multiply-adds")
    # --tasks takes every word after it: the KEY VALUE overrides that follow are split off
    tasks = list(args.tasks or ["flop", "parameter"])
    split = next((i for i, word in enumerate(tasks) if word not in analysis.TASKS), len(tasks))
    args.tasks, extra = tasks[:split], tasks[split:]
    if extra and not (extra[0].isupper() or "=" in extra[0]):
        parser.error(f"--tasks {extra[0]!r} is not a task; use any of {list(analysis.TASKS)}")
    if not args.tasks:
        parser.error(f"--tasks: name one or more of {list(analysis.TASKS)}")
    args.opts = extra + args.opts
    if args.opts and not args.config_file:
        parser.error(f"config overrides {args.opts} need --config-file")
    return args


def format_config_results(config_file, run, results):
    """The text of `analysis.analyze_run` results, a section per task."""
    weights = run.weights or "none (random initialisation)"
    lines = [f"{config_file}: {run.name}"]
    for task, result in results.items():
        lines.append(f"\n== {task} ==")
        if task == "flop":
            lines += [
                f"Total GFlops: {result['mean'] / 1e9:.1f}±{result['std'] / 1e9:.1f}",
                f"multiply-adds per image: {result['mean'] / 1e9:.3f}e9 +- "
                f"{result['std'] / 1e9:.3f}e9 over {result['images']} image(s) of "
                f"{run.test_datasets[0]} (fvcore: one multiply-add is one flop), weights {weights}",
                "by operator (1e9): " + ", ".join(
                    f"{op} {value / 1e9:.3f}" for op, value in result["by_operator"].items()),
                "per module, first image:", result["table"],
            ]
        elif task == "activation":
            lines += [
                f"Total (Million) Activations: {result['mean_millions']:.1f}"
                f"±{result['std_millions']:.1f}",
                f"activations per image: {result['mean_millions']:.2f}M +- "
                f"{result['std_millions']:.2f}M over {result['images']} image(s) of "
                f"{run.test_datasets[0]}",
                "by operator (M): " + ", ".join(
                    f"{op} {value:.2f}" for op, value in result["by_operator_millions"].items()),
            ]
        elif task == "parameter":
            lines += [f"parameters: {result['total'] / 1e6:.3f}M", result["table"]]
        else:
            lines.append(result)
    return "\n".join(lines)


def analyze_config_file(args):
    run = analysis.analysis_run(args.config_file, args.opts)
    results = analysis.analyze_run(run, args.tasks, num_inputs=args.num_inputs)
    print(format_config_results(args.config_file, run, results))
    if args.json:
        numbers = {task: {k: v for k, v in result.items() if k != "table"}
                   for task, result in results.items() if task != "structure"}
        write_json(args.json, {"config_file": args.config_file, **numbers})
        print(f"wrote {args.json}")
    return results


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(0)
    if args.config_file:
        return analyze_config_file(args)
    rows = analyze(args.depths, input_size=args.input_size,
                   stride_in_1x1=not args.stride_in_3x3, plain=not args.no_plain,
                   vgg=not args.no_vgg)
    placement = "3x3 conv (torchvision)" if args.stride_in_3x3 else "first 1x1 conv (MSRA)"
    print(f"ImageNet classifiers at {args.input_size}x{args.input_size}, bottleneck stride in "
          f"the {placement}; plain nets are the same layers without shortcuts.\n")
    print(format_rows(rows))
    if args.json:
        write_json(args.json, {"input_size": args.input_size, "networks": rows})
        print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
