"""Whether an exported detector gives the eager model's detections.

Detections are compared as sets, not row by row: detections with equal scores (common with
untrained weights, where many RoIs get the same uniform class distribution) come out of the
final sort in an order that may differ between eager PyTorch, TorchScript and onnxruntime.
A check needs detections to compare: `threshold_for_check` lowers the score threshold for it
where the model's own keeps none on the image, and refuses an image without any.
"""
import contextlib

import torch

# Defaults of `compare_detections`: float rounding, far below anything visible. Measured with
# seeded random weights (tests/test_export.py): TorchScript matches to the last bit,
# onnxruntime within 3e-5 px and 1e-7 in score.
BOX_TOLERANCE_PX = 1e-2
SCORE_TOLERANCE = 1e-4


class ExportMismatchError(AssertionError):
    """An exported model's detections differ from the eager model's."""

    path = None  # the file that was checked, where the caller keeps it


class NothingToCompareError(ValueError):
    """The eager model detects nothing on the check's image, even with no score threshold: a
    comparison of its detections would compare nothing."""


# The score threshold a check runs at when the model's own keeps no detection on the image.
LOWERED_SCORE_THRESHOLD = 0.0


@contextlib.contextmanager
def score_threshold(detector, value):
    """`detector` (an ExportableDetector) with its box predictor's test_score_thresh (Detectron2's
    FastRCNNOutputLayers: MODEL.ROI_HEADS.SCORE_THRESH_TEST) set to `value` inside the block;
    yields the threshold it had."""
    predictor = detector.model.roi_heads.box_predictor
    kept = predictor.test_score_thresh
    predictor.test_score_thresh = value
    try:
        yield kept
    finally:
        predictor.test_score_thresh = kept


def threshold_for_check(detector, image):
    """(the model's score threshold, the one a check on `image` runs at): its own when the eager
    model keeps some detection on `image` at it, else LOWERED_SCORE_THRESHOLD; raises
    NothingToCompareError when it detects nothing even then."""
    with torch.no_grad():
        kept = detector.model.roi_heads.box_predictor.test_score_thresh
        if len(detector(image)[0]):
            return kept, kept
        with score_threshold(detector, LOWERED_SCORE_THRESHOLD):
            if len(detector(image)[0]):
                return kept, LOWERED_SCORE_THRESHOLD
    raise NothingToCompareError(
        f"the eager model detects nothing on the {image.shape[1]}x{image.shape[2]} sample image, "
        f"at its score threshold {kept:g} nor at {LOWERED_SCORE_THRESHOLD:g}, so the check "
        "would compare nothing (an untrained model, or weights that do not fit); pass a "
        "--sample-image the model detects objects in"
    )


def compare_detections(expected, actual, *, what="exported model", size=None,
                       box_tolerance=BOX_TOLERANCE_PX, score_tolerance=SCORE_TOLERANCE):
    """Compare two output tuples (pred_boxes, scores, pred_classes, as OUTPUT_NAMES). Every
    detection of either is matched to the nearest one of the same class in the other. Returns
    {"detections": N, "max_box_difference_px": .., "max_score_difference": ..} over the matches;
    raises ExportMismatchError when the number of detections of some class differs or a match
    is off by more than a tolerance."""
    where = f"{what} on a {size[0]}x{size[1]} image" if size else what
    boxes, scores, classes = (t.detach().cpu() for t in expected)
    got_boxes, got_scores, got_classes = (t.detach().cpu() for t in actual)
    if len(got_boxes) != len(boxes):
        raise ExportMismatchError(f"{where}: {len(got_boxes)} detections, the eager model "
                                  f"{len(boxes)}")
    if not torch.equal(got_classes.long().sort().values, classes.long().sort().values):
        raise ExportMismatchError(f"{where}: detections of other classes than the eager "
                                  "model's")
    box_difference, score_difference = 0.0, 0.0
    if len(boxes):
        box_distance = (boxes[:, None].float() - got_boxes[None].float()).abs().amax(dim=2)
        score_distance = (scores[:, None].float() - got_scores[None].float()).abs()
        distance = torch.maximum(box_distance / box_tolerance, score_distance / score_tolerance)
        distance[classes[:, None].long() != got_classes[None].long()] = float("inf")
        for dim in (0, 1):  # nearest actual for each expected detection, and the reverse
            nearest = distance.argmin(dim=dim, keepdim=True)
            box_difference = max(box_difference, float(box_distance.gather(dim, nearest).max()))
            score_difference = max(score_difference,
                                   float(score_distance.gather(dim, nearest).max()))
    result = {"detections": len(boxes), "max_box_difference_px": box_difference,
              "max_score_difference": score_difference}
    if box_difference > box_tolerance:
        raise ExportMismatchError(f"{where}: boxes differ from the eager model's by up to "
                                  f"{box_difference:.3g} px (tolerance {box_tolerance:g})")
    if score_difference > score_tolerance:
        raise ExportMismatchError(f"{where}: scores differ from the eager model's by up to "
                                  f"{score_difference:.3g} (tolerance {score_tolerance:g})")
    return result
