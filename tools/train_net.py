#!/usr/bin/env python
"""Train or evaluate Faster R-CNN with this package's backbones, the Detectron2 way:

    python tools/train_net.py --config-file PascalVOC-Detection/resnet101_c4_voc0712.yaml \
        --num-gpus 8 [--resume] [--eval-only MODEL.WEIGHTS path/to/model_final.pth] [KEY VALUE ...]
    torchrun --nproc_per_node 8 tools/train_net.py --config-file ... [KEY VALUE ...]

`--config-file` is a shipped config's name, a YAML config, a LazyConfig (`.py`, or a saved lazy
`.yaml`; overrides then key=value, as tools/lazyconfig_train_net.py takes them) or the OUTPUT_DIR
of a run (with --resume it continues the run, with --eval-only it evaluates its checkpoint).
The trainer is `resnet_backbone.engine.trainer.Trainer`: Detectron2's DefaultTrainer with atomic
checkpoints, a resumable data stream, the evaluator chosen by dataset, a checkpoint on
SIGTERM/SIGUSR1 and a stop on divergence (resnet_backbone/engine/detection_run.py). Importing the
package registers the backbones and datasets in every worker process.
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
