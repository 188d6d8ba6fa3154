"""Start / goal pairs from a bank of latents: what policies learned in imagination train on.

The bank is latents of frames encoded once by a frozen world model (`training.policy_task`); item `(i, aug_seed)` is
latent `i` as the start and a latent drawn from `aug_seed` as the goal, so the pairs are a pure function of the
sampler's keys (resumable, the same on any number of processes). The data layer knows no model: the bank comes in
as a tensor.

Items: `{"z0": [HW, D], "z_goal": [HW, D]}`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from jepa_world.data.transforms import split_key


class LatentPairs(Dataset):
    """Pairs of latents of one bank `[M, ...]` (see the module docstring)."""

    def __init__(self, latents: torch.Tensor) -> None:
        if latents.ndim < 2 or len(latents) < 2:
            raise ValueError(f"latents must be [M >= 2, ...], got {tuple(latents.shape)}")
        self.latents = latents.detach().float().contiguous()

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, aug_seed = split_key(key, len(self))
        goal = int(np.random.default_rng(aug_seed).integers(len(self)))
        return {"z0": self.latents[index], "z_goal": self.latents[goal]}
