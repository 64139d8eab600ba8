#!/usr/bin/env python
"""Train or evaluate Faster R-CNN with this package's backbones, the Detectron2 way:

    python tools/train_net.py --config-file configs/PascalVOC-Detection/resnet101_c4_voc0712.yaml \
        --num-gpus 8 [--resume] [--eval-only MODEL.WEIGHTS path/to/model_final.pth] [KEY VALUE ...]

Only what differs from Detectron2's DefaultTrainer is written here: the package's config keys,
the evaluator chosen by dataset, and checks that stop a bad config before any training starts.
The module-level import of `resnet_backbone` registers the backbones and datasets in every
worker process that `launch` starts, not only in the parent.
"""
import json
import os

from detectron2.config import get_cfg
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.utils import comm

import resnet_backbone  # noqa: F401  (registers backbones, heads, datasets, imagenet://)
from resnet_backbone import add_resnet_backbone_config
from resnet_backbone.checkpoint import ResNetBackboneCheckpointer, check_weights_match_config
from resnet_backbone.data.evaluation import build_evaluator
from resnet_backbone.report import FINAL_METRICS


class Trainer(DefaultTrainer):
    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder)


def save_final_metrics(cfg, results):
    """Write {dataset: {task: {metric: value}}} to OUTPUT_DIR for tools/report.py, atomically.
    Detectron2 drops the dataset level when there is one test set; it is put back here."""
    if not results or not comm.is_main_process():
        return
    if set(results) - set(cfg.DATASETS.TEST):
        results = {cfg.DATASETS.TEST[0]: results}
    path = os.path.join(cfg.OUTPUT_DIR, FINAL_METRICS)
    with open(path + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(path + ".tmp", path)


def setup(args):
    cfg = add_resnet_backbone_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    if cfg.MODEL.WEIGHTS and not args.resume:
        check_weights_match_config(cfg, cfg.MODEL.WEIGHTS)
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        ResNetBackboneCheckpointer(model, save_dir=cfg.OUTPUT_DIR, cfg=cfg).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        if results and comm.is_main_process():
            verify_results(cfg, results)
        save_final_metrics(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    trainer.train()
    results = getattr(trainer, "_last_eval_results", None)
    save_final_metrics(cfg, results)
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
