"""Deterministic, resumable, sharded sampling of sample keys.

The data stream is a pure function of (seed, position): epoch e is a permutation of the dataset drawn from
(seed, e), and micro-batch g of global size G covers stream positions [g * G, (g + 1) * G). Process r of P takes
the slice [r * G / P, (r + 1) * G / P) of every micro-batch. Each key carries its own augmentation seed. So:

- resuming at micro-batch g reproduces exactly the data an uninterrupted run would have seen (no replay, no
  RNG state to save, any number of DataLoader workers);
- with the same global batch, 1 process and P processes see the same samples in the same global batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across processes and Python runs, unlike hash())."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class StepSampler(Sampler[tuple[int, int]]):
    """Infinite sampler yielding `(index, aug_seed)` keys for one process.

    Args:
        dataset_size: number of items.
        micro_batch_size: GLOBAL micro-batch size G (all processes together).
        rank: this process.
        world_size: number of processes P; must divide G.
        seed: run seed.
        start_micro_step: first micro-batch to yield (to resume).
    """

    def __init__(
        self,
        *,
        dataset_size: int,
        micro_batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        start_micro_step: int = 0,
    ):
        if dataset_size < 1:
            raise ValueError(f"dataset_size={dataset_size}: the dataset is empty")
        if micro_batch_size % world_size:
            raise ValueError(f"micro_batch_size={micro_batch_size} is not divisible by world_size={world_size}")
        self.n, self.global_batch, self.rank, self.world = dataset_size, micro_batch_size, rank, world_size
        self.local_batch = micro_batch_size // world_size
        self.seed, self.start = seed, start_micro_step
        self._perm: tuple[int, torch.Tensor] | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0xDA7A))
            self._perm = (epoch, torch.randperm(self.n, generator=g))
        return self._perm[1]

    def key(self, position: int) -> tuple[int, int]:
        """Sample key at a global stream position."""
        epoch, offset = divmod(position, self.n)
        return int(self._permutation(epoch)[offset]), derive_seed(self.seed, position, 0xA06)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = self.start
        while True:
            first = g * self.global_batch + self.rank * self.local_batch
            for pos in range(first, first + self.local_batch):
                yield self.key(pos)
            g += 1
