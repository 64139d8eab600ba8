"""What `tools/analyze_model.py` and `tools/benchmark.py` measure, as plain functions.

Counting (paper Table 1): the ImageNet classification network of every depth, built from this
package's backbone plus the classifier the paper counts (global average pool + 1000-way fc for
the ResNets; pool5 + fc6/fc7/fc8 for VGG-16), with parameters and multiply-adds at 224x224 from
fvcore. fvcore's `FlopCountAnalysis` counts one multiply-add as one "flop", the unit of the paper.
The networks are counted with trainable BatchNorm as in ImageNet training (fvcore counts its
elementwise affine too; about 0.5% of the total).

Timing: one Faster R-CNN training step (forward, backward, SGD step) of this package's backbones
next to Detectron2's built-in ResNet of the same depth and design. Every model runs in a process
of its own (`benchmark_worker`) so that its peak memory is its own; `run_benchmark` keeps the
processes of one comparison alive together and lets them take single steps in turn, so drift of
the machine (clock, other load) hits all of them alike. The built-in model's initial weights are
loaded into ours (the parameter names are the same), so both see identical inputs, weights,
proposals and RoI samples, and their first losses must agree. Random weights are made trainable
by `calibrate_frozen_bn` (FrozenBN statistics from the batch), so that SGD does not diverge and
every step does the same work.
"""
import contextlib
import gc
import math
import multiprocessing
import os
import statistics
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn

from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from .config import add_resnet_backbone_config
from .fc_box_head import VGG16BoxHead
from .resnet import DEPTH_TABLE, BasicBlock, make_resnet
from .vgg import VGG16

# ---------------------------------------------------------------------------------------------
# Parameters and multiply-adds (paper Table 1)
# ---------------------------------------------------------------------------------------------

# Paper Table 1, "FLOPs" row (multiply-adds at 224x224), in units of 1e9.
PAPER_TABLE1_GFLOPS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}
# Paper Sec. 4.1 (deeper bottleneck architectures): VGG-16/19 have 15.3e9/19.6e9 multiply-adds.
PAPER_VGG16_GFLOPS = 15.3
NUM_IMAGENET_CLASSES = 1000
# The plain nets the paper built (Table 2, Fig. 4); deeper plain nets are ours only.
PLAIN_NETS_IN_PAPER = (18, 34)


class ResNetClassifier(nn.Module):
    """ResNet (or plain net) res5 output -> global average pool -> 1000-way fc (Table 1)."""

    def __init__(self, depth, *, residual=True, shortcut="B", stride_in_1x1=True,
                 num_classes=NUM_IMAGENET_CLASSES):
        super().__init__()
        self.backbone = make_resnet(
            depth, residual=residual, shortcut=shortcut, stride_in_1x1=stride_in_1x1,
            norm="BN", out_features=["res5"],
        )
        self.fc = nn.Linear(self.backbone.output_shape()["res5"].channels, num_classes)

    def forward(self, x):
        x = self.backbone(x)["res5"]
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class VGG16Classifier(nn.Module):
    """VGG-16's 13 convs, pool5, fc6/fc7 (the detector's `VGG16BoxHead`) and the 1000-way fc8."""

    def __init__(self, num_classes=NUM_IMAGENET_CLASSES):
        super().__init__()
        self.backbone = VGG16(out_features=("conv5",), freeze_at=0)
        self.box_head = VGG16BoxHead(ShapeSpec(channels=512, height=7, width=7))
        self.fc8 = nn.Linear(self.box_head.output_shape.channels, num_classes)

    def forward(self, x):
        x = F.max_pool2d(self.backbone(x)["conv5"], kernel_size=2, stride=2)  # pool5
        return self.fc8(self.box_head(x))


def count_model(model, input_size=224):
    """Parameters and fvcore multiply-adds of `model` on one 3 x input_size x input_size image."""
    model.eval()
    image = torch.zeros(1, 3, input_size, input_size)
    counter = FlopCountAnalysis(model, image)
    counter.unsupported_ops_warnings(False)
    counter.uncalled_modules_warnings(False)
    # The count needs one traced forward pass; one thread runs it fastest on a small CPU (no
    # thread start-up or spinning for a single 224x224 image) and the count does not change.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            flops = counter.total()
    finally:
        torch.set_num_threads(threads)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "flops": flops,
        "flops_by_operator": dict(counter.by_operator()),
    }


