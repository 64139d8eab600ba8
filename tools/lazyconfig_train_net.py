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
"""
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from resnet_backbone import launch, lazy
from resnet_backbone.engine import AtomicCheckpointer, save_final_metrics


def setup(args, startup_log=None):
    """The lazy config, its engine config (checked before OUTPUT_DIR is touched) and trainer
    class; OUTPUT_DIR gets log.txt, the engine's config.yaml and the lazy config
    (lazy_config.yaml, which this tool and Detectron2's load again)."""
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
