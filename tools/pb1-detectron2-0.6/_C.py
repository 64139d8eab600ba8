# Part of resnet_backbone, not of upstream detectron2: tools/install_detectron2.py copies this
# file into the adapted pb1-detectron2 0.6 as detectron2/_C.py.
"""Pure-Python stand-in for detectron2's compiled extension ``detectron2._C``.

This detectron2 is upstream v0.6 installed from the PyPI source archive pb1-detectron2==0.6,
which ships no C++/CUDA sources, so it has no compiled ops. Faster R-CNN with axis-aligned boxes
needs none of them: torchvision provides RoIAlign and NMS on CPU and CUDA, and COCOEvaluator
evaluates with pycocotools when given use_fast_impl=False. Everything else here raises a
RuntimeError naming the op, what needs it and how to get a full build. Nothing fails at import.

The installer appends one line to the copy it installs, ``__adapted_by__ = "<fingerprint>"``
(see fingerprint() in tools/install_detectron2.py): its set-up check reads it to tell its own
adapted install, and whether it is current, from a detectron2 built from source.
"""

_NOT_BUILT = (
    "not built: detectron2 installed by resnet_backbone's tools/install_detectron2.py "
    "from pb1-detectron2==0.6, without compiled ops"
)

_FULL_BUILD = (
    "For the compiled ops, build detectron2 from source with a C++ compiler (and CUDA for the "
    "GPU kernels) in this environment: pip uninstall -y pb1-detectron2 && "
    "pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git' "
    "(see https://detectron2.readthedocs.io/en/latest/tutorials/install.html); "
    "tools/install_detectron2.py leaves such a build untouched."
)

_ROTATED = (
    "rotated boxes (RotatedBoxes.pairwise_iou, rotated NMS, ROIAlignRotated: RRPN and "
    "RROIHeads)",
    "",
)
_DEFORM = (
    "deformable convolution (DeformConv, ModulatedDeformConv, "
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE)",
    "",
)
_COCO_CPP = (
    "the C++ COCO evaluator (COCOEvaluator's default use_fast_impl=True)",
    " Evaluate with pycocotools instead: COCOEvaluator(dataset_name, ..., use_fast_impl=False).",
)

_NEEDED_BY = {
    "box_iou_rotated": _ROTATED,
    "nms_rotated": _ROTATED,
    "roi_align_rotated_forward": _ROTATED,
    "roi_align_rotated_backward": _ROTATED,
    "deform_conv_forward": _DEFORM,
    "deform_conv_backward_input": _DEFORM,
    "deform_conv_backward_filter": _DEFORM,
    "modulated_deform_conv_forward": _DEFORM,
    "modulated_deform_conv_backward": _DEFORM,
    "COCOevalAccumulate": _COCO_CPP,
    "COCOevalEvaluateImages": _COCO_CPP,
    "InstanceAnnotation": _COCO_CPP,
    "ImageEvaluation": _COCO_CPP,
}


def get_compiler_version():
    return _NOT_BUILT


def get_cuda_version():
    return _NOT_BUILT


def has_cuda():
    # collect_env.py runs cuobjdump on _C.__file__ only when this is true.
    return False


def _missing_op(name):
    what, instead = _NEEDED_BY.get(name, ("a feature that needs detectron2's compiled ops", ""))

    def op(*args, **kwargs):
        raise RuntimeError(
            f"detectron2._C.{name} is not available: this detectron2 has no compiled ops "
            f"(pb1-detectron2==0.6 adapted by resnet_backbone's tools/install_detectron2.py). "
            f"It is needed for {what}.{instead} {_FULL_BUILD}"
        )

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Unavailable compiled op {name}: calling it raises RuntimeError."
    return op


for _name in _NEEDED_BY:
    globals()[_name] = _missing_op(_name)


def __getattr__(name):
    # Any other op of the compiled extension: a callable that raises when called.
    if name.startswith("__"):
        raise AttributeError(name)
    return _missing_op(name)


# v0.6 calls rotated NMS as torch.ops.detectron2.nms_rotated, which the compiled extension
# registers; register a stand-in op with the same schema that raises the same message.
try:
    import torch as _torch

    _LIB = _torch.library.Library("detectron2", "FRAGMENT")
    _LIB.define("nms_rotated(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")

    def _nms_rotated(dets, scores, iou_threshold):
        return _missing_op("nms_rotated")(dets, scores, iou_threshold)

    _LIB.impl("nms_rotated", _nms_rotated, "CompositeExplicitAutograd")
except Exception:  # never fail at import; calling the op then fails in torch.ops instead
    pass