def analyze(depths=tuple(sorted(DEPTH_TABLE)), *, input_size=224, stride_in_1x1=True,
            plain=True, vgg=True):
    """One row per network: name, params, multiply-adds and the paper's multiply-adds (or None).

    Table 1's 18/34-layer numbers hold for their plain nets as well (the paper quotes 3.6e9 for
    plain-34; its 18/34-layer ResNets there use parameter-free shortcuts), so plain-18/34 are
    compared with them; the paper gives no count for plain-50/101/152. The paper's numbers are
    for 224x224 only, so other input sizes get no reference.
    """
    rows = []
    variants = [("ResNet", True)] + ([("plain", False)] if plain else [])
    for label, residual in variants:
        for depth in depths:
            torch.manual_seed(0)
            model = ResNetClassifier(depth, residual=residual, stride_in_1x1=stride_in_1x1)
            rows.append(
                dict(
                    name=f"{label}-{depth}", depth=depth, residual=residual,
                    stride_in_1x1=stride_in_1x1, input_size=input_size,
                    paper_gflops=(
                        PAPER_TABLE1_GFLOPS[depth]
                        if input_size == 224 and (residual or depth in PLAIN_NETS_IN_PAPER)
                        else None
                    ),
                    **count_model(model, input_size),
                )
            )
    if vgg:
        rows.append(
            dict(
                name="VGG-16", depth=16, residual=False, stride_in_1x1=None,
                input_size=input_size,
                paper_gflops=PAPER_VGG16_GFLOPS if input_size == 224 else None,
                **count_model(VGG16Classifier(), input_size),
            )
        )
    for row in rows:
        paper = row["paper_gflops"]
        row["relative_difference"] = (
            row["flops"] / (paper * 1e9) - 1 if paper is not None else None
        )
    return rows


