#!/usr/bin/env python
"""Train or evaluate Faster R-CNN with this package's backbones, the Detectron2 way:

    python tools/train_net.py --config-file configs/PascalVOC-Detection/resnet101_c4_voc0712.yaml \
        --num-gpus 8 [--resume] [--eval-only MODEL.WEIGHTS path/to/model_final.pth] [KEY VALUE ...]
    torchrun --nproc_per_node 8 tools/train_net.py --config-file ... [KEY VALUE ...]

Only what differs from Detectron2's DefaultTrainer is written here; the trainer itself
(atomic checkpoints, resumable data stream, evaluator by dataset) is `resnet_backbone.engine`,
starting the processes `resnet_backbone.distributed`. Bad configs, weights and data stop the run
before the trainer is built and before OUTPUT_DIR is touched. The module-level import of
`resnet_backbone` registers the backbones and datasets in every worker process.
"""
from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import resnet_backbone  # noqa: F401  (registers backbones, heads, datasets, imagenet://)
from resnet_backbone import add_resnet_backbone_config, distributed
from resnet_backbone.checkpoint import ResNetBackboneCheckpointer
from resnet_backbone.data.custom import register_user_datasets
from resnet_backbone.engine import (Trainer, TrainingInterrupted, check_startup,
                                    save_final_metrics)


def load_config(args):
    cfg = add_resnet_backbone_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    try:
        cfg.merge_from_list(args.opts)
    except AssertionError as e:  # yacs asserts on unknown keys given on the command line
        raise KeyError(f"{e} (a command-line override; the known keys are Detectron2's and "
                       "resnet_backbone/config.py's)") from None
    cfg.freeze()
    register_user_datasets(cfg)  # DATASETS.USER, in every process
    return cfg


def setup(args):
    cfg = load_config(args)
    check_startup(cfg, world_size=comm.get_world_size(), resume=args.resume,
                  eval_only=args.eval_only, validate_data=not getattr(args, "data_checked", False))
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="resnet_backbone")
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
    world_size = distributed.world_size_of(args)
    if world_size > 1 and not distributed.under_torchrun():
        # Check once, in the parent, before any worker is spawned.
        check_startup(load_config(args), world_size=world_size, resume=args.resume,
                      eval_only=args.eval_only)
        args.data_checked = True
    try:
        distributed.run(main, args)
    except (TrainingInterrupted, distributed.DistributedJobError) as e:
        distributed.exit_with_message(e)
