"""The training hooks of the engine: per-iteration seeding, the one hook that stops a run, on a
stop signal (with a checkpoint) or on divergence (without one), and the evaluation hook that a
stop signal stops at once and --resume redoes."""
import os
import statistics
from collections import deque

import torch
from detectron2.engine import HookBase
from detectron2.engine import hooks as d2_hooks
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from .preemption import RunInterrupted, StopRequests, stop_later, stopping_promptly
from .stream import derive_seed


class IterationSeedHook(HookBase):
    """Seeds python/numpy/torch RNGs from (seed, rank, iteration) before every step, so the
    model's own sampling (RPN anchors, RoIs) after a resume is what it would have been."""

    def __init__(self, seed):
        self.seed = seed

    def before_step(self):
        seed_all_rng(derive_seed(self.seed, comm.get_rank(), self.trainer.iter, 0x5EED))


class TrainingInterrupted(RunInterrupted):
    """A stop signal stopped training after saving a checkpoint; --resume continues from it."""


class TrainingDiverged(FloatingPointError):
    """The loss spiked or the weights grew out of bounds (see StopHook); `iteration` is the
    iteration where it was seen first."""

    def __init__(self, problem, iteration):
        super().__init__(problem)
        self.iteration = iteration


def stop_check_due(trainer, period, checkpoint_period):
    """Whether the iteration that just ended is one where the stop checks that cost a host-device
    sync or a collective run: every `period` iterations, before every periodic checkpoint and at
    the last iteration (so that no checkpoint is written before they have run)."""
    done = trainer.iter + 1
    return (period <= 1 or done % period == 0 or done >= trainer.max_iter
            or bool(checkpoint_period) and done % checkpoint_period == 0)


class StopHook(HookBase):
    """Stops training when it must, deciding on every process alike:

    * a stop signal (SIGTERM, SIGUSR1; `preemption.py`) to any process of the job: a checkpoint
      of the iteration just done is saved and every process raises TrainingInterrupted; at the
      last iteration the periodic checkpointer writes model_final.pth and every process stops
      before the final evaluation instead (`EvaluationHook`), which --resume then runs;
    * divergence: TrainingDiverged, before that iteration's checkpoint is written, when the total
      loss exceeds both `loss_spike_factor` times the median of the last `loss_window`
      iterations and the loss at the start of training (noise on a tiny loss late in training
      is no divergence), or when the L2 norm of the trainable weights exceeds
      `weight_norm_growth` times its value at the start. A factor of 0 disables its check.
      The start values travel in the checkpoints, so a resumed run compares with the same ones.

    The loss (already on the host) is checked every iteration; the weight norm (a host-device
    sync on GPUs) and, with several processes, one exchange of both verdicts run on the
    iterations of `stop_check_due`. A single process acts on a signal after the current
    iteration. The hook must come after the LR scheduler's (the checkpoint holds the stepped
    scheduler) and before the periodic checkpointer's (diverged weights are never saved)."""

    MIN_LOSSES = 2  # a median of fewer previous iterations says nothing

    def __init__(self, *, loss_spike_factor, loss_window, weight_norm_growth, check_period=1,
                 checkpoint_period=0):
        self.loss_spike_factor = loss_spike_factor
        self.weight_norm_growth = weight_norm_growth
        self.check_period, self.checkpoint_period = check_period, checkpoint_period
        self.losses = deque(maxlen=loss_window)
        self.start = {"loss": None, "norm": None}
        self.seen = None  # (problem, iteration) found by this process, not acted upon yet
        self.signals = StopRequests()

    def state_dict(self):
        return dict(self.start)

    def load_state_dict(self, state):
        self.start.update(state)

    def _weight_norm(self):
        norms = [p.detach().norm() for p in self.trainer.model.parameters() if p.requires_grad]
        return torch.stack(norms).norm().item() if norms else 0.0

    def before_train(self):
        self.signals.install()
        if self.weight_norm_growth and self.start["norm"] is None:
            self.start["norm"] = self._weight_norm()

    def after_train(self):
        self.signals.uninstall()

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

    def _look_for_divergence(self, due):
        iteration = self.trainer.iter
        if self.seen is None and self.loss_spike_factor and comm.is_main_process():
            loss = self.trainer.storage.history("total_loss").latest()  # only rank 0 has it
            problem = self._loss_problem(loss)
            if problem:
                self.seen = (problem, iteration)
            else:
                self.losses.append(loss)
        if due and self.seen is None and self.weight_norm_growth:
            problem = self._norm_problem()
            if problem:
                self.seen = (problem, iteration)

    def after_step(self):
        due = stop_check_due(self.trainer, self.check_period, self.checkpoint_period)
        self._look_for_divergence(due)
        verdicts = [(self.seen, self.signals.received)]
        if comm.get_world_size() > 1:
            if not due:
                return
            verdicts = comm.all_gather(verdicts[0])
        diverged = [seen for seen, _ in verdicts if seen]
        if diverged:
            raise TrainingDiverged(*min(diverged, key=lambda s: s[1]))
        received = [name for _, name in verdicts if name]
        if received and self.trainer.iter + 1 >= self.trainer.max_iter:
            stop_later(received[0])
        elif received:
            self._save_and_stop(received[0])

    def _save_and_stop(self, signal_name):
        iteration = self.trainer.iter
        name = f"model_{iteration:07d}"
        self.trainer.checkpointer.save(name, iteration=iteration)
        comm.synchronize()
        path = os.path.join(self.trainer.cfg.OUTPUT_DIR, f"{name}.pth")
        raise TrainingInterrupted(
            f"{signal_name} received: saved {path} after iteration {iteration}; run the same "
            "command with --resume to continue"
        )


class EvaluationHook(d2_hooks.EvalHook):
    """Detectron2's EvalHook (every `eval_period` iterations, and after the last one), where a
    stop signal stops the evaluation at once (`preemption.stopping_promptly`) and --resume
    redoes it:

    * the checkpoint of an iteration is written before its evaluation (the hook comes after the
      checkpointer's), so a run resumed from iteration i - 1 where an evaluation was due first
      evaluates again, its results recorded at that iteration as before;
    * the final evaluation runs only after training completed (Detectron2's also runs when the
      last iteration failed), also when a run resumed from model_final.pth has nothing left to
      train."""

    def _evaluate(self, phase):
        with stopping_promptly(phase):
            self._do_eval()

    def before_train(self):
        start, period = self.trainer.start_iter, self._period
        if 0 < start < self.trainer.max_iter and period > 0 and start % period == 0:
            storage = self.trainer.storage
            storage.iter = start - 1
            self._evaluate(f"the evaluation after iteration {start - 1}")
            storage.iter = start

    def after_step(self):
        done = self.trainer.iter + 1
        if self._period > 0 and done % self._period == 0 and done != self.trainer.max_iter:
            self._evaluate(f"the evaluation after iteration {self.trainer.iter}")

    def after_train(self):
        if self.trainer.iter >= self.trainer.max_iter:  # training completed
            self._evaluate("the final evaluation")
        del self._func  # a closure holding the trainer (as Detectron2's hook does)
