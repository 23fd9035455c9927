"""Training and validation DataLoaders with step-indexed sampling.

The samples of optimizer step s are a pure function of (seed, s, rank).

Training draws from an endless stream of shuffled epochs: position g of the stream is
``perm_e[g mod N]`` with ``e = g // N`` and ``perm_e = randperm(N)`` seeded with ``seed + e``.
Step s of rank r reads positions ``(s * world_size + r) * batch_size + j``, j < batch_size, so
ranks never share a sample within a step and a resumed run sees exactly the batches the
uninterrupted run would have seen (no sampler state to checkpoint).
"""
from __future__ import annotations

import random
import signal
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler, Subset

from jointperception.config import ExperimentConfig
from jointperception.data.datasets import SyntheticPairDataset
from jointperception.train.distributed import DistributedContext


class StepSampler(Sampler[int]):
    """Endless sample indices for ``batch_size`` samples per step, starting at ``start_step``."""

    def __init__(
        self, num_samples: int, batch_size: int, *, seed: int, start_step: int = 0, rank: int = 0, world_size: int = 1
    ):
        if num_samples < 1 or batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments: {num_samples=} {batch_size=} {rank=} {world_size=}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self._epoch, self._permutation_cache = -1, torch.empty(0, dtype=torch.int64)

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def step_indices(self, step: int) -> list[int]:
        """Dataset indices of this rank's batch at optimizer step ``step``."""
        start = (step * self.world_size + self.rank) * self.batch_size
        return [self._index(position) for position in range(start, start + self.batch_size)]

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.num_samples)
        if epoch != self._epoch:
            self._epoch, self._permutation_cache = epoch, self._permutation(epoch)
        return int(self._permutation_cache[offset])

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            yield from self.step_indices(step)
            step += 1


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: numpy and random follow the worker's torch seed.

    Workers ignore SIGINT/SIGTERM: Ctrl-C reaches the whole process group, and a worker that died
    first would make the main process crash instead of finishing its step and writing last.pt.
    The main process stops the workers itself when it shuts down.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loaders(
    cfg: ExperimentConfig, context: DistributedContext, start_step: int, *, pin_memory: bool = False
) -> tuple[DataLoader, DataLoader]:
    """(endless training loader from ``start_step``, this rank's shard of the validation set).

    Batches are dicts of ``SyntheticPairDataset`` items stacked along a leading batch axis.
    """
    batch_size, workers = cfg.train.batch_size, cfg.data.num_workers
    train_set = SyntheticPairDataset.from_config(cfg.data, "train")
    sampler = StepSampler(
        len(train_set), batch_size, seed=cfg.train.seed, start_step=start_step,
        rank=context.rank, world_size=context.world_size,
    )
    common = dict(num_workers=workers, worker_init_fn=seed_worker, pin_memory=pin_memory)
    train_loader = DataLoader(
        train_set, batch_size=batch_size, sampler=sampler, drop_last=True,
        generator=torch.Generator().manual_seed(cfg.train.seed + start_step), **common,
    )
    val_set = SyntheticPairDataset.from_config(cfg.data, "val")
    shard = Subset(val_set, range(context.rank, len(val_set), context.world_size))
    val_loader = DataLoader(shard, batch_size=batch_size, shuffle=False, persistent_workers=workers > 0, **common)
    return train_loader, val_loader
