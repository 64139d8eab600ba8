"""The command line shared by tools/train_net.py and tools/pretrain_net.py, the Detectron2 way:
`--config-file`, `--num-gpus`, `--num-machines`, `--machine-rank`, `--dist-url`, `--resume`,
`--eval-only`, trailing `KEY VALUE` overrides; also under torchrun. Bad configs, weights and
data stop the run (`Trainer.check_startup`) before the trainer is built and before OUTPUT_DIR
is touched; with several processes they are checked once in the parent, before any is spawned.
"""
import functools

from detectron2.config import get_cfg
from detectron2.engine import default_argument_parser, default_setup
from detectron2.evaluation import verify_results
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from . import distributed
from .checkpoint import ResNetBackboneCheckpointer
from .config import add_resnet_backbone_config
from .data.custom import register_user_datasets
from .engine import TrainingInterrupted, save_final_metrics


def load_config(args):
    cfg = add_resnet_backbone_config(get_cfg())
    cfg.merge_from_file(args.config_file)
    try:
        cfg.merge_from_list(args.opts)
    except AssertionError as e:  # yacs asserts on unknown keys given on the command line
        raise KeyError(f"{e} (a command-line override; the known keys are Detectron2's and "
                       "resnet_backbone/config.py's)") from None
    cfg.freeze()
    register_user_datasets(cfg)  # DATASETS.USER, in every process
    return cfg


def setup(args, trainer_class):
    cfg = load_config(args)
    trainer_class.check_startup(cfg, world_size=comm.get_world_size(), resume=args.resume,
                                eval_only=args.eval_only,
                                validate_data=not getattr(args, "data_checked", False))
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="resnet_backbone")
    return cfg


def main(args, trainer_class):
    """Train (or with --eval-only evaluate) in this process; returns the final evaluation,
    also written to OUTPUT_DIR/final_metrics.json."""
    cfg = setup(args, trainer_class)
    if args.eval_only:
        model = trainer_class.build_model(cfg)
        ResNetBackboneCheckpointer(model, save_dir=cfg.OUTPUT_DIR, cfg=cfg).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = trainer_class.test(cfg, model)
        if results and comm.is_main_process():
            verify_results(cfg, results)
    else:
        trainer = trainer_class(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
        results = getattr(trainer, "_last_eval_results", None)
    save_final_metrics(cfg, results)
    return results


def run_command_line(trainer_class, argv=None):
    """Parse Detectron2's arguments and run `main` in every process."""
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    world_size = distributed.world_size_of(args)
    if world_size > 1 and not distributed.under_torchrun():
        trainer_class.check_startup(load_config(args), world_size=world_size,
                                    resume=args.resume, eval_only=args.eval_only)
        args.data_checked = True
    try:
        distributed.run(functools.partial(main, trainer_class=trainer_class), args)
    except (TrainingInterrupted, distributed.DistributedJobError) as e:
        distributed.exit_with_message(e)
