"""Training or evaluating a detector from any config: the body of tools/train_net.py and
tools/lazyconfig_train_net.py, which are one tool under two names. `--config-file` takes every
form `config_files.locate` reads; a YAML config runs on `engine.Trainer`, a LazyConfig (a `.py`
file or name, a saved lazy `.yaml`, a lazy run's folder) on the same engine through
`lazy.lazy_trainer`. Overrides follow the config's dialect: KEY VALUE, or key=value.
"""
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from .. import config_files
from ..weights.checkpoint import ResNetBackboneCheckpointer
from . import launch, lazy, preemption
from .trainer import Trainer, save_final_metrics

# The LazyConfig a lazy run leaves in its OUTPUT_DIR (what the run used, loaded again by every
# tool given the folder).
LAZY_CONFIG = config_files.RUN_LAZY_CONFIG


def load(args):
    """(trainer class, frozen engine config, lazy config or None) of `args.config_file`; a run
    folder evaluated with --eval-only gives its checkpoint as the weights."""
    if not config_files.locate(args.config_file).lazy:
        return Trainer, launch.load_config(args, Trainer.add_config, trained=args.eval_only), None
    config = lazy.load(args.config_file, args.opts, trained=args.eval_only)
    return lazy.lazy_trainer(config), lazy.engine_config(config), config


def setup(args, startup_log=None):
    """The checked engine config and trainer class of this process; OUTPUT_DIR gets log.txt,
    the engine's config.yaml and, for a LazyConfig, the lazy config itself."""
    trainer_class, cfg, config = load(args)
    launch.set_up_checked(cfg, args, trainer_class, startup_log)
    if config is not None and comm.is_main_process():
        lazy.save_lazy_config(config, f"{cfg.OUTPUT_DIR}/{LAZY_CONFIG}")
    return cfg, trainer_class


def main(args, startup_log=None):
    """Train (or with --eval-only evaluate) in this process; returns the final evaluation,
    also written to OUTPUT_DIR/final_metrics.json."""
    cfg, trainer_class = setup(args, startup_log)
    if args.eval_only:
        model = trainer_class.build_model(cfg)
        ResNetBackboneCheckpointer(model, save_dir=cfg.OUTPUT_DIR, cfg=cfg,
                                   naming=trainer_class.naming).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        with preemption.stopping_promptly("the evaluation"):
            results = trainer_class.test(cfg, model)
        if results and comm.is_main_process():
            verify_results(cfg, results)
    else:
        trainer = trainer_class(cfg)
        trainer.resume_or_load(resume=args.resume)
        results = trainer.train()
        model = trainer.model
    if cfg.TEST.AUG.ENABLED:  # after the plain evaluation, as Detectron2's train_net
        results = {**(results or {}), **trainer_class.test_with_TTA(cfg, model)}
    save_final_metrics(cfg, results)
    return results


def run(args):
    """`main` in every process of the job (`launch.run`), the start-up checks run once here
    when processes are spawned here."""
    launch.run(main, args, None, load=lambda a: load(a)[:2])
