"""Training pieces that make long runs survive kills, bad losses and bad starts.

* `AtomicCheckpointer`: every checkpoint is written to a temporary file in the same directory,
  fsynced and renamed over the target; `last_checkpoint` is updated (also atomically) only once
  the checkpoint is complete. A SIGKILL at any moment leaves the previous checkpoint and the
  `last_checkpoint` pointing at it intact.
* `Trainer`: Detectron2's DefaultTrainer with the above, the resumable data stream of
  `data/stream.py`, seeded model randomness (RPN / RoI sampling from SEED, rank and iteration),
  the evaluator chosen by dataset, SIGTERM handling, and divergence handling: a loss spike,
  weights growing out of bounds or a non-finite loss stop the run before it saves diverged
  weights, `last_checkpoint` is pointed at the newest checkpoint from before the divergence,
  and `--resume` with RESNET_BACKBONE_SOLVER.RESUME_WITH_CONFIG_LR continues from there with
  the config's (lowered) learning rate.
"""
import glob
import logging
import os
import re
import signal
import statistics
import threading
import weakref
from collections import deque
from unittest import mock

import torch
from detectron2.engine import DefaultTrainer, HookBase
from detectron2.engine import defaults as d2_defaults
from detectron2.engine import hooks as d2_hooks
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from .checkpoint import ResNetBackboneCheckpointer
from .data.evaluation import build_evaluator
from .data.stream import (ResumableTrainLoader, build_resumable_train_loader, derive_seed,
                          training_seed)
from .distributed import create_ddp_model
from .fast_path import apply_fast_path
from .files import TMP_SUFFIX, atomic_write, write_json
from .startup import check_detection_run

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
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        os.makedirs(self.save_dir, exist_ok=True)
        atomic_write(path, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        if not self._local():
            return super().tag_last_checkpoint(last_filename_basename)
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                     lambda f: f.write(last_filename_basename.encode()))

    def checkpoint_of_lineage(self, *, up_to, started_at):
        """The newest periodic checkpoint saved at iteration <= `up_to` by this run, or before
        `started_at` (the one it resumed from and older): not a leftover of another attempt."""
        found = dict(self.saved)
        for path in glob.glob(os.path.join(glob.escape(self.save_dir), "model_*.pth")):
            match = re.fullmatch(r"model_(\d+)\.pth", os.path.basename(path))
            if match and int(match.group(1)) < started_at:
                found.setdefault(int(match.group(1)), path)
        usable = [i for i in found if i <= up_to]
        return found[max(usable)] if usable else None


class IterationSeedHook(HookBase):
    """Seeds python/numpy/torch RNGs from (seed, rank, iteration) before every step, so the
    model's own sampling (RPN anchors, RoIs) after a resume is what it would have been."""

    def __init__(self, seed):
        self.seed = seed

    def before_step(self):
        seed_all_rng(derive_seed(self.seed, comm.get_rank(), self.trainer.iter, 0x5EED))


class TrainingInterrupted(RuntimeError):
    """SIGTERM stopped training after saving a checkpoint; --resume continues from it."""


def stop_check_due(trainer, period, checkpoint_period):
    """Whether the iteration that just ended is one where the stop checks that cost a host-device
    sync or a collective run: every `period` iterations, before every periodic checkpoint and at
    the last iteration (so that no checkpoint is written before they have run)."""
    done = trainer.iter + 1
    return (period <= 1 or done % period == 0 or done >= trainer.max_iter
            or bool(checkpoint_period) and done % checkpoint_period == 0)