def format_analysis(rows):
    """Markdown table of `analyze` rows, plus the paper's VGG-16 vs ResNet-101 remark."""
    lines = [
        "| network | block | params (M) | multiply-adds (1e9) | paper Table 1 (1e9) "
        "| ours vs paper |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["name"] == "VGG-16":
            block = "13 conv + 3 fc"
        else:
            block = "basic" if DEPTH_TABLE[row["depth"]][0] is BasicBlock else "bottleneck"
            if row["residual"]:
                block += ", shortcut B"
        paper = row["paper_gflops"]
        paper_text = "—" if paper is None else f"{paper:.1f}"
        difference = (
            "—" if paper is None
            else f"{row['relative_difference'] + 0.0:+.1%}".replace("-0.0%", "+0.0%")
        )
        lines.append(
            f"| {row['name']} | {block} | {row['params'] / 1e6:.2f} | {row['flops'] / 1e9:.2f} "
            f"| {paper_text} | {difference} |"
        )
    by_name = {row["name"]: row for row in rows}
    if "VGG-16" in by_name and "ResNet-101" in by_name:
        vgg, r101 = by_name["VGG-16"]["flops"], by_name["ResNet-101"]["flops"]
        lines += [
            "",
            f"VGG-16 vs ResNet-101 (the detection baseline and the paper's detector): "
            f"{vgg / 1e9:.2f}e9 vs {r101 / 1e9:.2f}e9 multiply-adds, x{vgg / r101:.2f} "
            f"(paper: 15.3e9 vs 7.6e9, x{PAPER_VGG16_GFLOPS / PAPER_TABLE1_GFLOPS[101]:.2f}); "
            "the paper (Sec. 4.1) notes that even ResNet-152 (11.3e9) costs less than "
            "VGG-16/19 (15.3e9/19.6e9).",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Faster R-CNN training-step benchmark
# ---------------------------------------------------------------------------------------------

# name -> (depth, design, implementation). "ours" uses this package's builders, "d2" Detectron2's
# built-in ResNet (build_resnet_backbone / build_resnet_fpn_backbone) with its own heads.
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
}
# What is compared in the same interleaved run: (ours, reference). The VGG-16 baseline joins the
# R-101 C4 group, as the paper compares exactly these two.
BENCHMARK_PAIRS = (
    ("R50-C4", "R50-C4-d2"),
    ("R101-C4", "R101-C4-d2"),
    ("R50-FPN", "R50-FPN-d2"),
    ("R101-FPN", "R101-FPN-d2"),
)
VGG_VERSUS = ("VGG16-C4", "R101-C4")


def detection_cfg(name, *, device="cpu", num_classes=80, rois_per_image=512):
    """Faster R-CNN config of benchmark model `name`: Detectron2's C4 / FPN defaults (its
    Base-RCNN-C4 / Base-RCNN-FPN settings), FrozenBN, FREEZE_AT 2, MSRA stride in the 1x1.
    `rois_per_image` is MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE (Detectron2's default 512); in the
    C4 design the head's cost is proportional to it."""
    depth, design, implementation = BENCHMARK_MODELS[name]
    cfg = add_resnet_backbone_config(get_cfg())
    cfg.MODEL.DEVICE = device
    cfg.MODEL.MASK_ON = False
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = rois_per_image
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = True
    if implementation != "vgg":
        cfg.MODEL.RESNETS.DEPTH = depth
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64 if DEPTH_TABLE[depth][0] is BasicBlock else 256
    if design == "C4":
        # get_cfg()'s defaults are the C4 design: res4 features, 14x14 RoIs, res5 per RoI.
        if implementation == "vgg":
            cfg.MODEL.BACKBONE.NAME = "build_vgg16_backbone"
            cfg.MODEL.VGG.OUT_FEATURES = ["conv5"]
            cfg.MODEL.VGG.FREEZE_AT = 2
            cfg.MODEL.RPN.IN_FEATURES = ["conv5"]
            cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
            cfg.MODEL.ROI_HEADS.IN_FEATURES = ["conv5"]
            cfg.MODEL.ROI_BOX_HEAD.NAME = "VGG16BoxHead"
            cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
            cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIPool"  # as in the Faster R-CNN paper
        else:
            cfg.MODEL.BACKBONE.NAME = (
                "build_paper_resnet_backbone" if implementation == "ours"
                else "build_resnet_backbone"
            )
            cfg.MODEL.RESNETS.OUT_FEATURES = ["res4"]
            cfg.MODEL.RPN.IN_FEATURES = ["res4"]
            cfg.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
            cfg.MODEL.ROI_HEADS.NAME = (
                "PaperRes5ROIHeads" if implementation == "ours" else "Res5ROIHeads"
            )
    else:  # FPN, as Detectron2's Base-RCNN-FPN.yaml
        cfg.MODEL.BACKBONE.NAME = (
            "build_paper_resnet_fpn_backbone" if implementation == "ours"
            else "build_resnet_fpn_backbone"
        )
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32], [64], [128], [256], [512]]
        cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
        cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3", "p4", "p5", "p6"]
        cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 2000
        cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 1000
        cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 1000
        cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
        cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
        cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3", "p4", "p5"]
        cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
        cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
        cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
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
    """Minor page faults of this process so far: on CPU, each one is a fresh page that a new
    large tensor touches, so their count per step shows allocations that in-place ops avoid;
    unlike the time it does not depend on other load on the machine."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _release_free_memory():
    """Hand memory that glibc's malloc keeps after frees back to the system (malloc_trim), so the
    RSS baseline holds live data only; a no-op where that C library is not there."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _CpuPeakMemory:
    """Peak resident set size of this process since `reset()` minus the RSS at `reset()` (taken
    after freed memory was handed back to the system), in bytes: what the training steps add to
    the built model and its inputs (activations, gradients, optimizer state, what the allocator
    keeps). Linux resets the high-water mark through /proc/self/clear_refs; where that fails,
    getrusage's ru_maxrss (the peak of the whole process life) is used instead and said so.
    `peak()` returns (that difference, the absolute peak)."""

    def reset(self):
        gc.collect()
        _release_free_memory()
        self.baseline = _rss_bytes()
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")
            self.method = (
                "CPU: the process's peak RSS over the steps (VmHWM, reset before the first one) "
                "minus its RSS before the first step"
            )
        except OSError:
            self.method = (
                "CPU: the process's peak RSS (ru_maxrss, whole process life) minus its RSS "
                "before the first step"
            )

    def peak(self):
        if self.method.startswith("VmHWM"):
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = int(line.split()[1]) * 1024
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return peak - self.baseline, peak


