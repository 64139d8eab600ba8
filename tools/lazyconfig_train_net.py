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
import functools

from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from resnet_backbone import distributed, launch, lazy
from resnet_backbone.engine import AtomicCheckpointer, save_final_metrics
from resnet_backbone.hooks import TrainingInterrupted
from resnet_backbone.preemption import EXIT_INTERRUPTED


def setup(args, startup_log=None):
    """The lazy config, its engine config (checked before OUTPUT_DIR is touched) and trainer
    class; OUTPUT_DIR gets log.txt, the engine's config.yaml and the lazy config.yaml."""
    config = lazy.load(args.config_file, args.opts)
    cfg = lazy.engine_config(config)
    trainer_class = lazy.lazy_trainer(config)
    if startup_log is None:
        startup_log = launch.check_startup(trainer_class, cfg, args, comm.get_world_size())
    else:  # the data were checked before the processes were spawned
        trainer_class.check_startup(cfg, world_size=comm.get_world_size(), resume=args.resume,
                                    eval_only=args.eval_only, validate_data=False)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=launch.PACKAGE_LOGGER)
    if comm.is_main_process():
        lazy.save_lazy_config(config, f"{cfg.OUTPUT_DIR}/lazy_config.yaml")
        launch._replay(startup_log)
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


def run(args):
    """launch.run for a lazy config: the checks once here when processes are spawned."""
    world_size = distributed.world_size_of(args)
    try:
        startup_log = None
        if world_size > 1 and not distributed.under_torchrun():
            config = lazy.load(args.config_file, args.opts)
            startup_log = launch.check_startup(lazy.lazy_trainer(config),
                                               lazy.engine_config(config), args, world_size)
        distributed.run(functools.partial(main, startup_log=startup_log), args,
                        passed_on=(TrainingInterrupted,))
    except TrainingInterrupted as e:
        distributed.exit_with_message(e, EXIT_INTERRUPTED)
    except distributed.DistributedJobError as e:
        distributed.exit_with_message(e)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    run(args)
