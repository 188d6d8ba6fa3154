"""Held-out metrics: a task's own `forward(batch) -> (loss, metrics)` on data it never trains on.

The loop calls `evaluate` on the main process at every logged step of a task with a `val_dataset` (a world model
with `wm.val_episodes`). It changes nothing the training depends on: no gradients, the global RNG state restored
(loss terms that sample, and the batches' own randomness, stay off the training stream), the module's train / eval
mode restored. The same windows every time (evenly spaced over the held-out set, at most `max_items`), so the
curve in metrics.jsonl compares like with like. `generalisation_health` turns the last logged step into the run's
health line, with a warning when the held-out loss says the model overfits its training episodes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

MAX_ITEMS = 256  # held-out windows per evaluation
OVERFIT_RATIO = 5.0  # held-out / training rollout loss above which `generalisation_health` warns


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
                    _, metrics = model(batch)  # metrics hold "loss" too, as the loop's logging relies on
                for name, value in metrics.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * len(chunk)
    finally:
        model.train(was_training)
    return {f"val_{name}": total / len(keys) for name, total in sums.items()}


def generalisation_health(first: dict, last: dict) -> tuple[str, str]:
    """Training vs held-out rollout loss at the last logged step, and a warning when the gap says overfitting.

    Both losses are in the same latent space (the model of that step), so their ratio is comparable across runs.
    The warning's threshold, `OVERFIT_RATIO`, and the runs behind it: docs/notes/jepa-world-model.md ("Few episodes").

    Returns:
        ``(summary, warning)``; both empty for a run without held-out episodes.
    """
    if "val_loss_rollout" not in last or "loss_rollout" not in last:
        return "", ""
    train, val = last["loss_rollout"], last["val_loss_rollout"]
    ratio = val / max(train, 1e-12)
    summary = f"rollout loss {train:.4g} on the training episodes, {val:.4g} on the held-out ones ({ratio:.1f}x)"
    if ratio <= OVERFIT_RATIO:
        return summary, ""
    return summary, (
        f"the world model's rollout loss on its held-out episodes is {ratio:.1f}x its training loss (more than "
        f"{OVERFIT_RATIO:g}x): it overfits its training episodes, and plans made with it will be poor; record more "
        "episodes or train fewer steps (val_* in metrics.jsonl shows where the held-out loss stopped falling)"
    )
