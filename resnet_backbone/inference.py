"""A trained detector on image files: the part tools/predict.py and tools/draw_detections.py
share. A model is named by a config file (with MODEL.WEIGHTS) or by a training run's OUTPUT_DIR
(its config.yaml and its final or last checkpoint); the run's DATASETS.USER are registered, so
class names come from the run's own datasets. Prediction is Detectron2's DefaultPredictor,
drawing its Visualizer; images are read by `detection_utils.read_image`, which applies the EXIF
orientation and turns grayscale, palette and RGBA images into three channels.
"""
import glob
import io
import json
import logging
import os
from argparse import Namespace

import torch
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import Visualizer
from PIL import Image, UnidentifiedImageError

from .checkpoint import ResNetBackboneCheckpointer, check_weights_match_config
from .fast_path import apply_fast_path
from .files import atomic_write
from .launch import load_config

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def run_checkpoint(run_dir):
    """The weights a training run leaves: model_final.pth, else the file `last_checkpoint`
    names (a run still going or stopped early)."""
    final = os.path.join(run_dir, "model_final.pth")
    if os.path.isfile(final):
        return final
    pointer = os.path.join(run_dir, "last_checkpoint")
    if os.path.isfile(pointer):
        with open(pointer, encoding="utf-8") as f:
            last = os.path.join(run_dir, f.read().strip())
        if os.path.isfile(last):
            return last
        raise FileNotFoundError(f"{pointer} names {last}, which does not exist")
    raise FileNotFoundError(f"{run_dir} holds neither model_final.pth nor last_checkpoint: "
                            "is it the OUTPUT_DIR of a tools/train_net.py run?")


def load_model_config(config, opts=()):
    """The frozen config of `config`: a YAML file, or a run folder (its config.yaml, with
    MODEL.WEIGHTS its checkpoint); `opts` (KEY VALUE ...) go on top. Registers DATASETS.USER."""
    if os.path.isdir(config):
        config_file = os.path.join(config, "config.yaml")
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"{config} has no config.yaml: is it the OUTPUT_DIR of a "
                                    "tools/train_net.py run?")
        opts = ["MODEL.WEIGHTS", run_checkpoint(config), *opts]
    elif os.path.isfile(config):
        config_file = config
    else:
        raise FileNotFoundError(f"--config-file {config}: no such file or run folder")
    return load_config(Namespace(config_file=config_file, opts=list(opts)))


def make_predictor(cfg):
    """Detectron2's DefaultPredictor for `cfg`, after the checks a prediction needs: trained
    weights that fit the config, and the device it names. The config's MODEL.FAST_PATH
    switches apply as in training and `--eval-only` (they keep parameter names, so the weights
    load either way)."""
    if not cfg.MODEL.WEIGHTS:
        raise ValueError("MODEL.WEIGHTS is empty: an untrained model predicts nothing useful; "
                         "give a run folder or --opts MODEL.WEIGHTS path/to/model_final.pth")
    check_weights_match_config(cfg)  # missing file, other architecture or pixel format
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"MODEL.DEVICE={cfg.MODEL.DEVICE!r} but no CUDA device is available; "
                           "add --opts MODEL.DEVICE cpu")
    weights, cfg = cfg.MODEL.WEIGHTS, cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = ""  # Detectron2's reader would unpickle it: this package's reads data only
    predictor = DefaultPredictor(cfg)
    apply_fast_path(cfg, predictor.model)
    ResNetBackboneCheckpointer(predictor.model, cfg=cfg).load(weights)
    return predictor


def _json_class_names(json_file):
    with open(json_file, encoding="utf-8") as f:
        categories = json.load(f).get("categories") or []
    return [c["name"] for c in sorted(categories, key=lambda c: c["id"])]


def class_metadata(cfg):
    """Detectron2 metadata holding the class names of the model's outputs: those of the
    config's first test (else training) dataset that has them. COCO-json datasets get theirs
    from the json's categories, as Detectron2 does when it loads them. Without any, the
    pictures show class numbers (a warning says so)."""
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    for name in (*cfg.DATASETS.TEST, *cfg.DATASETS.TRAIN):
        if name not in MetadataCatalog:
            continue
        metadata = MetadataCatalog.get(name)
        if "thing_classes" not in metadata.as_dict() and os.path.isfile(
                metadata.get("json_file", "")):
            metadata.thing_classes = _json_class_names(metadata.json_file)
        classes = metadata.get("thing_classes")
        if classes and len(classes) == num_classes:
            return metadata
    logger.warning(f"no dataset of DATASETS.TEST/TRAIN names the {num_classes} classes "
                   "(MODEL.ROI_HEADS.NUM_CLASSES); the pictures show class numbers")
    return Metadata()


def read_bgr(path):
    """The image at `path` as BGR uint8, upright (EXIF), three channels whatever its mode."""
    try:
        return read_image(path, format="BGR")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: not a readable image ({error})") from error


def predictions(predictor, bgr, score_threshold):
    """The detections of `predictor` on one BGR image, on the CPU, scoring >= the threshold."""
    instances = predictor(bgr)["instances"].to("cpu")
    return instances[instances.scores >= score_threshold]


def draw(rgb, metadata, paint, *, scale=1.0, title=None):
    """One Visualizer picture of `rgb`: `paint(visualizer)` draws onto it; an RGB array."""
    visualizer = Visualizer(rgb, metadata, scale=scale)
    paint(visualizer)
    if title:
        visualizer.draw_text(title, (4, 2), horizontal_alignment="left", color="w")
    return visualizer.output.get_image()


def write_png(path, rgb):
    """Write an RGB array as a PNG, atomically; returns the path."""
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="png")
    return atomic_write(path, lambda f: f.write(png.getvalue()))


def expand_inputs(inputs):
    """Image paths of `inputs` (files, folders, glob patterns), in order, each once. A folder
    gives its images (by extension, not recursive); anything that gives none is an error."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, name) for name in os.listdir(item)
                           if name.lower().endswith(IMAGE_EXTENSIONS))
        elif glob.has_magic(item):
            found = sorted(path for path in glob.glob(item, recursive=True)
                           if os.path.isfile(path))
        else:
            found = [item] if os.path.isfile(item) else []
            if not found:
                raise FileNotFoundError(f"--input {item}: no such file or folder")
        if not found:
            raise FileNotFoundError(f"--input {item}: no image files there")
        paths += [path for path in found if path not in paths]
    return paths


def output_paths(inputs, output):
    """{input: picture path}: `output` is the picture's file name for a single input given with
    an image extension, else a folder receiving <input name>.png for each input."""
    if len(inputs) == 1 and output.lower().endswith(IMAGE_EXTENSIONS) and not os.path.isdir(output):
        return {inputs[0]: output}
    names = {}
    for path in inputs:
        names.setdefault(os.path.splitext(os.path.basename(path))[0] + ".png", []).append(path)
    clashes = {name: paths for name, paths in names.items() if len(paths) > 1}
    if clashes:
        name, paths = next(iter(clashes.items()))
        raise ValueError(f"inputs {', '.join(paths)} would all be written to {output}/{name} "
                         f"({len(clashes)} such name(s)); predict them to separate --output "
                         "folders")
    return {paths[0]: os.path.join(output, name) for name, paths in names.items()}
