"""The training data stream, resumable and reproducible: batches and each image's augmentation
are functions of (SEED, position in the stream), so a killed and resumed run sees exactly the
data an uninterrupted one would have seen."""
import random
from contextlib import contextmanager
from itertools import islice

import numpy as np
import torch
from detectron2.data import DatasetMapper, get_detection_dataset_dicts
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from ..data.validation import drop_bad_boxes
from .preemption import WORKER_START_METHOD, exit_only_when_parent_asks, iterate_shielded


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
        self.batch_sampler.start_batch = self.start_iter
        # A generator of its own: otherwise creating the iterator draws from the global torch
        # RNG, at iteration 0 in a fresh run but at the resume iteration in a resumed one.
        generator = torch.Generator()
        generator.manual_seed(derive_seed(self.batch_sampler.seed, self.batch_sampler.rank))
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self.batch_sampler, num_workers=self.num_workers,
            collate_fn=trivial_batch_collator, generator=generator,
            multiprocessing_context=WORKER_START_METHOD if self.num_workers else None,
            worker_init_fn=exit_only_when_parent_asks,
        )
        yield from iterate_shielded(loader)


def training_seed(cfg):
    """cfg.SEED when set; otherwise a seed shared by all ranks (then a resumed run draws a new
    data order: exact resumption needs SEED >= 0)."""
    return cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()


def build_resumable_train_loader(cfg, mapper=None, dataset_dicts=None):
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
