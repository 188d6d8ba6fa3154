"""Held-out metrics: a task's own `forward(batch) -> (loss, metrics)` on data it never trains on.

The loop calls `evaluate` on the main process at every logged step of a task with a `val_dataset` (a world model
with `wm.val_episodes`). It changes nothing the training depends on: no gradients, the global RNG state restored
(loss terms that sample, and the batches' own randomness, stay off the training stream), the module's train / eval
mode restored. The same windows every time (evenly spaced over the held-out set, at most `max_items`), so the
curve in metrics.jsonl compares like with like.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

MAX_ITEMS = 256  # held-out windows per evaluation


def evaluation_keys(num_items: int, max_items: int = MAX_ITEMS) -> list[int]:
    """The dataset indices one evaluation reads: all of them, or `max_items` evenly spaced ones."""
    if num_items <= max_items:
        return list(range(num_items))
    return np.linspace(0, num_items - 1, max_items).round().astype(int).tolist()


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: Dataset,
    prepare: Callable[[dict, int, slice, int], dict],
    *,
    batch_size: int,
    to_device: Callable[[dict], dict],
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    max_items: int = MAX_ITEMS,
) -> dict[str, float]:
    """The model's metrics averaged over held-out items (weighted by batch size), named ``val_<metric>``.

    Args:
        model: the task's model (unwrapped: no process group is involved).
        dataset: held-out items, keyed as the training data is.
        prepare: the task's `prepare` (item, micro step, rows, global batch) -> batch.
        batch_size: items per forward.
        to_device: moves a batch to the model's device.
        autocast: the mixed-precision context of the training forward.
        max_items: most items per evaluation (`evaluation_keys`).
    """
    keys = evaluation_keys(len(dataset), max_items)
    sums: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            for start in range(0, len(keys), batch_size):
                chunk = keys[start : start + batch_size]
                item = default_collate([dataset[(k, k)] for k in chunk])
                batch = to_device(prepare(item, 0, slice(None), len(chunk)))
                batch["diagnostics"] = True
                with autocast():
                    loss, metrics = model(batch)
                metrics = {"loss": loss, **metrics}
                for name, value in metrics.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * len(chunk)
    finally:
        model.train(was_training)
    return {f"val_{name}": total / len(keys) for name, total in sums.items()}
