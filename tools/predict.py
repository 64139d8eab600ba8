#!/usr/bin/env python
"""Detections of a trained detector drawn on your images, with the flags of Detectron2's
demo/demo.py:

    python tools/predict.py --config-file output/r101_voc0712 --input photos/ --output predicted/
    python tools/predict.py --config-file configs/PascalVOC-Detection/resnet101_c4_voc0712.yaml \
        --input "photos/*.jpg" street.png --output predicted/ --confidence-threshold 0.7 \
        --opts MODEL.WEIGHTS output/r101_voc0712/model_final.pth MODEL.DEVICE cpu

`--config-file` is a shipped config's name, a YAML or LazyConfig file, or the OUTPUT_DIR of a
training run (the config it ran with, and its model_final.pth or last checkpoint); `--opts` are
KEY VALUE pairs for YAML configs and key=value for LazyConfigs. Class names come from the
config's datasets, its DATASETS.USER included. `--input` takes files, folders and glob
patterns; each image (grayscale or colour, EXIF orientation applied) gives one picture under
its own file name in the `--output` folder (default predictions/), or the `--output` file itself
for a single input, and Detectron2's line "PATH: detected N instances in T s". Images
are checked as training checks them (16-bit and float pixels are refused) and images over
`--max-pixels` are refused from their header; a file that cannot be used is skipped, the others
are predicted, and the run ends by listing the skipped files with a non-zero exit code.
"""
import argparse
import collections
import os
import sys
import time

from PIL import Image

from resnet_backbone import inference, runs


# Where the pictures go without --output (Detectron2's demo shows them in a window instead).
DEFAULT_OUTPUT = "predictions"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="CONFIG",
                        help="a shipped config name, a .yaml or .py config file, or the "
                        "OUTPUT_DIR of a training run")
    parser.add_argument("--input", nargs="+", required=True,
                        help="image files, folders or glob patterns (quote them)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help="folder for the pictures, each under its input's file name (a file "
                        f"name for a single input); default {DEFAULT_OUTPUT}/")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="draw detections scoring at least this (default 0.5)")
    parser.add_argument("--max-pixels", type=int, default=inference.DEFAULT_MAX_PIXELS,
                        help="refuse larger images from their header, before decoding them "
                        f"(default {inference.DEFAULT_MAX_PIXELS:,}; PIL's own decompression-"
                        "bomb limit is raised to it when it is higher)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="KEY VALUE config overrides, e.g. MODEL.DEVICE cpu")
    return parser.parse_args(argv)


def describe(path, instances, seconds, class_names):
    """Detectron2's demo line ("PATH: detected N instances in T s") and the classes found."""
    counts = collections.Counter(
        class_names[c] if class_names else str(c) for c in instances.pred_classes.tolist())
    listed = ", ".join(f"{name} {count}" for name, count in counts.most_common())
    return (f"{path}: detected {len(instances)} instances in {seconds:.2f}s"
            + (f" ({listed})" if listed else ""))


def main(argv=None):
    args = parse_args(argv)
    run = runs.load_model_run(args.config_file, args.opts)
    outputs = inference.output_paths(inference.expand_inputs(args.input), args.output)
    predictor = inference.make_predictor(run)
    metadata = inference.class_metadata(run)
    # PIL warns above Image.MAX_IMAGE_PIXELS and refuses twice that when it opens a file.
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, args.max_pixels)
    refused = []
    for path, picture in outputs.items():
        try:
            bgr = inference.read_bgr(path, args.max_pixels)
        except ValueError as error:  # names the file; the other images are still predicted
            print(f"skipped {error}", file=sys.stderr)
            refused.append(str(error))
            continue
        start = time.perf_counter()
        instances = inference.predictions(predictor, bgr, args.confidence_threshold)
        seconds = time.perf_counter() - start
        rgb = inference.draw(bgr[:, :, ::-1], metadata,
                             lambda v: v.draw_instance_predictions(instances))
        os.makedirs(os.path.dirname(picture) or ".", exist_ok=True)
        inference.write_image(picture, rgb)
        print(f"{describe(path, instances, seconds, metadata.get('thing_classes'))} -> {picture}")
    if refused:
        sys.exit(f"predict: {len(refused)} of {len(outputs)} images were not predicted:\n  "
                 + "\n  ".join(refused))
    return outputs


if __name__ == "__main__":
    main(sys.argv[1:])
