"""The harness of tools/benchmark.py: one Faster R-CNN training step of this package's
backbones beside Detectron2's built-in ResNet of the same depth and design, and VGG-16, each
built from its shipped COCO config (BENCHMARK_CONFIGS).

Every model runs in a process of its own (`benchmark_worker`) so that its peak memory is its own;
`run_group` keeps the processes of one comparison alive together and lets them take single steps
in turn, so drift of the machine hits all of them alike. Ours loads the built-in model's initial
weights (the parameter names are the same): both see identical inputs, weights, proposals and RoI
samples, and their first losses agree. Random weights are made trainable by
`calibrate_frozen_bn` so that SGD does not diverge and every step does the same work.
"""
import contextlib
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
import traceback
import warnings

import numpy as np
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from fvcore.nn import parameter_count
from tabulate import tabulate

from resnet_backbone import model_zoo
from resnet_backbone.modeling.fast_path import apply_fast_path
from resnet_backbone.weights.safe_load import read_checkpoint

# name -> (depth, design, implementation). "ours" uses this package's builders, "d2" Detectron2's
# built-in ResNet (build_resnet_backbone / build_resnet_fpn_backbone) with its own heads, "fast"
# ours with the switches of configs/Base-FastPath.yaml (tools/benchmark.py --fast-path).
BENCHMARK_MODELS = {
    "R50-C4": (50, "C4", "ours"),
    "R50-C4-d2": (50, "C4", "d2"),
    "R101-C4": (101, "C4", "ours"),
    "R101-C4-d2": (101, "C4", "d2"),
    "R50-FPN": (50, "FPN", "ours"),
    "R50-FPN-d2": (50, "FPN", "d2"),
    "R101-FPN": (101, "FPN", "ours"),
    "R101-FPN-d2": (101, "FPN", "d2"),
    "VGG16-C4": (16, "C4", "vgg"),
    "R101-C4-fast": (101, "C4", "fast"),
}
# The shipped config (resnet_backbone.model_zoo) of each (depth, design): the paper's COCO rows
# (Table 8: C4 with the settings of configs/Base-Paper-C4.yaml) and the FPN variant.
BENCHMARK_CONFIGS = {
    (50, "C4"): "COCO-Detection/resnet50_c4_coco2014.yaml",
    (101, "C4"): "COCO-Detection/resnet101_c4_coco2014.yaml",
    (50, "FPN"): "COCO-Detection/resnet50_fpn_coco2017.yaml",
    (101, "FPN"): "COCO-Detection/resnet101_fpn_coco2017.yaml",
    (16, "C4"): "COCO-Detection/vgg16_coco2014.yaml",
}
FAST_PATH_CONFIG = "Base-FastPath.yaml"
# Detectron2's built-in builders, which "d2" puts in place of ours (the same parameter names).
BUILTIN_NAMES = {"C4": {"MODEL.BACKBONE.NAME": "build_resnet_backbone",
                        "MODEL.ROI_HEADS.NAME": "Res5ROIHeads"},
                 "FPN": {"MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone"}}
# What is compared in the same interleaved run: (ours, reference). The VGG-16 baseline joins the
# R-101 C4 group, as the paper compares exactly these two.
BENCHMARK_PAIRS = (
    ("R50-C4", "R50-C4-d2"),
    ("R101-C4", "R101-C4-d2"),
    ("R50-FPN", "R50-FPN-d2"),
    ("R101-FPN", "R101-FPN-d2"),
    ("R101-C4-fast", "R101-C4-d2"),
)
VGG_VERSUS = ("VGG16-C4", "R101-C4")
# Models that join the interleaved group of another: VGG-16 and the fast path join R-101 C4.
JOINS = {"VGG16-C4": "R101-C4", "R101-C4-fast": "R101-C4"}


