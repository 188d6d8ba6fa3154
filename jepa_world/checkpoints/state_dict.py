"""State dicts: wrapper prefixes, strict loads that name every mismatch, and building a module from its weights.

Every load is strict: missing, unexpected and wrongly shaped keys are reported by name. Modules are built on the meta
device and take the loaded tensors, so loading a ViT-g does not pay for a random init (and draws nothing from the
global RNG).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from jepa_world.checkpoints.io import CheckpointError

PREFIXES = ("module.", "_orig_mod.", "backbone.")


def strip_key(key: str, prefixes: tuple[str, ...]) -> str:
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = PREFIXES) -> dict:
    """Remove wrapper prefixes (`module.` from DDP, `_orig_mod.` from torch.compile, `backbone.` from V-JEPA).

    Prefixes are removed repeatedly from the front of each key, in any order (`module.backbone.blocks.0...`).
    """
    return {strip_key(key, prefixes): value for key, value in state_dict.items()}


def abbrev(items: list[str], n: int = 6) -> str:
    shown = ", ".join(items[:n])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > n else ''}]"


def _mismatches(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> tuple[list, list, list]:
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    return missing, unexpected, shapes


def load_state_dict_strict(
    module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str, assign: bool = False
) -> None:
    """Load strictly; on mismatch raise CheckpointError naming missing / unexpected keys and shape mismatches.

    Args:
        module: the model to fill.
        state_dict: tensors by parameter name.
        what: how the error message names the source (file and component).
        assign: take the given tensors instead of copying into the module's (for modules built on the meta device).
    """
    missing, unexpected, shapes = _mismatches(module, state_dict)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {abbrev(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {abbrev(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch {abbrev(shapes)}")
        raise CheckpointError(f"{what} does not match the model: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True, assign=assign)


def load_state_dict_lenient(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str) -> None:
    # strict=False still refuses wrong shapes: a silently skipped tensor is how the releases hid real mismatches.
    missing, unexpected, shapes = _mismatches(module, state_dict)
    if shapes:
        raise CheckpointError(f"{what} does not match the model: shape mismatch {abbrev(shapes)}")
    if missing or unexpected:
        warnings.warn(
            f"{what}: strict=False, missing keys {abbrev(missing)} keep their random init; "
            f"unexpected keys {abbrev(unexpected)} are ignored",
            stacklevel=3,
        )
    module.load_state_dict(state_dict, strict=False)


def instantiate(cls: type[nn.Module], kwargs: dict, state_dict: Mapping, *, strict: bool, what: str) -> nn.Module:
    """Build `cls(**kwargs)` and load `state_dict` into it; returns the module in eval mode."""
    try:
        if strict:
            # Every tensor comes from the checkpoint: no random init to pay for, no global RNG draws.
            with torch.device("meta"):
                module = cls(**kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                module = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise type(err)(f"cannot build {cls.__name__} for {what} with {kwargs}: {err}") from None
    if strict:
        load_state_dict_strict(module, state_dict, what=what, assign=True)
    else:
        load_state_dict_lenient(module, state_dict, what=what)
    return module.eval()


def unwrap(module: nn.Module) -> nn.Module:
    # torch.compile and (Distributed)DataParallel wrap the model; the architecture is the wrapped one.
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, nn.DataParallel | nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())