class _CudaPeakMemory:
    """torch.cuda.max_memory_allocated since `reset()` minus the memory allocated at `reset()`
    (the model's weights), in bytes. `peak()` returns (that difference, the absolute peak)."""

    method = (
        "CUDA: torch.cuda.max_memory_allocated over the steps minus memory_allocated before the "
        "first step"
    )

    def reset(self):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.baseline = torch.cuda.memory_allocated()

    def peak(self):
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return peak - self.baseline, peak


def benchmark_worker(connection, spec):
    """Child process of `run_benchmark` for one model: build it, then answer commands.

    `spec`: name, device, batch_size, height, width, rois_per_image, seed, amp, threads,
    save_weights (path or None: write the initial state_dict there), load_weights (path or None:
    load it strictly after the FrozenBN calibration).
    Commands (tuples over `connection`): ("step",) -> wall and CPU seconds and minor page faults
    of one training step; ("result",) -> peak memory and first losses, then the process ends.
    """
    try:
        warnings.filterwarnings("ignore", message="torch.meshgrid")  # inside Detectron2 v0.6
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        torch.manual_seed(spec["seed"])
        device = torch.device(spec["device"])
        cfg = detection_cfg(
            spec["name"], device=spec["device"], rois_per_image=spec["rois_per_image"]
        )
        model = build_model(cfg)
        batch = synthetic_batch(
            spec["batch_size"], spec["height"], spec["width"], seed=spec["seed"]
        )
        # Every process runs the calibration pass, also those that then load another model's
        # weights, so that all of them start the timed steps from the same allocator history.
        calibrate_frozen_bn(model, batch)
        if spec.get("load_weights"):
            model.load_state_dict(torch.load(spec["load_weights"], map_location=device))
        if spec.get("save_weights"):
            torch.save(model.state_dict(), spec["save_weights"])
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        # Detectron2's default solver: SGD, momentum 0.9, weight decay 1e-4, base LR 1e-3.
        optimizer = torch.optim.SGD(trainable, lr=1e-3, momentum=0.9, weight_decay=1e-4)
        cuda = device.type == "cuda"
        scaler = _grad_scaler(enabled=spec["amp"]) if cuda else None
        memory = _CudaPeakMemory() if cuda else _CpuPeakMemory()
        storage = EventStorage()
        first_losses = None
        torch.manual_seed(spec["seed"])  # the same RoI sampling in every process from here on
        memory.reset()
        connection.send(
            {"ready": True, "params": sum(p.numel() for p in model.parameters()),
             "trainable_params": sum(p.numel() for p in trainable)}
        )
        while True:
            command = connection.recv()
            if command[0] == "step":
                if cuda:
                    torch.cuda.synchronize()
                faults = _minor_faults()
                start, start_cpu = time.perf_counter(), time.process_time()
                autocast = (
                    torch.autocast("cuda", enabled=spec["amp"]) if cuda
                    else contextlib.nullcontext()
                )
                with storage, autocast:
                    losses = model(batch)
                total = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(total).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    total.backward()
                    optimizer.step()
                if cuda:
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
                cpu_seconds = time.process_time() - start_cpu
                faults = _minor_faults() - faults
                if first_losses is None:
                    first_losses = {k: v.item() for k, v in losses.items()}
                connection.send(
                    {"seconds": seconds, "cpu_seconds": cpu_seconds, "minor_faults": faults}
                )
            elif command[0] == "result":
                peak, peak_absolute = memory.peak()
                connection.send(
                    {"peak_memory": peak, "peak_memory_absolute": peak_absolute,
                     "memory_method": memory.method, "first_losses": first_losses}
                )
                return
            else:
                raise ValueError(f"unknown command {command!r}")
    except Exception as error:  # reported to the parent, which raises it with the model's name
        import traceback

        connection.send({"error": f"{type(error).__name__}: {error}\n{traceback.format_exc()}"})


