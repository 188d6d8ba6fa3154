"""What a policy was trained in, by content: a digest of the world model's weights, recorded once per policy run.

A policy acts on one world model's latents; a world model retrained into the same folder (another seed, the same
step) has the same path, step and shapes but other latents, and a policy planned or resumed in it would act without a
word on inputs it never saw. `world_model_digest` is a sha256 over the model's state dict (names, dtypes, shapes and
bytes, in name order), computed once when the policy task is built; planning with the policy and resuming its training
compare it with the digest of the world model they found (`check_world_model`), and refuse naming both. Policy runs
written before the digest existed cannot be checked: that is said once per run.

The same digest of any weights is `jepa_world.checkpoints.digest.weights_digest`, which world models use for the
weights they start from (policies do not import the checkpoint layer; `tests/training/test_provenance_wm.py` checks
that the two agree).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

DIGEST_KEY = "world_model_digest"
_warned: set[str] = set()  # policy runs already told that their world model cannot be checked


def world_model_digest(model: nn.Module) -> str:
    """sha256 (hex) over the state dict of `model` (unwrapped from torch.compile / DDP): names, dtypes, shapes, bytes.

    The same weights give the same digest on any device; a retrained model (another seed) gives another.
    """
    while True:  # the architecture is the wrapped one (torch.compile, DataParallel)
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _described(path: Any, step: Any, digest: str | None) -> str:
    parts = [f"step {step}" if step is not None else None, f"digest {digest[:12]}" if digest else None]
    return f"{path} ({', '.join(p for p in parts if p)})"


def check_world_model(
    meta: Mapping[str, Any],
    model: nn.Module,
    *,
    policy: str | Path,
    found: str | Path | None = None,
    found_step: int | None = None,
    digest: str | None = None,
    what: str = "planned with",
) -> None:
    """Refuse a policy whose world model is not `model` (by content), naming the recorded and the found world model.

    Args:
        meta: the policy run's meta (`world_model`, `world_model_step`, `world_model_digest`).
        model: the world model the policy is about to be used with.
        policy: the policy run or checkpoint, as messages name it.
        found: where `model` came from (default: the recorded path, which is where a policy's world model is loaded).
        found_step: its training step, when known.
        digest: `world_model_digest(model)` when the caller has it already.
        what: what is being done ("planned with", "resumed in").

    Raises:
        ValueError: the digests differ.

    Warns:
        UserWarning: once per policy run, for a run recorded before the digest existed (nothing can be checked).
    """
    recorded = meta.get(DIGEST_KEY)
    path, step = meta.get("world_model"), meta.get("world_model_step")
    if not recorded:
        if str(policy) not in _warned:
            _warned.add(str(policy))
            warnings.warn(
                f"policy {policy} records no digest of its world model {_described(path, step, None)} (written before "
                "policies recorded one): whether it is still the model the policy was trained in cannot be checked",
                stacklevel=2,
            )
        return
    digest = digest or world_model_digest(model)
    if digest != recorded:
        raise ValueError(
            f"policy {policy} was trained in the world model {_described(path, step, recorded)}; it would be {what} "
            f"{_described(found or path, found_step, digest)}, other weights (retrained or replaced since). Train the "
            "policy again in this world model (jepa-world train-policy --checkpoint WORLD_MODEL_RUN), or use the world "
            "model it was trained in"
        )
