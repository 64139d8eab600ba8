"""Tracing the exportable detector with Detectron2's TracingAdapter."""
import torch

from detectron2.export import TracingAdapter


def tracing_adapter(detector, image):
    """`detector` (an ExportableDetector) in Detectron2's TracingAdapter, in eval mode (which
    torch.onnx.export restores after exporting). The adapter matters beyond flattening: while it
    runs, `len()` inside Detectron2's box heads is recorded as a tensor operation rather than a
    constant, so the trace stays valid for other image sizes and numbers of detections."""
    return TracingAdapter(detector, image).eval()


def trace_detector(detector, image):
    """`detector` traced by torch.jit.trace on `image`. The trace keeps the Python branches taken
    on `image`, so trace on a real image (a sample of the data), not on noise."""
    with torch.no_grad():
        return torch.jit.trace(tracing_adapter(detector, image), (image,))
