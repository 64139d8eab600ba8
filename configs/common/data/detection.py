"""`dataloader` of a detection dataset as Detectron2's configs/common/data/coco.py writes it, with
the YAML configs' input settings: train/test splits, shorter side resized to `min_size` (one
drawn per image in training) with the longer side at most `max_size`, horizontal flips in
training, the pixel format of `model.input_format`, and the project's evaluator
(resnet_backbone.build_evaluator: the paper's metric for the test split)."""
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import (
    DatasetMapper,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from omegaconf import OmegaConf

from resnet_backbone import build_evaluator


def detection_data(*, train, test, min_size, max_size, total_batch_size=16, num_workers=4):
    """`train`: the training split names; `test`: the test split's name."""
    dataloader = OmegaConf.create()
    dataloader.train = L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names=list(train)),
        mapper=L(DatasetMapper)(
            is_train=True,
            augmentations=[
                L(T.ResizeShortestEdge)(
                    short_edge_length=list(min_size), max_size=max_size, sample_style="choice"
                ),
                L(T.RandomFlip)(horizontal=True),
            ],
            image_format="${model.input_format}",
        ),
        total_batch_size=total_batch_size,
        num_workers=num_workers,
    )
    dataloader.test = L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names=test, filter_empty=False),
        mapper=L(DatasetMapper)(
            is_train=False,
            augmentations=[L(T.ResizeShortestEdge)(short_edge_length=min_size[0],
                                                   max_size=max_size)],
            image_format="${...train.mapper.image_format}",
        ),
        num_workers=num_workers,
    )
    dataloader.evaluator = L(build_evaluator)(
        cfg=None,
        dataset_name="${..test.dataset.names}",
        output_folder="${train.output_dir}/inference/${..test.dataset.names}",
    )
    return dataloader
