#!/usr/bin/env python
"""Train or evaluate a config in Detectron2's LazyConfig schema (this project's configs/**/*.py,
Detectron2's own, or a saved lazy_config.yaml) on this package's engine, with the arguments of
Detectron2's tools/lazyconfig_train_net.py:

    python tools/lazyconfig_train_net.py --config-file configs/Demo/resnet18_c4_synthetic.py \
        [--num-gpus 8] [--resume] [--eval-only] [key=value ...]

e.g. `model.backbone.depth=50 train.max_iter=3 optimizer.lr=0.001 train.output_dir=out`; an
override of a key the config does not have is an error. The run is tools/train_net.py's
(resnet_backbone.engine.Trainer: start-up checks before OUTPUT_DIR is touched, atomic
checkpoints, resume, stop hook, evaluation, final_metrics.json), with the model, optimizer,
lr_multiplier, data loaders and evaluator instantiated from the lazy config
(resnet_backbone/lazy.py). A `.py` config is code and runs when loaded, as in Detectron2.
This tool and tools/train_net.py are one (resnet_backbone/detection_run.py): each takes YAML
and lazy configs alike, by name, path or run folder.
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
