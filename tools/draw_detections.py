#!/usr/bin/env python
"""PNG pictures of a finished run's detections: ground truth on the left, predictions on the right.

    python tools/draw_detections.py output/demo/resnet18_c4 [--dataset synthetic_shapes_val] \
        [--num-images 4] [--score-threshold 0.5] [--output-dir output/demo/resnet18_c4/pictures]

The run's config.yaml and model_final.pth go through Detectron2's DefaultPredictor; both panels
are drawn by its Visualizer. Datasets are found under $DETECTRON2_DATASETS, as in training.
"""
import argparse
import io
import os

import numpy as np
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from resnet_backbone import add_resnet_backbone_config
from resnet_backbone.files import atomic_write


def load_predictor(run_dir):
    cfg = add_resnet_backbone_config(get_cfg())
    cfg.merge_from_file(os.path.join(run_dir, "config.yaml"))
    cfg.MODEL.WEIGHTS = os.path.join(run_dir, "model_final.pth")
    if not os.path.isfile(cfg.MODEL.WEIGHTS):
        raise FileNotFoundError(f"{cfg.MODEL.WEIGHTS} is missing: is {run_dir} a finished run?")
    return DefaultPredictor(cfg)


def panel(rgb, metadata, scale, title, draw):
    visualizer = Visualizer(rgb, metadata, scale=scale)
    draw(visualizer)
    visualizer.draw_text(title, (4, 2), horizontal_alignment="left", color="w")
    return visualizer.output.get_image()


def draw_detections(run_dir, out_dir, *, dataset=None, num_images=4, score_threshold=0.5,
                    scale=2.0):
    """Write one side-by-side PNG for each of the first `num_images` images of `dataset`
    (default: the run's first test set); returns their paths."""
    predictor = load_predictor(run_dir)
    dataset = dataset or predictor.cfg.DATASETS.TEST[0]
    metadata = MetadataCatalog.get(dataset)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for record in DatasetCatalog.get(dataset)[:num_images]:
        bgr = read_image(record["file_name"], format="BGR")
        instances = predictor(bgr)["instances"].to("cpu")
        instances = instances[instances.scores >= score_threshold]
        rgb = bgr[:, :, ::-1]
        picture = np.concatenate([
            panel(rgb, metadata, scale, "ground truth", lambda v: v.draw_dataset_dict(record)),
            panel(rgb, metadata, scale, f"predictions (score >= {score_threshold})",
                  lambda v: v.draw_instance_predictions(instances)),
        ], axis=1)
        png = io.BytesIO()
        Image.fromarray(picture).save(png, format="png")
        name = os.path.splitext(os.path.basename(record["file_name"]))[0]
        paths.append(atomic_write(os.path.join(out_dir, f"{name}.png"),
                                  lambda f: f.write(png.getvalue())))
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="OUTPUT_DIR of a finished tools/train_net.py run")
    parser.add_argument("--dataset", help="registered dataset name (default: the run's test set)")
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--score-threshold", type=float, default=0.5)
    parser.add_argument("--output-dir", help="where the PNGs go (default: RUN/pictures)")
    args = parser.parse_args(argv)
    paths = draw_detections(args.run, args.output_dir or os.path.join(args.run, "pictures"),
                            dataset=args.dataset, num_images=args.num_images,
                            score_threshold=args.score_threshold)
    print("\n".join(paths))
    return paths


if __name__ == "__main__":
    main()
