#!/usr/bin/env python
"""Export a trained detector as TorchScript or ONNX, checked against the eager model.

The flags are those of Detectron2's tools/deploy/export_model.py:

    python tools/export_model.py --config-file configs/PascalVOC-Detection/vgg16_voc0712.yaml \
        --format onnx --export-method tracing --output exported/vgg16 \
        [--sample-image IMAGE] MODEL.WEIGHTS output/vgg16_voc0712/model_final.pth [KEY VALUE ...]

--format torchscript (model.ts) or onnx (model.onnx); --export-method tracing (both formats) or
scripting (TorchScript only). Every shipped detection config exports either way; --config-file
is a shipped name, a YAML or LazyConfig file (overrides then key=value), or a training run's
OUTPUT_DIR (its config, with its checkpoint as the weights). The model is traced on
--sample-image (default: the first image of the config's first test set); afterwards the exported
file is run on that image and on the image at 3/4 size, and its detections are compared with the
eager model's (onnxruntime runs the ONNX file). The check needs detections to compare: where
the model keeps none on the sample image at its score threshold (an untrained or weakly trained
model), a copy exported with the threshold at 0 is checked too, and the file keeps the model's
threshold; where it detects nothing even then, the export stops (exit 1, nothing written).
--output also gets export.json: the command, the input and outputs of the file, the score
thresholds of the model and of the check, the measured differences.

The exported model takes one float image (3, H, W), 0..255, channels in INPUT.FORMAT order,
already resized to the test size, and returns pred_boxes (N, 4) in that image's pixels, scores
(N,) and pred_classes (N,); see docs/predict_export.md.
"""
import argparse
import logging
import os
import sys
import tempfile
import warnings

# Detectron2 v0.6 scripts functions at import time, which torch >= 2.9 reports as deprecated.
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated")

try:
    import resnet_backbone  # noqa: F401
except ImportError:  # run from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from detectron2.evaluation import inference_on_dataset, print_csv_format  # noqa: E402
from detectron2.modeling.postprocessing import detector_postprocess  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

# Tracing warns at every Python branch on a tensor; what they warn of (a trace valid for this
# input only) is what the comparison at two input sizes checks.
warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)

from resnet_backbone.data.evaluation import build_evaluator  # noqa: E402
from resnet_backbone.export import (  # noqa: E402
    OUTPUT_NAMES,
    ExportMismatchError,
    NothingToCompareError,
    ScriptingNotSupportedError,
    check_onnx_packages,
    compare_detections,
    export_onnx,
    prepare_for_export,
    run_onnx,
    score_threshold,
    script_detector,
    threshold_for_check,
    trace_detector,
)
from resnet_backbone.export.inputs import (  # noqa: E402
    first_test_image,
    read_sample_image,
    rescaled,
    test_resize,
)
from resnet_backbone.export.scripting import ONNX_FROM_SCRIPT  # noqa: E402
from resnet_backbone.files import atomic_write, write_json  # noqa: E402
from resnet_backbone.runs import load_model_run  # noqa: E402

logger = logging.getLogger("resnet_backbone.export")

FILE_NAMES = {"torchscript": "model.ts", "onnx": "model.onnx"}
RECORD = "export.json"
CHECK_SCALES = (1.0, 0.75)  # the sample image, and a second input size


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config-file", required=True, metavar="CONFIG",
                        help="a detection config: a shipped name, a .yaml or .py file, or the "
                        "OUTPUT_DIR of a training run (its config and checkpoint)")
    parser.add_argument("--format", choices=sorted(FILE_NAMES), default="torchscript")
    parser.add_argument("--export-method", choices=["tracing", "scripting"], default="tracing")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="folder for the exported model and export.json")
    parser.add_argument("--sample-image", metavar="IMAGE",
                        help="image to trace and check on (default: the first of DATASETS.TEST[0])")
    parser.add_argument("--run-eval", action="store_true",
                        help="evaluate the exported file on the config's first test set (as "
                        "Detectron2's export_model.py); results printed and in export.json")
    parser.add_argument("opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides: KEY VALUE ...")
    parser.add_argument("--opts", dest="more_opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, Detectron2 style (the same as trailing KEY VALUE)")
    args = parser.parse_args(argv)
    args.opts = list(args.opts) + list(args.more_opts)
    if args.export_method == "scripting" and args.format == "onnx":
        parser.error(ONNX_FROM_SCRIPT)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        parser.error(f"--output {args.output} is a file, not a folder")
    return args


def check_device(run):
    if torch.device(run.device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{run.device_key}={run.device!r} but CUDA is not available here; "
                         f"add {run.device_key}{'=' if run.lazy else ' '}cpu to export on the "
                         "CPU")


def load_detector(run):
    """The run's model with its weights loaded (checked against the model), ready to export."""
    if run.weights:
        run.check_weights()
    model = run.build_model()
    if run.weights:
        run.checkpointer(model).load(run.weights)
    else:
        logger.warning(f"{run.weights_key} is empty: exporting randomly initialised weights")
    return prepare_for_export(model)


def remove_old_record(output):
    """export.json vouches for a checked file: a new export removes a previous one first."""
    record = os.path.join(output, RECORD)
    if os.path.exists(record):
        os.remove(record)


