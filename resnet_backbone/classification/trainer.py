"""The engine's Trainer for classifiers: the same atomic checkpoints, resumable data stream,
SIGTERM handling and start-up checks, with classification data, evaluator and, at the end of
training, the backbone exported as detection weights (`export.py`)."""
import itertools
import logging
import os

import torch

from detectron2.data import DatasetCatalog, DatasetFromList, MapDataset, MetadataCatalog
from detectron2.data.build import trivial_batch_collator
from detectron2.data.samplers import InferenceSampler
from detectron2.utils import comm

from ..engine.preemption import ShieldedLoader
from ..engine.startup import check_evaluators, check_run_settings
from ..engine.stream import build_resumable_train_loader
from ..engine.trainer import Trainer
from .config import add_classification_config
from .data import EVALUATOR_TYPE, ClassificationMapper
from .evaluation import ClassificationEvaluator
from .export import EXPORTED_NAME, export_classifier

logger = logging.getLogger(__name__)


def classification_dicts(names):
    return list(itertools.chain.from_iterable(DatasetCatalog.get(name) for name in names))


def check_classification_data(cfg, names):
    """Every dataset in `names` is a non-empty classification set whose labels fit
    MODEL.CLASSIFIER.NUM_CLASSES."""
    for name in names:
        if MetadataCatalog.get(name).get("evaluator_type") != EVALUATOR_TYPE:
            raise ValueError(
                f"dataset {name!r} is not a classification dataset (register ImageFolder trees "
                "with resnet_backbone.classification.data.register_image_folder)"
            )
        dicts = DatasetCatalog.get(name)
        if not dicts:
            raise ValueError(f"dataset {name!r} has no images")
        largest = max(d["label"] for d in dicts)
        if largest >= cfg.MODEL.CLASSIFIER.NUM_CLASSES:
            raise ValueError(
                f"dataset {name!r} has label {largest} but MODEL.CLASSIFIER.NUM_CLASSES="
                f"{cfg.MODEL.CLASSIFIER.NUM_CLASSES}; set it to the number of classes"
            )


class ClassificationTrainer(Trainer):
    add_config = staticmethod(add_classification_config)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_resumable_train_loader(
            cfg, ClassificationMapper(cfg, True), classification_dicts(cfg.DATASETS.TRAIN)
        )

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """Detectron2's test loader (every image once over the processes), with
        MODEL.CLASSIFIER.TEST_IMS_PER_BATCH images per batch rather than one."""
        dataset = MapDataset(DatasetFromList(DatasetCatalog.get(dataset_name), copy=False),
                             ClassificationMapper(cfg, False))
        return ShieldedLoader(torch.utils.data.DataLoader(
            dataset, batch_size=cfg.MODEL.CLASSIFIER.TEST_IMS_PER_BATCH,
            sampler=InferenceSampler(len(dataset)), collate_fn=trivial_batch_collator,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
        ))

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return ClassificationEvaluator(dataset_name)

    @classmethod
    def check_startup(cls, cfg, *, world_size, resume=False, eval_only=False, validate_data=True):
        if cfg.MODEL.META_ARCHITECTURE != "ImageClassifier":
            raise ValueError(
                f"MODEL.META_ARCHITECTURE={cfg.MODEL.META_ARCHITECTURE}: tools/pretrain_net.py "
                "trains ImageClassifier configs (detectors: tools/train_net.py)"
            )
        c = cfg.MODEL.CLASSIFIER
        if c.TEST_IMS_PER_BATCH > 1 and c.TEST_MODE != "full":
            raise ValueError(
                f"MODEL.CLASSIFIER.TEST_IMS_PER_BATCH={c.TEST_IMS_PER_BATCH} needs TEST_MODE "
                f"'full' (images of one size), not {c.TEST_MODE!r}; set it to 1"
            )
        if cfg.DATALOADER.ASPECT_RATIO_GROUPING:
            raise ValueError("DATALOADER.ASPECT_RATIO_GROUPING must be False for classification "
                             "(training crops are square)")
        check_run_settings(cfg, world_size=world_size, resume=resume, eval_only=eval_only)
        if validate_data:
            check_classification_data(
                cfg, list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN)))
        check_evaluators(cfg, cls)

    def train(self):
        results = super().train()
        if comm.is_main_process():
            path = os.path.join(self.cfg.OUTPUT_DIR, EXPORTED_NAME)
            if export_classifier(self.model, path,
                                 converted_from=self.checkpointer.get_checkpoint_file()):
                logger.info(f"backbone for detection written to {path} (use it as MODEL.WEIGHTS)")
        return results