def detection_cfg(name, *, device="cpu", rois_per_image=512, compile=True):
    """Faster R-CNN config of benchmark model `name`: its shipped config (BENCHMARK_CONFIGS, read
    through resnet_backbone.model_zoo: FrozenBN, FREEZE_AT 2, MSRA's stride in the 1x1); "d2"
    with Detectron2's built-in backbone (and Res5ROIHeads in C4) in place of ours, "fast" with
    configs/Base-FastPath.yaml merged on top (its torch.compile left out when `compile` is
    False). `rois_per_image` is MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE (Detectron2's default 512,
    the paper's 128); in the C4 design the head's cost is proportional to it."""
    depth, design, implementation = BENCHMARK_MODELS[name]
    cfg = model_zoo.get_config(BENCHMARK_CONFIGS[depth, design])
    if implementation == "fast":
        cfg.merge_from_file(model_zoo.get_config_file(FAST_PATH_CONFIG))
        cfg.MODEL.FAST_PATH.COMPILE = compile
    if implementation == "d2":
        cfg.merge_from_list([item for pair in BUILTIN_NAMES[design].items() for item in pair])
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = rois_per_image
    return cfg


def synthetic_batch(batch_size, height, width, *, num_classes=80, seed=0):
    """`batch_size` images of uint8 noise, each with four ground-truth boxes, from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(batch_size):
        corners = torch.rand(4, 2, 2, generator=generator) * torch.tensor([width, height])
        boxes = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values + 16], dim=1)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(max=width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(max=height)
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(boxes)
        instances.gt_classes = torch.randint(0, num_classes, (4,), generator=generator)
        image = torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)
        batch.append({"image": image, "height": height, "width": width, "instances": instances})
    return batch


def calibrate_frozen_bn(model, batch):
    """Give every FrozenBN the mean and variance of its input on `batch` (one inference pass,
    layer by layer in forward order), so that a randomly initialised network has normalised
    activations as a pretrained one has. Without it the activations of a random ResNet grow with
    depth and SGD diverges within a few steps, which changes the work of later steps (Detectron2
    stops on non-finite proposals). Returns the number of FrozenBN layers set."""

    def set_statistics(module, inputs):
        x = inputs[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)))

    layers = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    handles = [layer.register_forward_pre_hook(set_statistics) for layer in layers]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(batch)
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return len(layers)


def _minor_faults():
    """Minor page faults of this process so far: each is a fresh page a new tensor touches, so
    their count per step shows allocations, independently of other load on the machine."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


MEMORY_METHODS = {
    "cpu": "CPU: peak RSS of the model's process (getrusage ru_maxrss), Python and the built "
           "model included",
    "cuda": "CUDA: torch.cuda.max_memory_allocated of the model's process, weights included",
}


def _peak_memory(cuda):
    """Peak memory of this process so far, in bytes (see MEMORY_METHODS)."""
    if cuda:
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _training_step(model, batch, optimizer, scaler, storage, amp):
    autocast = torch.autocast("cuda", enabled=amp) if scaler else contextlib.nullcontext()
    with storage, autocast:
        losses = model(batch)
    total = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    if scaler:
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        optimizer.step()
    return losses


def benchmark_worker(connection, spec):
    """Child process of `run_group` for one model: build it, then answer commands.

    `spec`: name, device, batch_size, height, width, rois_per_image, seed, amp, compile, threads,
    save_weights (path or None: write the initial state_dict there), load_weights (path or None:
    load it strictly after the FrozenBN calibration).
    Commands over `connection`: ("step",) -> wall and CPU seconds and minor page faults of one
    training step; ("result",) -> peak memory and first losses, then the process ends.
    """
    try:
        warnings.filterwarnings("ignore", message="torch.meshgrid")  # inside Detectron2 v0.6
        if spec["threads"]:
            torch.set_num_threads(spec["threads"])
        torch.manual_seed(spec["seed"])
        cuda = spec["device"] == "cuda"
        cfg = detection_cfg(spec["name"], device=spec["device"],
                            rois_per_image=spec["rois_per_image"], compile=spec["compile"])
        model = build_model(cfg)
        batch = synthetic_batch(spec["batch_size"], spec["height"], spec["width"],
                                seed=spec["seed"])
        # Every process runs the calibration pass, also those that then load another model's
        # weights, so that all of them start the timed steps from the same allocator history.
        calibrate_frozen_bn(model, batch)
        if spec["load_weights"]:
            model.load_state_dict(read_checkpoint(spec["load_weights"]))
        if spec["save_weights"]:
            torch.save(model.state_dict(), spec["save_weights"])
        apply_fast_path(cfg, model)  # after the weights, as Trainer.build_model + loading does
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        # Detectron2's default solver: SGD, momentum 0.9, weight decay 1e-4, base LR 1e-3.
        optimizer = torch.optim.SGD(trainable, lr=1e-3, momentum=0.9, weight_decay=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=spec["amp"]) if cuda else None
        storage = EventStorage()
        first_losses = None
        torch.manual_seed(spec["seed"])  # the same RoI sampling in every process from here on
        connection.send({"params": parameter_count(model)[""],
                         "trainable_params": sum(p.numel() for p in trainable)})
        while True:
            command = connection.recv()
            if command[0] == "result":
                connection.send({"peak_memory": _peak_memory(cuda), "first_losses": first_losses,
                                 "memory_method": MEMORY_METHODS[spec["device"]]})
                return
            if cuda:
                torch.cuda.synchronize()
            faults = _minor_faults()
            start, start_cpu = time.perf_counter(), time.process_time()
            losses = _training_step(model, batch, optimizer, scaler, storage, spec["amp"])
            if cuda:
                torch.cuda.synchronize()
            connection.send({"seconds": time.perf_counter() - start,
                             "cpu_seconds": time.process_time() - start_cpu,
                             "minor_faults": _minor_faults() - faults})
            first_losses = first_losses or {k: v.item() for k, v in losses.items()}
    except Exception as error:  # reported to the parent, which raises it with the model's name
        connection.send({"error": f"{type(error).__name__}: {error}\n{traceback.format_exc()}"})