class SaveOnSigterm(HookBase):
    """On SIGTERM (what schedulers send before killing a job), save a checkpoint and stop with
    TrainingInterrupted: after the current iteration in a single process; with several, the
    requests are exchanged on the iterations of `stop_check_due` and every rank stops there."""

    def __init__(self, *, check_period=1, checkpoint_period=0):
        self.requested = False
        self._previous = None
        self.check_period, self.checkpoint_period = check_period, checkpoint_period

    def _request(self, signum, frame):
        self.requested = True

    def before_train(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._request)

    def after_train(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def after_step(self):
        requested = [self.requested]
        if comm.get_world_size() > 1:
            if not stop_check_due(self.trainer, self.check_period, self.checkpoint_period):
                return
            requested = comm.all_gather(self.requested)
        if not any(requested):
            return
        iteration = self.trainer.iter
        name = f"model_{iteration:07d}"
        self.trainer.checkpointer.save(name, iteration=iteration)
        comm.synchronize()
        raise TrainingInterrupted(
            f"SIGTERM received: saved {os.path.join(self.trainer.cfg.OUTPUT_DIR, name)}.pth "
            f"after iteration {iteration}; run the same command with --resume to continue"
        )


class TrainingDiverged(FloatingPointError):
    """The loss spiked or the weights grew out of bounds (see DivergenceGuard); `iteration` is
    the iteration where it was seen first."""

    def __init__(self, problem, iteration):
        super().__init__(problem)
        self.iteration = iteration


class DivergenceGuard(HookBase):
    """Stops training with TrainingDiverged when the total loss of an iteration exceeds both
    `loss_spike_factor` times the median of the last `loss_window` iterations and the loss at
    the start of training (noise on a tiny loss late in training is no divergence), or when the
    L2 norm of the trainable weights exceeds `weight_norm_growth` times its value at the start.
    A factor of 0 disables its check. The start values travel in the checkpoints, so a resumed
    run compares with the same ones.

    The loss (already on the host) is checked every iteration; the weight norm (a host-device
    sync on GPUs) and, with several processes, the exchange of verdicts run on the iterations of
    `stop_check_due`. The hook runs before the checkpointer hook, so diverged weights are never
    saved."""

    MIN_LOSSES = 2  # a median of fewer previous iterations says nothing

    def __init__(self, *, loss_spike_factor, loss_window, weight_norm_growth, check_period=1,
                 checkpoint_period=0):
        self.loss_spike_factor = loss_spike_factor
        self.weight_norm_growth = weight_norm_growth
        self.check_period, self.checkpoint_period = check_period, checkpoint_period
        self.losses = deque(maxlen=loss_window)
        self.start = {"loss": None, "norm": None}
        self.seen = None  # (problem, iteration) found by this process, not acted upon yet

    def state_dict(self):
        return dict(self.start)

    def load_state_dict(self, state):
        self.start.update(state)

    def _weight_norm(self):
        norms = [p.detach().norm() for p in self.trainer.model.parameters() if p.requires_grad]
        return torch.stack(norms).norm().item() if norms else 0.0

    def before_train(self):
        if self.weight_norm_growth and self.start["norm"] is None:
            self.start["norm"] = self._weight_norm()

    def _loss_problem(self, loss):
        if len(self.losses) < self.MIN_LOSSES:
            return None
        median = statistics.median(self.losses)
        if self.start["loss"] is None:
            self.start["loss"] = median
        if loss > self.loss_spike_factor * median and loss > self.start["loss"]:
            return (f"the total loss {loss:.4g} is above RESNET_BACKBONE_SOLVER."
                    f"LOSS_SPIKE_FACTOR={self.loss_spike_factor:g} times the median {median:.4g} "
                    f"of the last {len(self.losses)} iterations")
        return None

    def _norm_problem(self):
        norm, start = self._weight_norm(), self.start["norm"]
        if not norm <= self.weight_norm_growth * start:  # also catches NaN
            return (f"the weight norm {norm:.4g} is above RESNET_BACKBONE_SOLVER."
                    f"WEIGHT_NORM_GROWTH={self.weight_norm_growth:g} times its value "
                    f"{start:.4g} at the start of training")
        return None

    def after_step(self):
        iteration = self.trainer.iter
        if self.seen is None and self.loss_spike_factor and comm.is_main_process():
            loss = self.trainer.storage.history("total_loss").latest()  # only rank 0 has it
            problem = self._loss_problem(loss)
            if problem:
                self.seen = (problem, iteration)
            else:
                self.losses.append(loss)
        due = stop_check_due(self.trainer, self.check_period, self.checkpoint_period)
        if due and self.seen is None and self.weight_norm_growth:
            problem = self._norm_problem()
            if problem:
                self.seen = (problem, iteration)
        if comm.get_world_size() > 1:
            if not due:
                return
            seen = [s for s in comm.all_gather(self.seen) if s]
        else:
            seen = [self.seen] if self.seen else []
        if seen:
            raise TrainingDiverged(*min(seen, key=lambda s: s[1]))


# ------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------
class Trainer(DefaultTrainer):
    """DefaultTrainer with atomic checkpoints, a resumable data stream, per-iteration seeding,
    the evaluator chosen by dataset, and recovery from a divergence (see the module docstring)."""

    def __init__(self, cfg):
        # DefaultTrainer wraps the model with detectron2.engine.defaults.create_ddp_model.
        with mock.patch.object(d2_defaults, "create_ddp_model", create_ddp_model):
            super().__init__(cfg)

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
    def check_startup(cls, cfg, **kwargs):
        """Stop a run that cannot work before the trainer is built and before OUTPUT_DIR is
        touched (resnet_backbone.startup)."""
        check_detection_run(cfg, cls, **kwargs)

    def build_hooks(self):
        # DefaultTrainer made a plain DetectionCheckpointer just before calling this; the
        # periodic checkpointer hook built below must get the atomic one.
        old = self.checkpointer
        self.checkpointer = AtomicCheckpointer(
            old.model, self.cfg.OUTPUT_DIR, cfg=self.cfg, trainer=weakref.proxy(self)
        )
        hooks = super().build_hooks()
        solver = self.cfg.RESNET_BACKBONE_SOLVER
        periods = {"check_period": solver.CHECK_PERIOD,
                   "checkpoint_period": self.cfg.SOLVER.CHECKPOINT_PERIOD}
        guard = DivergenceGuard(loss_spike_factor=solver.LOSS_SPIKE_FACTOR,
                                loss_window=solver.LOSS_WINDOW,
                                weight_norm_growth=solver.WEIGHT_NORM_GROWTH, **periods)
        if solver.WRITE_PERIOD < 1:
            raise ValueError(f"RESNET_BACKBONE_SOLVER.WRITE_PERIOD={solver.WRITE_PERIOD}: "
                             "use 1 or more iterations")
        for hook in hooks:  # DefaultTrainer passes a constant period=20, not a config key
            if isinstance(hook, d2_hooks.PeriodicWriter):
                hook._period = solver.WRITE_PERIOD
        return [IterationSeedHook(training_seed(self.cfg)), guard, *hooks,
                SaveOnSigterm(**periods)]

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
        try:
            return super().train()
        except FloatingPointError as e:
            raise FloatingPointError(self._recover_from(e)) from e

    def _recover_from(self, error):
        """Point last_checkpoint at the newest checkpoint from before the divergence and say
        how to continue. Weights saved after iteration i first meet the data at i + 1, so only
        checkpoints up to two iterations before the failing one are known to be sound."""
        failed = getattr(error, "iteration", self.iter)
        good = self.checkpointer.checkpoint_of_lineage(up_to=failed - 2,
                                                       started_at=self.start_iter)
        pointer = os.path.join(self.cfg.OUTPUT_DIR, "last_checkpoint")
        if comm.is_main_process():
            if good:
                self.checkpointer.tag_last_checkpoint(os.path.basename(good))
            elif os.path.exists(pointer):
                os.unlink(pointer)
        start = (f"continues from {good}" if good else
                 "starts again from MODEL.WEIGHTS, no checkpoint preceding the divergence")
        return (
            f"training stopped at iteration {failed}: it has diverged ({error}). Nothing "
            f"was saved after that; last_checkpoint now names the newest checkpoint from before "
            f"the divergence: {good or '(none)'}. Lower SOLVER.BASE_LR (or raise "
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
    if set(results) - set(cfg.DATASETS.TEST):
        results = {cfg.DATASETS.TEST[0]: results}
    write_json(os.path.join(cfg.OUTPUT_DIR, FINAL_METRICS), results)
