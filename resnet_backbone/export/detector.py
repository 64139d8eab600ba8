"""The detector as it is exported: one image tensor in, a fixed tuple of tensors out, so that the
traced, the scripted and the ONNX model share one interface with no Detectron2 classes in it."""
from typing import Tuple

from torch import Tensor, nn

from detectron2.modeling import GeneralizedRCNN

# What every exported model returns, in this order (Detectron2's Instances field names).
OUTPUT_NAMES = ("pred_boxes", "scores", "pred_classes")


class ExportableDetector(nn.Module):
    """`model` (a GeneralizedRCNN in eval mode) on one image: a float (3, H, W) tensor in the
    config's INPUT.FORMAT channel order, 0..255, already resized to the test size. Returns boxes
    (N, 4) as x0, y0, x1, y1 in that image's pixels, scores (N,) and class indices (N,).
    Normalisation and padding happen inside; rescaling the boxes to the original image (what
    Detectron2's `detector_postprocess` does) is left to the caller, as in Detectron2's export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        instances = self.model.inference([{"image": image}], do_postprocess=False)[0]
        return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def as_batchnorm(model):
    """Turn every SyncBatchNorm of `model` into a BatchNorm2d with the same parameters and
    statistics (in place; returns how many). In eval mode the two compute the same thing, but
    SyncBatchNorm's forward asks torch.distributed whether to synchronise, which TorchScript
    cannot compile."""
    sync_norms = [m for m in model.modules() if isinstance(m, nn.SyncBatchNorm)]
    for norm in sync_norms:
        norm.__class__ = nn.BatchNorm2d
    return len(sync_norms)


def prepare_for_export(model):
    """`model` in eval mode with SyncBatchNorm as BatchNorm2d, wrapped as an ExportableDetector.
    Only Detectron2's GeneralizedRCNN (every shipped detection config) is supported."""
    if not isinstance(model, GeneralizedRCNN):
        raise ValueError(
            f"MODEL.META_ARCHITECTURE gives {type(model).__name__}; only GeneralizedRCNN (Faster "
            "R-CNN, every config under configs/PascalVOC-Detection, COCO-Detection and Demo) "
            "can be exported"
        )
    model.eval()
    as_batchnorm(model)
    return ExportableDetector(model).eval()