def _receive(connection, name):
    reply = connection.recv()
    if "error" in reply:
        raise RuntimeError(f"benchmark of {name} failed in its process:\n{reply['error']}")
    return reply


def summarize_times(seconds):
    """Median, quartiles, min and max of a list of step times."""
    p25, p75 = np.percentile(seconds, [25, 75]).tolist()
    return {"median": statistics.median(seconds), "p25": p25, "p75": p75,
            "min": min(seconds), "max": max(seconds), "all": list(seconds)}


def run_group(names, *, device, iters, warmup, batch_size, height, width, seed=0, amp=False,
              compile=True, threads, rois_per_image, reference_of, workdir, log):
    """Benchmark `names` together: one process each, alive at the same time, taking single
    steps in turn (the order reversed every round). `reference_of` maps a model to the model
    whose initial weights it loads (ours -> Detectron2's). Returns {name: this run's numbers}."""
    context = multiprocessing.get_context("spawn")

    def weights(model):
        return os.path.join(workdir, f"{model}.pth")

    # Models that give weights start first, so that the others can load them.
    start_order = sorted(names, key=lambda n: n in reference_of)
    processes, connections, built = {}, {}, {}
    try:
        for name in start_order:
            parent_end, child_end = context.Pipe()
            spec = dict(
                name=name, device=device, batch_size=batch_size, height=height, width=width,
                seed=seed, amp=amp, compile=compile, threads=threads,
                rois_per_image=rois_per_image,
                save_weights=weights(name) if name in reference_of.values() else None,
                load_weights=weights(reference_of[name]) if name in reference_of else None,
            )
            process = context.Process(target=benchmark_worker, args=(child_end, spec), daemon=True)
            process.start()
            child_end.close()
            processes[name], connections[name] = process, parent_end
            built[name] = _receive(parent_end, name)
            log(f"built {name} ({built[name]['params'] / 1e6:.1f}M parameters)")
        wall = {name: [] for name in names}
        cpu = {name: [] for name in names}
        faults = {name: [] for name in names}
        for round_index in range(warmup + iters):
            round_order = list(names) if round_index % 2 == 0 else list(reversed(names))
            last = {}
            for name in round_order:
                connections[name].send(("step",))
                last[name] = _receive(connections[name], name)
                if round_index >= warmup:
                    wall[name].append(last[name]["seconds"])
                    cpu[name].append(last[name]["cpu_seconds"])
                    faults[name].append(last[name]["minor_faults"])
            kind = "warm-up" if round_index < warmup else "timed"
            log(f"{kind} step {round_index + 1}/{warmup + iters}: " + ", ".join(
                f"{name} {last[name]['seconds']:.3f}s" for name in names))
        runs = {}
        for name in names:
            connections[name].send(("result",))
            reply = _receive(connections[name], name)
            runs[name] = dict(
                params=built[name]["params"], trainable_params=built[name]["trainable_params"],
                seconds=wall[name], cpu_seconds=cpu[name], minor_faults=faults[name], **reply
            )
    finally:
        for name, process in processes.items():
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
            connections[name].close()
    return runs