def export(detector, image, args, folder):
    """Write the exported file into `folder`; returns its path and a function running it on
    an image."""
    path = os.path.join(folder, FILE_NAMES[args.format])
    if args.format == "onnx":
        export_onnx(detector, image, path)
        return path, lambda x: run_onnx(path, x)
    if args.export_method == "scripting":
        exported = script_detector(detector)
    else:
        exported = trace_detector(detector, image)
    atomic_write(path, lambda f: torch.jit.save(exported, f))
    loaded = torch.jit.load(path, map_location=image.device)
    return path, lambda x: tuple(loaded(x))


def check(detector, run_exported, image, what):
    """The exported model against the eager one on `image` at each of CHECK_SCALES, both at
    the score threshold the detector has now."""
    threshold = detector.model.roi_heads.box_predictor.test_score_thresh
    results = []
    for scale in CHECK_SCALES:
        x = rescaled(image, scale) if scale != 1.0 else image
        with torch.no_grad():
            expected, actual = detector(x), run_exported(x)
        size = tuple(x.shape[1:])
        result = compare_detections(expected, actual, what=what, size=size)
        results.append({"image_size": list(size), "score_threshold": threshold, **result})
        print(f"{what} vs eager on a {size[0]}x{size[1]} image at score threshold "
              f"{threshold:g}: {result['detections']} detections, boxes within "
              f"{result['max_box_difference_px']:.2g} px, scores within "
              f"{result['max_score_difference']:.2g}")
    return results


def export_and_check(detector, image, args):
    """Export into --output and check the file against the eager model. Where the model's
    score threshold keeps no detection on the sample image, a copy exported with the threshold
    lowered (`threshold_for_check`) is checked first, so that detections are compared; the
    file written keeps the model's threshold. Returns the file's path, the checks, and
    {"model": threshold, "checked_at": threshold}."""
    what = f"{args.format} ({args.export_method})"
    kept, checked_at = threshold_for_check(detector, image)
    checks = []
    if checked_at != kept:
        print(f"the eager model keeps no detection on the sample image at its score threshold "
              f"{kept:g}: the check compares a copy exported with the threshold at "
              f"{checked_at:g}; {FILE_NAMES[args.format]} keeps {kept:g}")
        with score_threshold(detector, checked_at), tempfile.TemporaryDirectory() as scratch:
            _, run_copy = export(detector, image, args, scratch)
            checks += check(detector, run_copy, image, f"{what} copy")
    path, run_exported = export(detector, image, args, args.output)
    try:
        checks += check(detector, run_exported, image, what)
    except ExportMismatchError as error:
        error.path = path
        raise
    return path, run_exported, checks, {"model": kept, "checked_at": checked_at}


class ExportedDetector(torch.nn.Module):
    """The exported file as a Detectron2 model on a test loader's batches: each image (already
    resized by the loader, in the model's pixel order) through the file, boxes rescaled to the
    original image as the eager model's postprocessing does."""

    def __init__(self, run_exported, device):
        super().__init__()
        self.run_exported, self.device = run_exported, device

    def forward(self, batched_inputs):
        outputs = []
        for item in batched_inputs:
            image = item["image"].to(self.device).float()
            boxes, scores, classes = self.run_exported(image)[:3]
            found = Instances(tuple(image.shape[1:]), pred_boxes=Boxes(torch.as_tensor(boxes)),
                              scores=torch.as_tensor(scores),
                              pred_classes=torch.as_tensor(classes).long())
            outputs.append({"instances": detector_postprocess(found, item["height"],
                                                              item["width"])})
        return outputs


def evaluate_exported(run, run_exported, output):
    """Detectron2's `--run-eval`: the exported file on the run's first test set, evaluated by
    the evaluator training uses; results printed as Detectron2 prints them, and returned."""
    if not run.test_datasets:
        raise ValueError(f"--run-eval: {run.test_datasets_key} is empty")
    name = run.test_datasets[0]
    evaluator = build_evaluator(None, name, os.path.join(output, "inference", name))
    results = inference_on_dataset(ExportedDetector(run_exported, run.device),
                                   run.test_loader(name), evaluator)
    print_csv_format(results)
    return results


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.format == "onnx":
            check_onnx_packages()
        run = load_model_run(args.config_file, args.opts)
        check_device(run)
        sample = args.sample_image or first_test_image(run)
        image = read_sample_image(run, sample)
        detector = load_detector(run)
        os.makedirs(args.output, exist_ok=True)
        remove_old_record(args.output)
        path, run_exported, checks, thresholds = export_and_check(detector, image, args)
        evaluation = evaluate_exported(run, run_exported, args.output) if args.run_eval else None
    except ExportMismatchError as error:
        where = f"the exported file is at {error.path}" if error.path else "no file was written"
        sys.exit(f"export_model: {error}; {where}, export.json was not written")
    except NothingToCompareError as error:
        sys.exit(f"export_model: {error}. Nothing was exported, export.json was not written")
    except (ValueError, KeyError, OSError, ImportError, ScriptingNotSupportedError) as error:
        sys.exit(f"export_model: {type(error).__name__}: {error}")
    write_json(os.path.join(args.output, RECORD), {
        "config_file": args.config_file,
        "opts": args.opts,
        "format": args.format,
        "export_method": args.export_method,
        "file": os.path.basename(path),
        "sample_image": sample,
        "input": {"name": "image", "shape": ["3", "height", "width"], "dtype": "float32",
                  "channel_order": run.input_format, "value_range": [0, 255],
                  "resize_before": test_resize(run)},
        "outputs": list(OUTPUT_NAMES),
        "score_threshold": thresholds,
        "checks": checks,
        **({"evaluation": evaluation} if args.run_eval else {}),
    })
    print(f"wrote {path} and export.json")
    return path


if __name__ == "__main__":
    main()
