#!/usr/bin/env python
"""PNG pictures of a finished run's detections: ground truth on the left, predictions on the right.

    python tools/draw_detections.py output/demo/resnet18_c4/seed0 \
        [--dataset synthetic_shapes_val] [--num-images 4] [--score-threshold 0.5] \
        [--output-dir output/demo/resnet18_c4/seed0/pictures]

The run's config and model_final.pth (or last checkpoint) predict as Detectron2's
DefaultPredictor does; both panels are drawn by its Visualizer (resnet_backbone/inference.py, shared
with tools/predict.py). Datasets are found under $DETECTRON2_DATASETS, as in training, the run's
DATASETS.USER included.
"""
import argparse
import os

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from resnet_backbone import inference, runs


def draw_detections(run_dir, out_dir, *, dataset=None, num_images=4, score_threshold=0.5,
                    scale=2.0):
    """Write one side-by-side PNG for each of the first `num_images` images of `dataset`
    (default: the run's first test set); returns their paths."""
    run = runs.load_model_run(run_dir)  # registers the run's DATASETS.USER
    predictor = inference.make_predictor(run)
    dataset = dataset or run.test_datasets[0]
    records = DatasetCatalog.get(dataset)[:num_images]
    metadata = MetadataCatalog.get(dataset)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for record in records:
        bgr = inference.read_bgr(record["file_name"])
        instances = inference.predictions(predictor, bgr, score_threshold)
        rgb = bgr[:, :, ::-1]
        picture = np.concatenate([
            inference.draw(rgb, metadata, lambda v: v.draw_dataset_dict(record), scale=scale,
                           title="ground truth"),
            inference.draw(rgb, metadata, lambda v: v.draw_instance_predictions(instances),
                           scale=scale, title=f"predictions (score >= {score_threshold})"),
        ], axis=1)
        name = os.path.splitext(os.path.basename(record["file_name"]))[0]
        paths.append(inference.write_image(os.path.join(out_dir, f"{name}.png"), picture))
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