def merge_runs(name, runs):
    """One model's result over its runs (fresh processes each): step-time statistics over all
    timed steps, medians of the per-run peak memory, the first run's first losses."""
    first = runs[0]
    return dict(
        name=name,
        params=first["params"],
        trainable_params=first["trainable_params"],
        runs=len(runs),
        times=summarize_times([t for run in runs for t in run["seconds"]]),
        cpu_times=summarize_times([t for run in runs for t in run["cpu_seconds"]]),
        minor_faults_per_step=statistics.median(f for run in runs for f in run["minor_faults"]),
        peak_memory=statistics.median(run["peak_memory"] for run in runs),
        peak_memory_per_run=[run["peak_memory"] for run in runs],
        memory_method=first["memory_method"],
        first_losses=first["first_losses"],
        first_losses_same_in_every_run=all(
            run["first_losses"] == first["first_losses"] for run in runs
        ),
    )


def compare(ours, reference):
    """Time and memory ratios reference / ours (>= 1: ours is not slower / not larger), with the
    spread of the per-step ratios (the two took those steps next to each other)."""
    paired = [r / o for r, o in zip(reference["times"]["all"], ours["times"]["all"])]
    losses_ours, losses_reference = ours["first_losses"], reference["first_losses"]
    loss_difference = None
    if losses_ours and losses_reference and set(losses_ours) == set(losses_reference):
        loss_difference = max(abs(losses_ours[k] - losses_reference[k]) for k in losses_ours)
    return {
        "ours": ours["name"],
        "reference": reference["name"],
        "time_ratio": reference["times"]["median"] / ours["times"]["median"],
        "paired_ratio_median": statistics.median(paired),
        "paired_ratio_min": min(paired),
        "paired_ratio_max": max(paired),
        "cpu_time_ratio": reference["cpu_times"]["median"] / ours["cpu_times"]["median"],
        "memory_ratio": reference["peak_memory"] / ours["peak_memory"],
        "first_loss_max_abs_difference": loss_difference,
    }


def benchmark_groups(models):
    """The requested models in the groups that run interleaved: each pair (ours, Detectron2's),
    VGG16-C4 and the fast path with the R-101 C4 pair (JOINS), anything left alone."""
    groups, placed = [], set()
    for ours, reference in BENCHMARK_PAIRS:
        if ours in JOINS:
            continue
        group = [m for m in (ours, reference) if m in models]
        group += [m for m in models if JOINS.get(m) == ours]
        if group:
            groups.append(group)
            placed.update(group)
    return groups + [[m] for m in models if m not in placed]


def run_benchmark(models, *, device, iters, warmup, repeats, batch_size, image_size, amp, seed,
                  threads, rois_per_image, log, compile=True, image_width=None):
    """Run the requested models in their comparison groups, each group `repeats` times with
    fresh processes (the step order reversed every other time); returns results and
    comparisons. Images are `image_size` high and `image_width` wide (default 4/3 of the
    height, rounded to 32)."""
    height = image_size
    width = image_width or int(round(image_size * 4 / 3 / 32)) * 32
    results = {}
    with tempfile.TemporaryDirectory(prefix="resnet_backbone_bench_") as workdir:
        for group in benchmark_groups(models):
            reference_of = {ours: reference for ours, reference in BENCHMARK_PAIRS
                            if ours in group and reference in group}
            runs = {name: [] for name in group}
            for repeat in range(repeats):
                order = group if repeat % 2 == 0 else list(reversed(group))
                log(f"running {' + '.join(order)} on {device}, interleaved "
                    f"(run {repeat + 1}/{repeats})")
                for name, run in run_group(
                    order, device=device, iters=iters, warmup=warmup, batch_size=batch_size,
                    height=height, width=width, seed=seed, amp=amp, compile=compile,
                    threads=threads,
                    rois_per_image=rois_per_image, reference_of=reference_of, workdir=workdir,
                    log=log,
                ).items():
                    runs[name].append(run)
            for name in group:
                results[name] = merge_runs(name, runs[name])
                results[name]["config"] = BENCHMARK_CONFIGS[BENCHMARK_MODELS[name][:2]]
                results[name]["images_per_second"] = batch_size / results[name]["times"]["median"]
    pairs = [pair for pair in BENCHMARK_PAIRS if set(pair) <= set(results)]
    if set(VGG_VERSUS) <= set(results):
        pairs.append(VGG_VERSUS[::-1])  # R-101 C4 as "ours", VGG-16 as the reference
    return {
        "device": device,
        "device_name": (torch.cuda.get_device_name() if device == "cuda"
                        else f"{platform.processor() or 'CPU'}, {os.cpu_count()} cores"),
        "threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "iters": iters,
        "warmup": warmup,
        "repeats": repeats,
        "batch_size": batch_size,
        "image_size": [height, width],
        "amp": amp,
        "fast_path_compile": compile,
        "rois_per_image": rois_per_image,
        "results": results,
        "comparisons": [compare(results[ours], results[reference]) for ours, reference in pairs],
    }


