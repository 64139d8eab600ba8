"""Training pieces that make long runs survive kills, bad losses and bad starts.

* `AtomicCheckpointer`: every checkpoint is written to a temporary file in the same directory,
  fsynced and renamed over the target; `last_checkpoint` is updated (also atomically) only once
  the checkpoint is complete. A SIGKILL at any moment leaves the previous checkpoint and the
  `last_checkpoint` pointing at it intact; a stop signal never interrupts a save
  (`preemption.deferred`).
* `Trainer`: Detectron2's DefaultTrainer with the above, the resumable data stream of
  `engine/stream.py`, seeded model randomness (RPN / RoI sampling from SEED, rank and iteration),
  the evaluator chosen by dataset, the stop hook (`hooks.py`: a checkpoint on SIGTERM/SIGUSR1
  to any process of the job, `preemption.py`), and divergence handling: a loss spike,
  weights growing out of bounds or a non-finite loss stop the run before it saves diverged
  weights, `last_checkpoint` is pointed at the newest checkpoint from before the divergence,
  and `--resume` with RESNET_BACKBONE_SOLVER.RESUME_WITH_CONFIG_LR continues from there with
  the config's (lowered) learning rate. Every checkpoint records the network and pixel format
  it holds, read from the model (`metadata.py`), and loads with torch.load(weights_only=True).
"""
import glob
import logging
import os
import re
import weakref

import torch
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, TrainerBase
from detectron2.engine import hooks as d2_hooks
from detectron2.evaluation import verify_results
from detectron2.modeling import GeneralizedRCNNWithTTA
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger
from fvcore.nn.precise_bn import get_bn_modules

