#!/usr/bin/env python
"""Train or evaluate Faster R-CNN with this package's backbones, the Detectron2 way:

    python tools/train_net.py --config-file configs/PascalVOC-Detection/resnet101_c4_voc0712.yaml \
        --num-gpus 8 [--resume] [--eval-only MODEL.WEIGHTS path/to/model_final.pth] [KEY VALUE ...]
    torchrun --nproc_per_node 8 tools/train_net.py --config-file ... [KEY VALUE ...]

The trainer is `resnet_backbone.engine.Trainer`: Detectron2's DefaultTrainer with atomic
checkpoints, a resumable data stream, the evaluator chosen by dataset, a checkpoint on
SIGTERM/SIGUSR1 and a stop on divergence. Importing the package registers the backbones and
datasets in every worker process.
"""
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from resnet_backbone import launch
from resnet_backbone.checkpoint import ResNetBackboneCheckpointer
from resnet_backbone.engine import Trainer, save_final_metrics


def main(args, startup_log=None):
    """Train (or with --eval-only evaluate) in this process; returns the final evaluation,
    also written to OUTPUT_DIR/final_metrics.json."""
    # The config, its start-up checks (before OUTPUT_DIR is touched), OUTPUT_DIR and log.txt.
    cfg = launch.setup(args, Trainer, startup_log)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        ResNetBackboneCheckpointer(model, save_dir=cfg.OUTPUT_DIR, cfg=cfg).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        if results and comm.is_main_process():
            verify_results(cfg, results)
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()
    save_final_metrics(cfg, results)
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch.run(main, args, Trainer)
