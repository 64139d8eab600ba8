#!/usr/bin/env python
"""Train or evaluate a config in Detectron2's LazyConfig schema (this project's configs/**/*.py,
Detectron2's own, or a saved lazy_config.yaml) on this package's engine, with the arguments of
Detectron2's tools/lazyconfig_train_net.py:

    python tools/lazyconfig_train_net.py --config-file configs/Demo/resnet18_c4_synthetic.py \
        [--num-gpus 8] [--resume] [--eval-only] [key=value ...]

e.g. `model.backbone.depth=50 train.max_iter=3 optimizer.lr=0.001 train.output_dir=out`; an
override of a key the config does not have is an error. The run is tools/train_net.py's
(resnet_backbone.engine.trainer.Trainer: start-up checks before OUTPUT_DIR is touched, atomic
checkpoints, resume, stop hook, evaluation, final_metrics.json), with the model, optimizer,
lr_multiplier, data loaders and evaluator instantiated from the lazy config
(resnet_backbone/engine/lazy.py). A `.py` config is code and runs when loaded, as in Detectron2.
This tool and tools/train_net.py are one (resnet_backbone/engine/detection_run.py): each takes YAML
and lazy configs alike, by name, path or run folder.
"""
# First of all, the stop-signal handlers (tools/stop_signals_first.py), before torch and
# Detectron2 are imported.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # its sibling modules
from stop_signals_first import preemption  # noqa: E402

with preemption.exiting_when_stopped():
    from detectron2.engine import default_argument_parser
    from resnet_backbone.engine import detection_run

main = detection_run.main

if __name__ == "__main__":
    with preemption.exiting_when_stopped():
        args = default_argument_parser().parse_args()
        print("Command Line Args:", args)
        detection_run.run(args)