DESCRIPTIONS = {
    ("C4", "ours"): "build_paper_resnet_backbone + PaperRes5ROIHeads",
    ("C4", "d2"): "Detectron2 build_resnet_backbone + Res5ROIHeads",
    ("C4", "vgg"): "VGG-16 conv5_3 + RoIPool + fc6/fc7, StandardROIHeads",
    ("C4", "fast"): "the above + configs/Base-FastPath.yaml",
    ("FPN", "ours"): "build_paper_resnet_fpn_backbone + StandardROIHeads",
    ("FPN", "d2"): "Detectron2 build_resnet_fpn_backbone + StandardROIHeads",
}


def format_benchmark(report):
    """Markdown: what was run, one row per model, one row per comparison."""
    height, width = report["image_size"]
    models = [
        [name, DESCRIPTIONS[BENCHMARK_MODELS[name][1:]], r["images_per_second"],
         r["times"]["median"],
         f"{r['times']['p25']:.3f}–{r['times']['p75']:.3f}",
         f"{r['times']['min']:.3f}–{r['times']['max']:.3f}", r["cpu_times"]["median"],
         r["minor_faults_per_step"] / 1e3, r["peak_memory"] / 2**20]
        for name, r in report["results"].items()
    ]
    comparisons = [
        [f"{c['reference']} / {c['ours']}", c["time_ratio"],
         f"{c['paired_ratio_median']:.3f} [{c['paired_ratio_min']:.3f}, "
         f"{c['paired_ratio_max']:.3f}]", c["cpu_time_ratio"], c["memory_ratio"],
         c["first_loss_max_abs_difference"]]
        for c in report["comparisons"]
    ]
    methods = sorted({r["memory_method"] for r in report["results"].values()})
    return "\n\n".join([
        f"Faster R-CNN training step (forward + backward + SGD step) on {report['device']} "
        f"({report['device_name']}; {report['threads']} torch threads; torch {report['torch']}): "
        f"batch {report['batch_size']} x {height}x{width}, {report['rois_per_image']} RoIs per "
        f"image, the shipped COCO-Detection configs (FrozenBN, FREEZE_AT 2)"
        f"{', AMP fp16' if report['amp'] else ''}; "
        f"{report['warmup']} warm-up + {report['iters']} timed steps per model and run, "
        f"{report['repeats']} run(s) in fresh processes, the models of a group taking steps in "
        "turn.",
        tabulate(models, ["model", "what", "images/s", "step median (s)", "p25–p75 (s)",
                          "min–max (s)", "CPU time median (s)", "page faults / step (k)",
                          "peak memory (MiB)"],
                 tablefmt="github",
                 floatfmt=("", "", ".2f", ".3f", "", "", ".3f", ".0f", ".0f")),
        tabulate(comparisons, ["reference / ours", "time ratio (of medians)",
                               "per-step ratio median [min, max]", "CPU-time ratio",
                               "memory ratio", "first losses, max abs diff"],
                 tablefmt="github", floatfmt=("", ".3f", "", ".3f", ".3f", ".2g"),
                 missingval="—"),
        "Ratios are reference / ours: >= 1 means ours is not slower and uses no more memory. "
        "The reference is Detectron2's built-in ResNet of the same depth and design (loaded with "
        "the same initial weights, hence equal first losses); in the VGG16-C4 row it is VGG-16 "
        "and 'ours' is R-101 C4, the paper's comparison; R101-C4-fast is ours with the fast "
        f"path{'' if report['fast_path_compile'] else ' without torch.compile'}. Peak memory: " + "; ".join(methods) + ".",
    ])
