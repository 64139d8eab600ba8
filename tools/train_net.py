#!/usr/bin/env python
"""Train or evaluate Faster R-CNN with this package's backbones, the Detectron2 way:

    python tools/train_net.py --config-file configs/PascalVOC-Detection/resnet101_c4_voc0712.yaml \
        --num-gpus 8 [--resume] [--eval-only MODEL.WEIGHTS path/to/model_final.pth] [KEY VALUE ...]
    torchrun --nproc_per_node 8 tools/train_net.py --config-file ... [KEY VALUE ...]

The trainer is `resnet_backbone.engine.Trainer` (Detectron2's DefaultTrainer with atomic
checkpoints, a resumable data stream and the evaluator chosen by dataset); the command line and
its start-up checks are `resnet_backbone.launch`. Importing the package registers the backbones
and datasets in every worker process.
"""
import functools

from resnet_backbone import launch
from resnet_backbone.engine import Trainer

main = functools.partial(launch.main, trainer_class=Trainer)

if __name__ == "__main__":
    launch.run_command_line(Trainer)