from ..config import add_resnet_backbone_config
from ..data.evaluation import build_evaluator
from ..files import TMP_SUFFIX, atomic_write, write_json
from ..modeling.description import YACS
from ..modeling.fast_path import apply_fast_path
from ..weights.checkpoint import ResNetBackboneCheckpointer
from ..weights.metadata import METADATA_KEY, metadata_of_model
from .distributed import create_ddp_model, share_rank0_buffers
from .hooks import EvaluationHook, IterationSeedHook, StopHook
from .preemption import ShieldedLoader, deferred
from .startup import check_detection_run, model_skeleton
from .stream import ResumableTrainLoader, build_resumable_train_loader, training_seed

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------
# Atomic checkpoints (the write itself is files.atomic_write)
# ------------------------------------------------------------------------------------------
def remove_stale_temporaries(directory):
    """Temporary files left by a process killed while saving (never read by anyone)."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(directory), "." + "*" + TMP_SUFFIX)):
        name = os.path.basename(path)
        if name.startswith((".last_checkpoint.", ".model_")) or ".pth." in name:
            os.unlink(path)
            removed.append(path)
    return removed


class AtomicCheckpointer(ResNetBackboneCheckpointer):
    """ResNetBackboneCheckpointer whose `save` and `last_checkpoint` are atomic (local paths;
    other save dirs fall back to Detectron2's non-atomic writes)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved = {}  # iteration -> path, of the checkpoints this run saved

    def _local(self):
        return "://" not in self.save_dir

    def save(self, name, **kwargs):
        with deferred():
            self._save(name, **kwargs)

    def _save(self, name, **kwargs):
        if "iteration" in kwargs:  # on every rank, though only the main one writes
            self.saved[kwargs["iteration"]] = os.path.join(self.save_dir, f"{name}.pth")
        if not self.save_dir or not self.save_to_disk:
            return
        if not self._local():
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        broken = [k for k, v in data["model"].items()
                  if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
        if broken:  # never replace a good checkpoint by diverged weights
            raise FloatingPointError(
                f"not saving {name}: the weights are not finite ({', '.join(broken[:5])}"
                f"{', ...' if len(broken) > 5 else ''}); training has diverged"
            )
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        # The record of the network as built and the pixel format of its own buffers
        # (a ProposalNetwork keeps no input format: the config's INPUT.FORMAT then).
        metadata = metadata_of_model(self.model, "tools/train_net.py",
                                     input_format=self.cfg.INPUT.FORMAT if self.cfg else None)
        if metadata is not None:
            data[METADATA_KEY] = metadata
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        os.makedirs(self.save_dir, exist_ok=True)
        atomic_write(path, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        if not self._local():
            return super().tag_last_checkpoint(last_filename_basename)
        with deferred():
            atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                         lambda f: f.write(last_filename_basename.encode()))

    def checkpoints_of_lineage(self, *, started_at, period=0):
        """{iteration: path} of the checkpoints of this run and of those it continues: saved
        before `started_at` (the one it resumed from and older), or since by this run, which
        every process knows (its own saves, and the periodic checkpoints the main process saved
        every `period` iterations) - not leftovers of another attempt that got further."""
        found = dict(self.saved)
        for path in glob.glob(os.path.join(glob.escape(self.save_dir), "model_*.pth")):
            match = re.fullmatch(r"model_(\d+)\.pth", os.path.basename(path))
            i = int(match.group(1)) if match else None
            if i is not None and (i < started_at or period and (i + 1) % period == 0):
                found.setdefault(i, path)
        return found


# ------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------
class Trainer(DefaultTrainer):
    """DefaultTrainer with atomic checkpoints, a resumable data stream, per-iteration seeding,
    the evaluator chosen by dataset, and recovery from a divergence (see the module docstring)."""

    # The config keys of the runs this trainer takes (tools load configs with it).
    add_config = staticmethod(add_resnet_backbone_config)
    # How errors name the settings of the network (checkpoint metadata checks, the head check).
    naming = YACS

    def __init__(self, cfg):
        # DefaultTrainer.__init__'s steps, with this package's DDP wrapping (a CPU model under
        # gloo, see distributed.create_ddp_model) and its atomic checkpointer.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        step = AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer
        self._trainer = step(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, cfg=cfg, naming=self.naming,
                                               trainer=weakref.proxy(self))
        self.start_iter, self.max_iter, self.cfg = 0, cfg.SOLVER.MAX_ITER, cfg
        self.last_results = None  # of the newest evaluation
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_resumable_train_loader(cfg)

    @classmethod
    def build_model(cls, cfg):
        return apply_fast_path(cfg, super().build_model(cfg))

    @classmethod
    def model_skeleton(cls, cfg):
        """The model `build_model` builds, on the meta device (for the start-up checks)."""
        return model_skeleton(cfg)

    @classmethod
    def check_startup(cls, cfg, **kwargs):
        """Stop a run that cannot work before the trainer is built and before OUTPUT_DIR is
        touched (resnet_backbone.engine.startup)."""
        check_detection_run(cfg, cls, **kwargs)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """Detectron2's test loader, with workers that survive stop signals (preemption.py)."""
        return ShieldedLoader(super().build_test_loader(cfg, dataset_name))

    @classmethod
    def test_with_TTA(cls, cfg, model):
        """Detectron2's test-time augmentation (`GeneralizedRCNNWithTTA`: TEST.AUG.MIN_SIZES,
        MAX_SIZE, FLIP) on DATASETS.TEST; results keyed as Detectron2's train_net keys them
        (`bbox_TTA` for one test set, `<dataset>_TTA` for several), evaluations in
        OUTPUT_DIR/inference_TTA."""
        augmented = GeneralizedRCNNWithTTA(cfg, model)
        evaluators = [cls.build_evaluator(cfg, name,
                                          os.path.join(cfg.OUTPUT_DIR, "inference_TTA", name))
                      for name in cfg.DATASETS.TEST]
        results = cls.test(cfg, augmented, evaluators)
        return {f"{key}_TTA": value for key, value in results.items()}

    def evaluate(self):
        """Evaluate the model on DATASETS.TEST (the evaluation hook's function), every process
        with rank 0's BN statistics (those a checkpoint holds); the results are kept as
        `last_results`."""
        share_rank0_buffers(self.model)
        self.last_results = self.test(self.cfg, self.model)
        return self.last_results

    def build_hooks(self):
        """Detectron2's DefaultTrainer hooks, in its order, with: the seeding hook first; the
        stop hook after the LR scheduler's step (a checkpoint holds the stepped scheduler) and
        before the checkpointer (diverged weights are never saved); the evaluation through
        `evaluate` (`EvaluationHook`: a stop signal stops it, --resume redoes it); the writers
        every RESNET_BACKBONE_SOLVER.WRITE_PERIOD iterations."""
        cfg, solver, main = self.cfg, self.cfg.RESNET_BACKBONE_SOLVER, comm.is_main_process()
        precise_bn = None
        if cfg.TEST.PRECISE_BN.ENABLED and get_bn_modules(self.model):
            loader_cfg = cfg.clone()
            loader_cfg.defrost()
            loader_cfg.DATALOADER.NUM_WORKERS = 0
            precise_bn = d2_hooks.PreciseBN(cfg.TEST.EVAL_PERIOD, self.model,
                                            self.build_train_loader(loader_cfg),
                                            cfg.TEST.PRECISE_BN.NUM_ITER)
        hooks = [
            IterationSeedHook(training_seed(cfg)),
            d2_hooks.IterationTimer(),
            d2_hooks.LRScheduler(),
            precise_bn,
            StopHook(loss_spike_factor=solver.LOSS_SPIKE_FACTOR, loss_window=solver.LOSS_WINDOW,
                     weight_norm_growth=solver.WEIGHT_NORM_GROWTH,
                     check_period=solver.CHECK_PERIOD,
                     checkpoint_period=cfg.SOLVER.CHECKPOINT_PERIOD),
            d2_hooks.PeriodicCheckpointer(self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD)
            if main else None,
            EvaluationHook(cfg.TEST.EVAL_PERIOD, self.evaluate),
            d2_hooks.PeriodicWriter(self.build_writers(), period=solver.WRITE_PERIOD)
            if main else None,
        ]
        return [hook for hook in hooks if hook is not None]

    def resume_or_load(self, resume=True):
        if resume and comm.is_main_process() and os.path.isdir(self.cfg.OUTPUT_DIR):
            for path in remove_stale_temporaries(self.cfg.OUTPUT_DIR):
                logger.info(f"removed {path}, left by a run killed while saving")
        super().resume_or_load(resume=resume)
        loader = self._trainer.data_loader
        if isinstance(loader, ResumableTrainLoader):
            loader.start_iter = self.start_iter
        if resume and self.start_iter:
            logger.info(f"resuming from {self.checkpointer.get_checkpoint_file()} at iteration "
                        f"{self.start_iter}")
            self._check_learning_rates()

    def _check_learning_rates(self):
        """A resumed run keeps the checkpoint's learning rates unless
        RESNET_BACKBONE_SOLVER.RESUME_WITH_CONFIG_LR asks for the config's; a difference is
        never ignored silently."""
        wanted = self.build_optimizer(self.cfg, self.model).param_groups
        saved, config = list(self.scheduler.base_lrs), [g["lr"] for g in wanted]
        if max(saved) == max(config):
            return
        if not self.cfg.RESNET_BACKBONE_SOLVER.RESUME_WITH_CONFIG_LR:
            logger.warning(
                f"the checkpoint's learning rate {max(saved):g} is used, not the config's "
                f"{max(config):g} (SOLVER.BASE_LR={self.cfg.SOLVER.BASE_LR:g}); set "
                "RESNET_BACKBONE_SOLVER.RESUME_WITH_CONFIG_LR True to use the config's"
            )
            return
        groups = self.optimizer.param_groups
        if [[id(p) for p in g["params"]] for g in wanted] != [[id(p) for p in g["params"]]
                                                             for g in groups]:
            raise ValueError(
                "RESNET_BACKBONE_SOLVER.RESUME_WITH_CONFIG_LR: the config groups the parameters "
                "differently from the checkpoint's optimizer (SOLVER.BIAS_LR_FACTOR or "
                "SOLVER.WEIGHT_DECAY* changed?); only SOLVER.BASE_LR can change on --resume"
            )
        self.scheduler.base_lrs = config
        for group, initial, lr in zip(groups, config, self.scheduler.get_lr()):
            group["initial_lr"], group["lr"] = initial, lr
        logger.info(f"learning rate {max(config):g} from the config (the checkpoint's: "
                    f"{max(saved):g}), the schedule continuing at iteration {self.start_iter}")

    def train(self):
        """Train from `start_iter`; returns the last evaluation's results (None without one)."""
        try:
            TrainerBase.train(self, self.start_iter, self.max_iter)
        except FloatingPointError as e:
            raise FloatingPointError(self._recover_from(e)) from e
        if len(self.cfg.TEST.EXPECTED_RESULTS) and comm.is_main_process():
            verify_results(self.cfg, self.last_results)
        return self.last_results

    def _recover_from(self, error):
        """Point last_checkpoint at the newest checkpoint from before the divergence and say
        how to continue. Weights saved after iteration i first meet the data at i + 1, so only
        checkpoints up to two iterations before the failing one are known to be sound."""
        failed = getattr(error, "iteration", self.iter)
        lineage = self.checkpointer.checkpoints_of_lineage(
            started_at=self.start_iter, period=self.cfg.SOLVER.CHECKPOINT_PERIOD)
        sound = [i for i in lineage if i <= failed - 2]
        good = lineage[max(sound)] if sound else None
        pointer = os.path.join(self.cfg.OUTPUT_DIR, "last_checkpoint")
        if comm.is_main_process():
            if good:
                self.checkpointer.tag_last_checkpoint(os.path.basename(good))
            elif os.path.exists(pointer):
                os.unlink(pointer)
        too_late = sorted(os.path.basename(p) for i, p in lineage.items() if failed - 2 < i)
        if too_late:
            too_late = (f" ({', '.join(too_late)}: saved within two iterations of it, so "
                        "possibly with diverged weights, is not used)")
        start = (f"continues from {good}" if good else
                 "starts again from MODEL.WEIGHTS, as no checkpoint precedes the divergence "
                 "by two iterations or more")
        return (
            f"training stopped at iteration {failed}: it has diverged ({error}). Nothing "
            f"was saved after that; last_checkpoint now names the newest checkpoint from before "
            f"the divergence: {good or '(none)'}{too_late or ''}. Lower SOLVER.BASE_LR (or raise "
            "SOLVER.WARMUP_ITERS, or check the data), then run the same command with --resume "
            "and the overrides SOLVER.BASE_LR <lower> RESNET_BACKBONE_SOLVER.RESUME_WITH_CONFIG_LR "
            f"True: it {start}, with the new learning rate."
        )


# The final evaluation tools/train_net.py leaves in OUTPUT_DIR (read by tools/report.py).
FINAL_METRICS = "final_metrics.json"


def save_final_metrics(cfg, results):
    """Write the final evaluation to OUTPUT_DIR/FINAL_METRICS as strict JSON (undefined metrics
    such as APl of a split without large objects become null). Detectron2 drops the dataset
    level when there is one test set; it is put back here."""
    if not results or not comm.is_main_process():
        return
    if set(results) - {*cfg.DATASETS.TEST, *(f"{name}_TTA" for name in cfg.DATASETS.TEST)}:
        results = {cfg.DATASETS.TEST[0]: results}
    with deferred():
        write_json(os.path.join(cfg.OUTPUT_DIR, FINAL_METRICS), results)
