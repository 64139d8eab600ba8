"""ONNX files from the traced detector, and running them in onnxruntime."""
import importlib
import inspect

import torch

from ..files import atomic_write
from .detector import OUTPUT_NAMES
from .tracing import tracing_adapter

# ROIAlign with aligned=True (Detectron2's ROIAlignV2) exists in ONNX from opset 16 on.
ONNX_OPSET = 17


def export_onnx(detector, image, path):
    """Write `detector` (an ExportableDetector) as ONNX to `path`, traced on `image` (see
    `trace_detector`), and validate the file with onnx's checker. Height and width of the input
    and the number of detections stay dynamic."""
    options = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        options["dynamo"] = False  # torch >= 2.9 defaults to the torch.export-based exporter
    dynamic_axes = {"image": {1: "height", 2: "width"}}
    dynamic_axes.update({name: {0: "detections"} for name in OUTPUT_NAMES})

    def write(f):
        with torch.no_grad():
            torch.onnx.export(tracing_adapter(detector, image), (image,), f, input_names=["image"],
                              output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic_axes,
                              opset_version=ONNX_OPSET, **options)

    atomic_write(path, write)
    _import("onnx").checker.check_model(str(path))


def run_onnx(path, image):
    """The outputs (OUTPUT_NAMES order, as tensors) of the ONNX model at `path` on `image`,
    run by onnxruntime on the CPU."""
    session = _import("onnxruntime").InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(list(OUTPUT_NAMES), {"image": image.cpu().numpy()})
    return tuple(torch.from_numpy(output) for output in outputs)


def check_onnx_packages():
    """Fail before any work when onnx or onnxruntime is missing: the `export` extra
    (requirements/export.txt, which `make` installs) brings both; nothing else needs them."""
    for name in ("onnx", "onnxruntime"):
        _import(name)


def _import(name):
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(f"--format onnx needs the package {name}, which the `export` extra "
                          "installs: pip install 'resnet_backbone[export]' (or pip install onnx "
                          "onnxruntime)") from error
