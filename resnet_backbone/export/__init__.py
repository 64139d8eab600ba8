"""Faster R-CNN with this package's backbones as a deployable file: TorchScript (traced or
scripted) or ONNX (from the trace), checked against the eager model. `tools/export_model.py` is
the command line; docs/predict_export.md describes the exported model's inputs and outputs.
"""
from .check import (
    ExportMismatchError,
    NothingToCompareError,
    compare_detections,
    score_threshold,
    threshold_for_check,
)
from .detector import OUTPUT_NAMES, ExportableDetector, prepare_for_export
from .onnx_export import check_onnx_packages, export_onnx, run_onnx
from .scripting import ScriptingNotSupportedError, script_detector
from .tracing import trace_detector, tracing_adapter

__all__ = [
    "ExportMismatchError",
    "ExportableDetector",
    "NothingToCompareError",
    "OUTPUT_NAMES",
    "ScriptingNotSupportedError",
    "check_onnx_packages",
    "compare_detections",
    "export_onnx",
    "prepare_for_export",
    "run_onnx",
    "score_threshold",
    "script_detector",
    "threshold_for_check",
    "trace_detector",
    "tracing_adapter",
]
