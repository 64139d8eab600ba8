#!/usr/bin/env python
"""Train or evaluate an image classifier (ImageNet, CIFAR-10, any ImageFolder), the paper's
other half, with the command line of tools/train_net.py:

    python tools/pretrain_net.py --config-file configs/ImageNet-Classification/resnet50.yaml \
        --num-gpus 8 [--resume] [--eval-only MODEL.WEIGHTS out/model_final.pth] [KEY VALUE ...]

At the end of training the backbone is written as detection weights to
OUTPUT_DIR/model_final_backbone.pth, with the run's pixel format recorded.
"""
# First of all, the stop-signal handlers (tools/stop_signals_first.py), before torch and
# Detectron2 are imported.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # its sibling modules
from stop_signals_first import preemption  # noqa: E402

with preemption.exiting_when_stopped():
    from detectron2.engine import default_argument_parser
    from resnet_backbone.engine import launch
    from resnet_backbone.weights.checkpoint import ResNetBackboneCheckpointer
    from resnet_backbone.classification.trainer import ClassificationTrainer
    from resnet_backbone.engine.trainer import save_final_metrics


def main(args, startup_log=None):
    """Train (or with --eval-only evaluate) the classifier in this process; returns the final
    top-1/top-5 evaluation, also written to OUTPUT_DIR/final_metrics.json."""
    cfg = launch.setup(args, ClassificationTrainer, startup_log)
    if args.eval_only:
        model = ClassificationTrainer.build_model(cfg)
        ResNetBackboneCheckpointer(model, save_dir=cfg.OUTPUT_DIR, cfg=cfg).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        with preemption.stopping_promptly("the evaluation"):
            results = ClassificationTrainer.test(cfg, model)
    else:
        trainer = ClassificationTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()  # also exports the backbone for detection
    save_final_metrics(cfg, results)
    return results


if __name__ == "__main__":
    with preemption.exiting_when_stopped():
        args = default_argument_parser().parse_args()
        print("Command Line Args:", args)
        launch.run(main, args, ClassificationTrainer)
