"""Training pieces that make long runs survive kills, bad losses and bad starts.

* `AtomicCheckpointer`: every checkpoint is written to a temporary file in the same directory,
  fsynced and renamed over the target; `last_checkpoint` is updated (also atomically) only once
  the checkpoint is complete. A SIGKILL at any moment leaves the previous checkpoint and the
  `last_checkpoint` pointing at it intact.
* A resumable training data stream: `ResumableBatchSampler` draws the same global sequence of
  shuffled indices as Detectron2's TrainingSampler would (one seeded stream, sharded by rank,
  grouped by aspect ratio at the index level), and on `--resume` skips the batches already
  consumed. Every image's augmentation randomness is derived from (SEED, its position in the
  stream) and every iteration's model randomness (RPN / RoI sampling) from (SEED, rank,
  iteration), so a killed and resumed run on the CPU ends with the same weights as an
  uninterrupted one.
* `Trainer`: Detectron2's DefaultTrainer with the above, the evaluator chosen by dataset, and a
  clear message when the loss stops being finite.
"""
import glob
import logging
import os
import random
import signal
import tempfile
import threading
import weakref
from unittest import mock
from contextlib import contextmanager
from itertools import islice

import numpy as np
import torch
from detectron2.data import DatasetMapper, get_detection_dataset_dicts
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList
from detectron2.engine import DefaultTrainer, HookBase
from detectron2.engine import defaults as d2_defaults
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from .checkpoint import ResNetBackboneCheckpointer
from .distributed import create_ddp_model
from .files import TMP_SUFFIX, atomic_write, write_json
from .data.evaluation import build_evaluator

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

    def _local(self):
        return "://" not in self.save_dir

    def save(self, name, **kwargs):
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

    def last_complete_checkpoint(self):
        return self.get_checkpoint_file() if self.has_checkpoint() else None


# ------------------------------------------------------------------------------------------
# Resumable, reproducible training data
# ------------------------------------------------------------------------------------------
def derive_seed(*parts):
    """A 32-bit seed from integers, independent of process and worker state."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


@contextmanager
def seeded_rng(seed):
    """Seed python, numpy and torch (CPU) RNGs for a block and restore their states after."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    seed_all_rng(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


class ResumableBatchSampler:
    """Infinite per-rank batches of (stream position, dataset index).

    The global stream is one seeded permutation of the dataset after another; rank r takes
    positions r, r + W, r + 2W, ... (as Detectron2's TrainingSampler). With `aspect_flags`,
    indices are grouped into batches of one aspect ratio (as AspectRatioGroupedDataset, but on
    indices, so the grouping is a pure function of the stream). `start_batch` batches are
    skipped: the ones a resumed run already consumed.
    """

    def __init__(self, size, batch_size, *, seed, rank=0, world_size=1, shuffle=True,
                 aspect_flags=None, start_batch=0):
        if size <= 0:
            raise ValueError("the training set is empty")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.aspect_flags = aspect_flags
        self.start_batch = start_batch

    def _global_stream(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        position = 0
        while True:
            order = (torch.randperm(self.size, generator=generator) if self.shuffle
                     else torch.arange(self.size))
            for index in order.tolist():
                yield position, index
                position += 1

    def _batches(self):
        stream = islice(self._global_stream(), self.rank, None, self.world_size)
        buckets = {}
        for item in stream:
            key = 0 if self.aspect_flags is None else self.aspect_flags[item[1]]
            bucket = buckets.setdefault(key, [])
            bucket.append(item)
            if len(bucket) == self.batch_size:
                yield list(bucket)
                bucket.clear()

    def __iter__(self):
        return islice(self._batches(), self.start_batch, None)


class SeededMapDataset(torch.utils.data.Dataset):
    """Maps (position, index) to `mapper(dicts[index])` with RNGs seeded from (seed, position),
    so augmentation does not depend on which worker or process runs it. A record that cannot be
    loaded raises an error naming its file and image id."""

    def __init__(self, dicts, mapper, seed):
        self._dicts = DatasetFromList(dicts, copy=False, serialize=True)
        self._mapper, self._seed = mapper, seed

    def __len__(self):
        return len(self._dicts)

    def __getitem__(self, key):
        position, index = key
        record = self._dicts[index]
        try:
            with seeded_rng(derive_seed(self._seed, position)):
                out = self._mapper(record)  # a fresh copy: DatasetFromList deserializes
        except Exception as e:
            raise RuntimeError(
                f"training image {record.get('file_name')} (image_id {record.get('image_id')!r}) "
                f"could not be loaded: {type(e).__name__}: {e}"
            ) from e
        if out is None:
            raise RuntimeError(f"the mapper returned None for {record.get('file_name')}")
        return out


class ResumableTrainLoader:
    """The training loader: set `start_iter` before iterating (the trainer does, after
    resume_or_load); iteration starts lazily, at the first batch."""

    def __init__(self, dataset, batch_sampler, num_workers):
        self.dataset, self.batch_sampler, self.num_workers = dataset, batch_sampler, num_workers
        self.start_iter = 0

    def __iter__(self):
        return self._generate()

    def _generate(self):
        self.batch_sampler.start_batch = self.start_iter
        # A generator of its own: otherwise creating the iterator draws from the global torch
        # RNG, at iteration 0 in a fresh run but at the resume iteration in a resumed one.
        generator = torch.Generator()
        generator.manual_seed(derive_seed(self.batch_sampler.seed, self.batch_sampler.rank))
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self.batch_sampler, num_workers=self.num_workers,
            collate_fn=trivial_batch_collator, generator=generator,
        )
        yield from loader


