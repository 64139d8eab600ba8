#!/usr/bin/env python
"""Train or evaluate Faster R-CNN with this package's backbones, the Detectron2 way:

    python tools/train_net.py --config-file PascalVOC-Detection/resnet101_c4_voc0712.yaml \
        --num-gpus 8 [--resume] [--eval-only MODEL.WEIGHTS path/to/model_final.pth] [KEY VALUE ...]
    torchrun --nproc_per_node 8 tools/train_net.py --config-file ... [KEY VALUE ...]

`--config-file` is a shipped config's name, a YAML config, a LazyConfig (`.py`, or a saved lazy
`.yaml`; overrides then key=value, as tools/lazyconfig_train_net.py takes them) or the OUTPUT_DIR
of a run (with --resume it continues the run, with --eval-only it evaluates its checkpoint).
The trainer is `resnet_backbone.engine.Trainer`: Detectron2's DefaultTrainer with atomic
checkpoints, a resumable data stream, the evaluator chosen by dataset, a checkpoint on
SIGTERM/SIGUSR1 and a stop on divergence (resnet_backbone/detection_run.py). Importing the
package registers the backbones and datasets in every worker process.
"""
# First of all, the stop-signal handlers (resnet_backbone/preemption.py): a SIGTERM or SIGUSR1
# from now on, also during the imports of torch and Detectron2 below, ends the run with exit
# status 75 and one line. That module imports only the standard library; it is loaded by its
# path, as resnet_backbone.preemption, because importing it through the package would first run
# the package's __init__, which imports Detectron2.
import importlib.util
import os
import sys

if "resnet_backbone.preemption" not in sys.modules:
    _path = os.path.join(importlib.util.find_spec("resnet_backbone").submodule_search_locations[0],
                         "preemption.py")
    _spec = importlib.util.spec_from_file_location("resnet_backbone.preemption", _path)
    sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_spec.name])
preemption = sys.modules["resnet_backbone.preemption"]
preemption.install_handlers()

with preemption.exiting_when_stopped():
    from detectron2.engine import default_argument_parser
    from resnet_backbone import detection_run

main = detection_run.main

if __name__ == "__main__":
    with preemption.exiting_when_stopped():
        args = default_argument_parser().parse_args()
        print("Command Line Args:", args)
        detection_run.run(args)