def _grad_scaler(enabled):
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def _receive(connection, name):
    reply = connection.recv()
    if "error" in reply:
        raise RuntimeError(f"benchmark of {name} failed in its process:\n{reply['error']}")
    return reply


def _quantile(values, q):
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_times(seconds):
    """Median, quartiles, min and max of a list of step times."""
    return {
        "median": statistics.median(seconds),
        "p25": _quantile(seconds, 0.25),
        "p75": _quantile(seconds, 0.75),
        "min": min(seconds),
        "max": max(seconds),
        "all": list(seconds),
    }


def run_group(names, *, device, iters, warmup, batch_size, height, width, seed=0, amp=False,
              threads=None, rois_per_image=512, reference_of=None, workdir=None, log=None):
    """Benchmark `names` together: one process each, alive at the same time, taking single
    steps in turn (the order reversed every round). `reference_of` maps a model to the model
    whose initial weights it loads (ours -> Detectron2's). Returns {name: this run's numbers}."""
    reference_of = reference_of or {}
    context = multiprocessing.get_context("spawn")
    workdir = workdir or tempfile.mkdtemp(prefix="resnet_backbone_bench_")

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
                seed=seed, amp=amp, threads=threads, rois_per_image=rois_per_image,
                save_weights=weights(name) if name in reference_of.values() else None,
                load_weights=weights(reference_of[name]) if name in reference_of else None,
            )
            process = context.Process(target=benchmark_worker, args=(child_end, spec), daemon=True)
            process.start()
            child_end.close()
            processes[name], connections[name] = process, parent_end
            built[name] = _receive(parent_end, name)
            if log:
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
            if log:
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
        peak_memory_absolute=statistics.median(run["peak_memory_absolute"] for run in runs),
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
        "memory_ratio": (
            reference["peak_memory"] / ours["peak_memory"] if ours["peak_memory"] > 0 else None
        ),
        "first_loss_max_abs_difference": loss_difference,
    }


def benchmark_groups(models):
    """The requested models in the groups that run interleaved: each pair (ours, Detectron2's),
    VGG16-C4 with the R-101 C4 pair, anything left alone."""
    groups, placed = [], set()
    for ours, reference in BENCHMARK_PAIRS:
        group = [m for m in (ours, reference) if m in models]
        if ours == VGG_VERSUS[1] and VGG_VERSUS[0] in models:
            group.append(VGG_VERSUS[0])
        if group:
            groups.append(group)
            placed.update(group)
    return groups + [[m] for m in models if m not in placed]


def run_benchmark(models, *, device="cpu", iters=5, warmup=2, repeats=1, batch_size=1,
                  image_size=512, amp=False, seed=0, threads=None, rois_per_image=512, log=None):
    """Run the requested models in their comparison groups, each group `repeats` times with
    fresh processes (the step order reversed every other time); returns results and
    comparisons. Images are `image_size` high and 4/3 of that wide (rounded to 32)."""
    unknown = [m for m in models if m not in BENCHMARK_MODELS]
    if unknown:
        raise ValueError(f"unknown models {unknown}; choose from {list(BENCHMARK_MODELS)}")
    if amp and device != "cuda":
        raise ValueError("AMP needs device cuda")
    height, width = image_size, int(round(image_size * 4 / 3 / 32)) * 32
    if repeats < 1 or iters < 1 or warmup < 0:
        raise ValueError("repeats and iters must be >= 1, warmup >= 0")
    results = {}
    with tempfile.TemporaryDirectory(prefix="resnet_backbone_bench_") as workdir:
        for group in benchmark_groups(models):
            reference_of = {
                ours: reference for ours, reference in BENCHMARK_PAIRS
                if ours in group and reference in group
            }
            runs = {name: [] for name in group}
            for repeat in range(repeats):
                order = group if repeat % 2 == 0 else list(reversed(group))
                if log:
                    log(f"running {' + '.join(order)} on {device}, interleaved "
                        f"(run {repeat + 1}/{repeats})")
                for name, run in run_group(
                    order, device=device, iters=iters, warmup=warmup, batch_size=batch_size,
                    height=height, width=width, seed=seed, amp=amp, threads=threads,
                    rois_per_image=rois_per_image,
                    reference_of=reference_of, workdir=workdir, log=log,
                ).items():
                    runs[name].append(run)
            for name in group:
                results[name] = merge_runs(name, runs[name])
    comparisons = [
        compare(results[ours], results[reference])
        for ours, reference in BENCHMARK_PAIRS
        if ours in results and reference in results
    ]
    vgg, resnet = VGG_VERSUS
    if vgg in results and resnet in results:
        comparisons.append(compare(results[resnet], results[vgg]))
    return {
        "device": device,
        "device_name": _device_name(device),
        "threads": threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "iters": iters,
        "warmup": warmup,
        "repeats": repeats,
        "batch_size": batch_size,
        "image_size": [height, width],
        "amp": amp,
        "rois_per_image": rois_per_image,
        "results": results,
        "comparisons": comparisons,
    }