def training_seed(cfg):
    """cfg.SEED when set; otherwise a seed shared by all ranks (then a resumed run draws a new
    data order: exact resumption needs SEED >= 0)."""
    return cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()


def build_resumable_train_loader(cfg, mapper=None, dataset_dicts=None):
    from .data.validation import drop_bad_boxes

    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            f"DATALOADER.SAMPLER_TRAIN={cfg.DATALOADER.SAMPLER_TRAIN}: only TrainingSampler is "
            "resumable here"
        )
    if dataset_dicts is None:
        dataset_dicts = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN,
            filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
            min_keypoints=0,
            proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
        )
        dataset_dicts = drop_bad_boxes(dataset_dicts, "training set")
    world_size = comm.get_world_size()  # IMS_PER_BATCH divides by it: check_startup
    flags = None
    if cfg.DATALOADER.ASPECT_RATIO_GROUPING:
        flags = [int(d["width"] > d["height"]) for d in dataset_dicts]
    seed = training_seed(cfg)
    sampler = ResumableBatchSampler(
        len(dataset_dicts), cfg.SOLVER.IMS_PER_BATCH // world_size, seed=seed,
        rank=comm.get_rank(), world_size=world_size, aspect_flags=flags,
    )
    dataset = SeededMapDataset(dataset_dicts, mapper or DatasetMapper(cfg, True), seed)
    return ResumableTrainLoader(dataset, sampler, cfg.DATALOADER.NUM_WORKERS)


class IterationSeedHook(HookBase):
    """Seeds python/numpy/torch RNGs from (seed, rank, iteration) before every step, so the
    model's own sampling (RPN anchors, RoIs) after a resume is what it would have been."""

    def __init__(self, seed):
        self.seed = seed

    def before_step(self):
        seed_all_rng(derive_seed(self.seed, comm.get_rank(), self.trainer.iter, 0x5EED))


class TrainingInterrupted(RuntimeError):
    """SIGTERM stopped training after saving a checkpoint; --resume continues from it."""


class SaveOnSigterm(HookBase):
    """On SIGTERM (what schedulers send before killing a job), finish the current iteration,
    save a checkpoint, and stop with TrainingInterrupted. Every rank stops at the same iteration
    (the flags are gathered after each step when there are several processes)."""

    def __init__(self):
        self.requested = False
        self._previous = None

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


# ------------------------------------------------------------------------------------------
# The trainer
# ------------------------------------------------------------------------------------------
class Trainer(DefaultTrainer):
    """DefaultTrainer with atomic checkpoints, a resumable data stream, per-iteration seeding,
    the evaluator chosen by dataset, and a non-finite loss reported with its iteration."""

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

    def build_hooks(self):
        # DefaultTrainer made a plain DetectionCheckpointer just before calling this; the
        # periodic checkpointer hook built below must get the atomic one.
        old = self.checkpointer
        self.checkpointer = AtomicCheckpointer(
            old.model, self.cfg.OUTPUT_DIR, cfg=self.cfg, trainer=weakref.proxy(self)
        )
        hooks = super().build_hooks()
        return [IterationSeedHook(training_seed(self.cfg)), *hooks, SaveOnSigterm()]

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

    def train(self):
        try:
            return super().train()
        except FloatingPointError as e:
            last = self.checkpointer.last_complete_checkpoint()
            raise FloatingPointError(
                f"training stopped at iteration {self.iter}: the loss or the weights are not "
                f"finite ({e}). "
                "Nothing was saved after that; the last complete checkpoint is "
                f"{last or '(none)'}. Lower SOLVER.BASE_LR or raise SOLVER.WARMUP_ITERS, or "
                "check the data, then restart (--resume continues from that checkpoint)."
            ) from e


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


# ------------------------------------------------------------------------------------------
# Start-up checks (before anything is built or written to OUTPUT_DIR)
# ------------------------------------------------------------------------------------------
def has_resumable_checkpoint(cfg):
    return os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint"))


def check_evaluators(cfg):
    """Build (and drop) the evaluator of every test set now, so that a dataset nobody can
    evaluate stops the run before training rather than after it."""
    with tempfile.TemporaryDirectory() as scratch:
        for name in cfg.DATASETS.TEST:
            Trainer.build_evaluator(cfg, name, os.path.join(scratch, name))


def check_startup(cfg, *, world_size, resume=False, eval_only=False, validate_data=True):
    """Stop a run that cannot work before the trainer is built and before OUTPUT_DIR is
    touched: batch size vs processes, MODEL.WEIGHTS (existence, architecture, pixel format),
    the datasets (resnet_backbone.data.validation), classes and evaluators."""
    from .checkpoint import check_weights_match_config
    from .data.custom import check_user_datasets
    from .data.validation import validate_datasets

    if not eval_only and cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is not divisible by the number of "
            f"processes ({world_size}); use a multiple of {world_size}"
        )
    if not eval_only:  # e.g. SOLVER.STEPS past SOLVER.MAX_ITER fails here, not after set-up
        from detectron2.solver import build_lr_scheduler

        probe = torch.zeros(1, requires_grad=True)
        build_lr_scheduler(cfg, torch.optim.SGD([probe], lr=cfg.SOLVER.BASE_LR))
    weights = cfg.MODEL.WEIGHTS
    if weights and not (resume and has_resumable_checkpoint(cfg)):
        if "://" not in weights and not os.path.isfile(weights):
            raise FileNotFoundError(f"MODEL.WEIGHTS: file {weights} does not exist")
        check_weights_match_config(cfg, weights)
    check_user_datasets(cfg)
    if validate_data:
        names = cfg.DATASETS.TEST if eval_only else None
        validate_datasets(cfg, names)
    check_evaluators(cfg)
