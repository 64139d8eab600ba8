"""PNG pictures of a run's detections: ground truth on the left, predictions on the right,
drawn with Detectron2's Visualizer."""
import os

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import Visualizer
from PIL import Image, ImageDraw


def predict(model, cfg, image):
    """Run `model` (eval mode) on one HxWxC uint8 image in cfg.INPUT.FORMAT order, resized the
    way the test loader resizes."""
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    resized = resize.get_transform(image).apply_image(image)
    tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    height, width = image.shape[:2]
    with torch.no_grad():
        return model([{"image": tensor, "height": height, "width": width}])[0]["instances"]


def _titled(picture, title):
    canvas = Image.fromarray(picture)
    ImageDraw.Draw(canvas).text((4, 2), title, fill=(255, 255, 255))
    return np.asarray(canvas)


def save_detection_pictures(model, cfg, dataset_name, out_dir, *, num_images=4,
                            score_threshold=0.5, scale=2.0):
    """Write `num_images` side-by-side PNGs for the first images of `dataset_name`; returns
    their paths. Each file is written under a temporary name and renamed when complete."""
    os.makedirs(out_dir, exist_ok=True)
    metadata = MetadataCatalog.get(dataset_name)
    was_training = model.training
    model.eval()
    paths = []
    for record in DatasetCatalog.get(dataset_name)[:num_images]:
        image = read_image(record["file_name"], format=cfg.INPUT.FORMAT)
        rgb = image[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else image
        instances = predict(model, cfg, image).to("cpu")
        instances = instances[instances.scores >= score_threshold]
        truth = Visualizer(rgb, metadata, scale=scale).draw_dataset_dict(record).get_image()
        found = Visualizer(rgb, metadata, scale=scale).draw_instance_predictions(instances)
        found = found.get_image()
        picture = np.concatenate(
            [_titled(truth, "ground truth"),
             _titled(found, f"predictions (score >= {score_threshold})")], axis=1
        )
        name = os.path.splitext(os.path.basename(record["file_name"]))[0]
        path = os.path.join(out_dir, f"{name}.png")
        Image.fromarray(picture).save(path + ".tmp.png")
        os.replace(path + ".tmp.png", path)
        paths.append(path)
    model.train(was_training)
    return paths
