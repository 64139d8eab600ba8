#!/usr/bin/env python
"""Train or evaluate an image classifier (ImageNet, CIFAR-10, any ImageFolder), the paper's
other half, with the command line of tools/train_net.py:

    python tools/pretrain_net.py --config-file configs/ImageNet-Classification/resnet50.yaml \
        --num-gpus 8 [--resume] [--eval-only MODEL.WEIGHTS out/model_final.pth] [KEY VALUE ...]

At the end of training the backbone is written as detection weights to
OUTPUT_DIR/model_final_backbone.pth, with the run's pixel format recorded.
"""
import functools

from resnet_backbone import launch
from resnet_backbone.classification.trainer import ClassificationTrainer

main = functools.partial(launch.main, trainer_class=ClassificationTrainer)

if __name__ == "__main__":
    launch.run_command_line(ClassificationTrainer)