def _device_name(device):
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"CPU, {os.cpu_count()} cores"


def _describe(name):
    depth, design, implementation = BENCHMARK_MODELS[name]
    if implementation == "vgg":
        return "VGG-16 conv5_3 + RoIPool + fc6/fc7, StandardROIHeads"
    builders = {
        ("C4", "ours"): "build_paper_resnet_backbone + PaperRes5ROIHeads",
        ("C4", "d2"): "Detectron2 build_resnet_backbone + Res5ROIHeads",
        ("FPN", "ours"): "build_paper_resnet_fpn_backbone + StandardROIHeads",
        ("FPN", "d2"): "Detectron2 build_resnet_fpn_backbone + StandardROIHeads",
    }
    return f"R-{depth} {design}: {builders[design, implementation]}"


def format_benchmark(report):
    """Markdown: one row per model, then one row per comparison."""
    mib = 1024 * 1024
    height, width = report["image_size"]
    lines = [
        f"Faster R-CNN training step (forward + backward + SGD step) on {report['device']} "
        f"({report['device_name']}; {report['threads']} torch threads; torch {report['torch']}): "
        f"batch {report['batch_size']} x {height}x{width}, {report['rois_per_image']} RoIs per "
        "image, FrozenBN, FREEZE_AT 2"
        f"{', AMP fp16' if report['amp'] else ''}; {report['warmup']} warm-up + "
        f"{report['iters']} timed steps per model and run, {report['repeats']} run(s) in fresh "
        "processes, the models of a group taking steps in turn.",
        "",
        "| model | what | step median (s) | p25–p75 (s) | min–max (s) | CPU time median (s) "
        "| page faults / step (k) | peak memory added (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    methods = set()
    for name, result in report["results"].items():
        t = result["times"]
        methods.add(result["memory_method"])
        lines.append(
            f"| {name} | {_describe(name)} | {t['median']:.3f} | {t['p25']:.3f}–{t['p75']:.3f} "
            f"| {t['min']:.3f}–{t['max']:.3f} | {result['cpu_times']['median']:.3f} "
            f"| {result['minor_faults_per_step'] / 1e3:.0f} | {result['peak_memory'] / mib:.0f} |"
        )
    lines += [
        "",
        "| reference / ours | time ratio (of medians) | per-step ratio median [min, max] "
        "| CPU-time ratio | memory ratio | first losses, max abs diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in report["comparisons"]:
        diff = c["first_loss_max_abs_difference"]
        memory_ratio = "—" if c["memory_ratio"] is None else f"{c['memory_ratio']:.3f}"
        lines.append(
            f"| {c['reference']} / {c['ours']} | {c['time_ratio']:.3f} "
            f"| {c['paired_ratio_median']:.3f} [{c['paired_ratio_min']:.3f}, "
            f"{c['paired_ratio_max']:.3f}] | {c['cpu_time_ratio']:.3f} | {memory_ratio} "
            f"| {'—' if diff is None else f'{diff:.2g}'} |"
        )
    lines += [
        "",
        "Ratios are reference / ours: >= 1 means ours is not slower and uses no more memory. "
        "The reference is Detectron2's built-in ResNet of the same depth and design (loaded with "
        "the same initial weights, hence equal first losses); in the VGG16-C4 row it is VGG-16 "
        "and 'ours' is R-101 C4, the paper's comparison. Peak memory added: "
        + "; ".join(sorted(methods)) + " (what the training steps add to the built model).",
    ]
    return "\n".join(lines)
