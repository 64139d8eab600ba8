"""Scripting the exportable detector with Detectron2's `scripting_with_instances`."""
from torch import Tensor

from detectron2.export import scripting_with_instances
from detectron2.structures import Boxes

# Every field the Instances of a Faster R-CNN hold at inference: the RPN's proposals and the box
# head's detections. `scripting_with_instances` compiles Instances as a class with exactly these.
INSTANCE_FIELDS = {
    "proposal_boxes": Boxes,
    "objectness_logits": Tensor,
    "pred_boxes": Boxes,
    "scores": Tensor,
    "pred_classes": Tensor,
}


class ScriptingNotSupportedError(RuntimeError):
    """The detector, or the asked-for format, cannot be had by scripting."""


# Why --export-method scripting gives TorchScript only; seen with torch 2.14 and Detectron2 v0.6.
ONNX_FROM_SCRIPT = (
    "ONNX needs --export-method tracing: torch.onnx's TorchScript-based exporter cannot convert a "
    "scripted detector, whose module attributes include TorchScript classes compiled from "
    "Detectron2 (its first complaint is 'Unknown type __torch__.detectron2.modeling."
    "box_regression.Box2BoxTransform ... encountered in handling model params'). Detectron2's "
    "tools/deploy/export_model.py, too, scripts to TorchScript only"
)


def script_detector(detector):
    """`detector` (an ExportableDetector in eval mode) compiled by torch.jit.script. Importing
    detectron2.export has already given Detectron2's ResNet and FPN their scriptable forms; this
    package's VGG16 brings its own (`VGG16.__prepare_scriptable__`)."""
    try:
        return scripting_with_instances(detector, INSTANCE_FIELDS)
    except Exception as error:  # TorchScript reports every compilation failure as RuntimeError
        raise ScriptingNotSupportedError(
            f"torch.jit.script could not compile this detector ({type(error).__name__}: "
            f"{str(error).strip().splitlines()[0]} ...); --export-method tracing works for "
            "every shipped config. Full compiler message:\n" + str(error)
        ) from error
