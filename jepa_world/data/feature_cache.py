"""Frozen features computed once: episode windows whose frames are replaced by a frozen encoder's outputs.

A frozen encoder gives every frame the same features at every step, so a world model trained on top of it need not
re-encode each window at each step (measured on Two-Rooms with a frozen ViT-nano/8 under a token readout: 1.9 s per
step re-encoding 32 windows of 17 frames on one core, most of it the ViT). `FeatureWindows` encodes every frame of
every episode once, keeps the features in RAM (float32), and serves the windows of the underlying episode dataset
(either format, `data.episode_formats`) with `"tokens"` in place of the pixels. The data layer knows no model: the
encoder comes in as a callable.

Items: `{"tokens": [T, ...] float32, "actions": [T-1, A*k], ("states": [T, S])}`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from jepa_world.data.windows import EpisodeWindows

Encode = Callable[[np.ndarray], torch.Tensor]  # uint8 frames [F, H, W, 3] -> features [F, ...] (no grad)


class FeatureWindows(Dataset):
    """The windows of `windows` with every frame encoded once by `encode` (see the module docstring).

    Args:
        windows: the episode windows (in_memory recommended: the frames are read once either way).
        encode: frozen encoder of a batch of uint8 frames, returning float features.
        batch_size: frames per `encode` call.
        log: progress lines (None: silent).
    """

    def __init__(
        self,
        windows: EpisodeWindows,
        encode: Encode,
        *,
        batch_size: int = 256,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.windows = windows
        tic = time.perf_counter()
        self.features: list[torch.Tensor] = []
        for e in range(len(windows.episodes)):
            frames = windows.episode_frames(e)  # [F, H, W, 3]
            parts = [encode(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)]
            self.features.append(torch.cat(parts).float().contiguous())  # [F, ...]
        self.seconds = time.perf_counter() - tic
        if log is not None:
            size = sum(f.numel() for f in self.features) * 4 / 2**30
            frames = sum(len(f) for f in self.features)
            log(f"frozen features of {frames} frames: {size:.2f} GiB in {self.seconds:.0f} s")

    def map_(self, fn: Callable[[torch.Tensor], torch.Tensor], *, batch_size: int = 1024) -> None:
        """Replace every frame's features by `fn(features)` (no grad), in batches of `batch_size` frames.

        For a part of the encoder that was fit after the cache was made and is frozen from then on (a readout fit
        to labels): its outputs are then what a training step reads, and the inputs' memory is freed.
        """
        with torch.no_grad():
            for e, f in enumerate(self.features):
                self.features[e] = torch.cat([fn(f[i : i + batch_size]) for i in range(0, len(f), batch_size)])
                self.features[e] = self.features[e].float().contiguous()

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        episode, rows = self.windows.window_rows(key)
        item = self.windows.item(key, frames=False)  # actions (and states), checked as usual; no pixels read
        item["tokens"] = self.features[episode][torch.from_numpy(rows)]  # [T, ...]
        return item
