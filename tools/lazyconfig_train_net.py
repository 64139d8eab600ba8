#!/usr/bin/env python
"""Train or evaluate a LazyConfig detector (configs/**/*.py) on this package's engine, the way
Detectron2's tools/lazyconfig_train_net.py takes its arguments:

    python tools/lazyconfig_train_net.py --config-file configs/Demo/resnet18_c4_synthetic.py \
        [--num-gpus 8] [--resume] [--eval-only] [key=value ...]

e.g. `model.backbone.depth=50 model.backbone.shortcut=C train.output_dir=output/r50c`.
The run is tools/train_net.py's (resnet_backbone.engine.Trainer: start-up checks before
OUTPUT_DIR is touched, atomic checkpoints, resume, evaluation, final_metrics.json); only the
network comes from the lazy config's `model` (resnet_backbone/lazy.py).
"""
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from resnet_backbone import launch, lazy
from resnet_backbone.engine import AtomicCheckpointer, save_final_metrics


def setup(args, startup_log=None):
    """The lazy config, its engine config (checked before OUTPUT_DIR is touched) and trainer
    class; OUTPUT_DIR gets log.txt, the engine's config.yaml and the lazy config.yaml."""
    config = lazy.load(args.config_file, args.opts)
    cfg, trainer_class = lazy.engine_config(config), lazy.lazy_trainer(config)
    launch.set_up_checked(cfg, args, trainer_class, startup_log)
    if comm.is_main_process():
        lazy.save_lazy_config(config, f"{cfg.OUTPUT_DIR}/lazy_config.yaml")
    return cfg, trainer_class


def main(args, startup_log=None):
    cfg, trainer_class = setup(args, startup_log)
    if args.eval_only:
        model = trainer_class.build_model(cfg)
        AtomicCheckpointer(model, save_dir=cfg.OUTPUT_DIR, cfg=cfg).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        results = trainer_class.test(cfg, model)
        if results and comm.is_main_process():
            verify_results(cfg, results)
    else:
        trainer = trainer_class(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()
    save_final_metrics(cfg, results)
    return results


def load(args):
    """(trainer class, engine config) of the lazy config of `args`."""
    config = lazy.load(args.config_file, args.opts)
    return lazy.lazy_trainer(config), lazy.engine_config(config)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch.run(main, args, None, load=load)
