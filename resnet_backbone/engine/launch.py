"""The pieces of tools/train_net.py and tools/pretrain_net.py around their `main`, the Detectron2
way (`--config-file`, `--num-gpus`, `--num-machines`, `--machine-rank`, `--dist-url`, `--resume`,
`--eval-only`, trailing `KEY VALUE` overrides; also under torchrun):

* `load_config`: the config (any form `config_files` reads) with this package's keys, and
  DATASETS.USER registered;
* `setup`: the trainer's start-up checks (bad configs, weights and data stop the run before
  OUTPUT_DIR is touched), then Detectron2's `default_setup` and the run's log file, which also
  gets what the checks logged;
* `run`: `main` in every process of the job; with several processes spawned here, the checks
  run once in this process before any is spawned. A stop signal, in any phase of the run, ends
  the job with EXIT_INTERRUPTED and one line saying where it stopped and what to run
  (`preemption.py`: during training after a checkpoint is written, elsewhere at once).
"""
import argparse
import functools
import logging
import os
from contextlib import contextmanager

from detectron2.config import get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from .. import config_files
from ..data.custom import register_user_datasets
from . import distributed, preemption
from .hooks import TrainingInterrupted
from .preemption import EXIT_INTERRUPTED, RunInterrupted, StopRequested

PACKAGE_LOGGER = "resnet_backbone"


def load_config(args, add_config=None, *, trained=False):
    """The YAML config of `args` (--config-file in any form `config_files.locate` takes: a
    shipped name, a file, a run folder; trailing KEY VALUE overrides) with the keys
    `add_config` adds (a trainer's `add_config`; default: by MODEL.META_ARCHITECTURE), frozen,
    its DATASETS.USER registered. A run folder's OUTPUT_DIR is the folder, and with `trained`
    MODEL.WEIGHTS is its checkpoint (what predict, export, analysis and --eval-only use)."""
    source = config_files.locate(args.config_file)
    if source.lazy:
        raise config_files.ConfigFileError(
            f"--config-file {args.config_file} is a LazyConfig ({source.path}); this tool "
            "reads it through resnet_backbone.engine.lazy (tools/lazyconfig_train_net.py)")
    opts = [*config_files.run_overrides(source, trained=trained, lazy=False), *args.opts]
    try:
        cfg = config_files.yaml_config(source.path, opts, add_config)
    except KeyError:
        classifier_keys = config_files.CONFIG_KEYS.get("ImageClassifier")
        if add_config not in (None, classifier_keys) and \
                config_files.meta_architecture(source.path) == "ImageClassifier":
            raise ValueError(
                f"{args.config_file} is a classification config (MODEL.META_ARCHITECTURE "
                "ImageClassifier); this tool takes detection configs: train and evaluate "
                "classifiers with tools/pretrain_net.py") from None
        raise
    cfg.freeze()
    register_user_datasets(cfg)  # DATASETS.USER, in every process
    return cfg


class _Held(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append((record.levelno, record.name, record.getMessage()))


@contextmanager
def _holding_package_logs():
    """The package's INFO+ records logged inside, as (level, logger name, message) picklable
    lines, kept from the console until `replay_log` (the run's log file does not exist yet)."""
    logger, held = logging.getLogger(PACKAGE_LOGGER), _Held()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(held)
    logger.setLevel(min(level or logging.INFO, logging.INFO))
    logger.propagate = False
    try:
        yield held.lines
    finally:
        logger.removeHandler(held)
        logger.setLevel(level)
        logger.propagate = propagate


def replay_log(lines):
    for level, name, message in lines:
        logging.getLogger(name).log(level, message)


def check_startup(trainer_class, cfg, args, world_size, *, validate_data=True):
    """The trainer's start-up checks; returns what they logged (lines for `setup`)."""
    try:
        with _holding_package_logs() as lines:
            trainer_class.check_startup(cfg, world_size=world_size, resume=args.resume,
                                        eval_only=args.eval_only, validate_data=validate_data)
    except Exception:
        replay_log(lines)  # what was found before the error, on the console
        raise
    return lines


def setup(args, trainer_class, startup_log=None):
    """The checked config of this process, with OUTPUT_DIR and its log file set up.
    `startup_log`: what the checks logged when they ran before (in the spawning process)."""
    cfg = load_config(args, trainer_class.add_config, trained=args.eval_only)
    set_up_checked(cfg, args, trainer_class, startup_log)
    return cfg


def set_up_checked(cfg, args, trainer_class, startup_log=None):
    """`cfg` checked by `trainer_class` (unless the spawning process did: `startup_log`), then
    Detectron2's default_setup and the run's log file, which gets what the checks logged."""
    if startup_log is None:
        startup_log = check_startup(trainer_class, cfg, args, comm.get_world_size())
    else:  # the data were checked before the processes were spawned
        trainer_class.check_startup(cfg, world_size=comm.get_world_size(), resume=args.resume,
                                    eval_only=args.eval_only, validate_data=False)
    preemption.describe_run(output_dir=cfg.OUTPUT_DIR)
    with preemption.deferred():  # OUTPUT_DIR's config.yaml and log.txt are written complete
        default_setup(cfg, argparse.Namespace(
            **{**vars(args), "config_file": config_files.locate(args.config_file).path}))
        setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name=PACKAGE_LOGGER)
        if comm.is_main_process():
            replay_log(startup_log)


def run(main, args, trainer_class, load=None):
    """`main(args, startup_log=...)` in every process of the job (`distributed.run`); errors
    the user can act on end it with one line on stderr. `load(args)`: (trainer class, config)
    for the checks run here when processes are spawned here; default `trainer_class` and the
    yacs config of `args`."""
    world_size = distributed.world_size_of(args)
    preemption.describe_run(eval_only=args.eval_only)
    try:
        startup_log = None
        if world_size > 1 and not distributed.under_torchrun():
            if load is None:
                checked = trainer_class, load_config(args, trainer_class.add_config,
                                                      trained=args.eval_only)
            else:
                checked = load(args)
            preemption.describe_run(output_dir=checked[1].OUTPUT_DIR)
            startup_log = check_startup(*checked, args, world_size)
        distributed.run(functools.partial(main, startup_log=startup_log), args,
                        passed_on=(TrainingInterrupted, RunInterrupted))
        preemption.finish()
    except StopRequested as stop:  # here, before any process was spawned
        distributed.exit_with_message(RunInterrupted(str(stop)), EXIT_INTERRUPTED)
    except RunInterrupted as e:
        distributed.exit_with_message(e, EXIT_INTERRUPTED)
    except distributed.DistributedJobError as e:
        distributed.exit_with_message(e)
