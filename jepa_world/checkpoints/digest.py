"""Weights identified by content: a sha256 over a state dict, and the record of the weights a run depends on.

A run that starts from other weights (a policy from its world model, a world model from a pretrained encoder
(`wm.encoder.checkpoint`, and the readout fit on that encoder's tokens), a second-stage world model from its first
stage (`wm.init_from`)) names them by a path, which a retrained run in the same folder keeps while its weights change.
`weights_digest` is a pure function of the weights (names, dtypes, shapes and bytes, in name order; the same on any
device); `weights_source` is what such a run records in its checkpoint meta (`meta["sources"][config key]`), and
`changed_sources` names the ones that hold other weights now (a resume in them is refused).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jepa_world.checkpoints.paths import resolve_checkpoint

SOURCES_KEY = "sources"  # meta key of a run's {config key: weights_source(...)}


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside torch.compile / DDP / DataParallel wrappers (their state dicts prefix every name)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _flat(weights: nn.Module | Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(weights, nn.Module):
        weights = unwrap(weights).state_dict()
    out: dict[str, torch.Tensor] = {}
    for name, value in weights.items():
        if isinstance(value, nn.Module | Mapping):
            out.update(_flat(value, f"{prefix}{name}."))
        elif isinstance(value, torch.Tensor):
            out[f"{prefix}{name}"] = value
    return out


def weights_digest(weights: nn.Module | Mapping[str, Any]) -> str:
    """sha256 (hex) over the tensors of `weights`: names, dtypes, shapes and bytes, in name order.

    Args:
        weights: a module (its state dict, unwrapped from torch.compile / DDP), a state dict, or a mapping of names
            to modules / state dicts (flattened as `name.key`: a checkpoint's components).

    Returns:
        64 hex characters; the same weights give the same digest on any device, other weights (a retrained model)
        another.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(_flat(weights).items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_source(path: str | Path, weights: nn.Module | Mapping[str, Any], *, step: int | None = None) -> dict:
    """What a run records of weights it starts from: the file they came from, its step when known, their digest."""
    return {"path": str(resolve_checkpoint(path)), "step": step, "digest": weights_digest(weights)}


def describe(source: Mapping[str, Any]) -> str:
    """`PATH (step N, digest 1a2b3c4d5e6f)` of a `weights_source` record."""
    parts = [f"step {source['step']}" if source.get("step") is not None else None,
             f"digest {str(source['digest'])[:12]}" if source.get("digest") else None]  # fmt: skip
    return f"{source.get('path')} ({', '.join(p for p in parts if p)})"


def changed_sources(saved: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> list[str]:
    """One line per config key whose weights differ between a run's recorded sources and this run's, naming both.

    Keys on one side only are left out: a run written before sources were recorded cannot be checked, and a key
    that was added or removed is a changed setting, which the resume check names by itself.
    """
    lines = []
    for key, old in (saved or {}).items():
        new = (now or {}).get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping) and old.get("digest") != new.get("digest"):
            lines.append(
                f"{key} was {describe(old)} when the run was trained; it now holds other weights: {describe(new)}"
            )
    return lines
