"""A trained detector on image files: the part tools/predict.py and tools/draw_detections.py
share. A model is named by any `--config-file` form (`runs.load_model_run`: a YAML or lazy config
with its weights, or a training run's OUTPUT_DIR with its final or last checkpoint); a run's
DATASETS.USER are registered, so class names come from the run's own datasets. Prediction runs
the model as Detectron2's DefaultPredictor does, drawing its Visualizer; images are read by
`detection_utils.read_image`, which applies the EXIF orientation and turns grayscale, palette
and RGBA images into three channels, after training's checks of their headers (16-bit and float
pixels refused) and a limit on their size.
"""
import glob
import io
import json
import logging
import os

import detectron2.data.transforms as T
import torch
from detectron2.data import MetadataCatalog
from detectron2.data.catalog import Metadata
from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from .data.validation import ImageProblem, read_image_header
from .files import atomic_write

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Images larger than this are refused from their header (predict's --max-pixels): predicting
# and drawing a 10000x10000 photo took 13 GB (issue 25). PIL's own decompression-bomb limit
# (Image.MAX_IMAGE_PIXELS, about 89 megapixels: a warning, an error at twice that) is higher.
DEFAULT_MAX_PIXELS = 50_000_000


def make_predictor(run):
    """A `Predictor` of the model of `run` (a `runs.load_model_run`), after the checks a
    prediction needs: trained weights that fit the model, and the device it names."""
    if not run.weights:
        raise ValueError(f"{run.weights_key} is empty: an untrained model predicts nothing "
                         f"useful; give a run folder or --opts {run.weights_key}"
                         f"{'=' if run.lazy else ' '}path/to/model_final.pth")
    run.check_weights()  # missing file, other architecture or pixel format
    if run.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"{run.device_key}={run.device!r} but no CUDA device is available; "
                           f"add --opts {run.device_key}{'=' if run.lazy else ' '}cpu")
    model = run.build_model()
    run.checkpointer(model).load(run.weights)  # data only (this package's reader)
    return Predictor(model, run.test_augmentations(), run.input_format)


class Predictor:
    """A detector on one BGR image (H, W, 3 uint8), as Detectron2's DefaultPredictor runs it:
    pixels in the model's order, the test-time resize, boxes in the original image's pixels."""

    def __init__(self, model, augmentations, input_format):
        self.model, self.input_format = model, input_format
        self.augmentations = T.AugmentationList(augmentations)

    def __call__(self, bgr):
        image = bgr[:, :, ::-1] if self.input_format == "RGB" else bgr
        height, width = image.shape[:2]
        resized = T.AugInput(image)
        self.augmentations(resized)
        tensor = torch.as_tensor(resized.image.astype("float32").transpose(2, 0, 1))
        with torch.no_grad():
            return self.model([{"image": tensor, "height": height, "width": width}])[0]


def _json_class_names(json_file):
    with open(json_file, encoding="utf-8") as f:
        categories = json.load(f).get("categories") or []
    return [c["name"] for c in sorted(categories, key=lambda c: c["id"])]


def class_metadata(run):
    """Detectron2 metadata holding the class names of the model's outputs: those of the
    run's first test (else training) dataset that has them. COCO-json datasets get theirs
    from the json's categories, as Detectron2 does when it loads them. Without any, the
    pictures show class numbers (a warning says so)."""
    num_classes = run.num_classes
    for name in (*run.test_datasets, *run.train_datasets):
        if name not in MetadataCatalog:
            continue
        metadata = MetadataCatalog.get(name)
        if "thing_classes" not in metadata.as_dict() and os.path.isfile(
                metadata.get("json_file", "")):
            metadata.thing_classes = _json_class_names(metadata.json_file)
        classes = metadata.get("thing_classes")
        if classes and len(classes) == num_classes:
            return metadata
    logger.warning(f"no test or training dataset of the config names the {num_classes} "
                   "classes of the model; the pictures show class numbers")
    return Metadata()


def read_bgr(path, max_pixels=DEFAULT_MAX_PIXELS):
    """The image at `path` as BGR uint8, upright (EXIF), three channels whatever its mode.
    Its header is checked first as training checks its images (`read_image_header`: readable,
    not 16-bit or float), and an image of more than `max_pixels` pixels is refused before
    anything is decoded; each problem a ValueError naming the file."""
    try:
        width, height = read_image_header(path)
    except ImageProblem as problem:
        raise ValueError(f"{path}: {problem}") from problem
    if width * height > max_pixels:
        raise ValueError(f"{path}: image is {width}x{height} ({width * height / 1e6:.1f} "
                         f"megapixels), more than --max-pixels {max_pixels} allows; it was not "
                         "decoded. Shrink it, or raise --max-pixels if the memory is there "
                         "(a 10000x10000 image takes about 13 GB)")
    try:
        return read_image(path, format="BGR")
    except Exception as error:  # PIL names what is wrong in many types (OSError, SyntaxError)
        raise ValueError(f"{path}: not a readable image ({type(error).__name__}: "
                         f"{error})") from error


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


def write_image(path, rgb):
    """Write an RGB array atomically in the format its extension names (PIL's); returns the
    path."""
    extension = os.path.splitext(path)[1].lower()
    image_format = Image.registered_extensions().get(extension)
    if image_format is None:
        raise ValueError(f"{path}: no image format has the extension {extension!r}")
    encoded = io.BytesIO()
    Image.fromarray(rgb).save(encoded, format=image_format)
    return atomic_write(path, lambda f: f.write(encoded.getvalue()))


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
    """{input: picture path}, as Detectron2's demo names them: `output` is the picture's file
    name for a single input given with an image extension, else a folder receiving each input's
    picture under the input's own file name."""
    if len(inputs) == 1 and output.lower().endswith(IMAGE_EXTENSIONS) and not os.path.isdir(output):
        return {inputs[0]: output}
    names = {}
    for path in inputs:
        names.setdefault(os.path.basename(path), []).append(path)
    clashes = {name: paths for name, paths in names.items() if len(paths) > 1}
    if clashes:
        name, paths = next(iter(clashes.items()))
        raise ValueError(f"inputs {', '.join(paths)} would all be written to {output}/{name} "
                         f"({len(clashes)} such name(s)); predict them to separate --output "
                         "folders")
    return {paths[0]: os.path.join(output, name) for name, paths in names.items()}
