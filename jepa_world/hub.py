"""Every checkpoint read and write of jepa_world.

Training checkpoints are `torch.save` dicts with the keys users of the releases recognise (`encoder`,
`target_encoder`, `predictor`, `opt`, `step`) plus what exact resumption needs (`rng`, `config`). They hold only
tensors, numbers, strings, lists and dicts, so they load with `torch.load(..., weights_only=True)`: nothing in a
checkpoint is ever executed. Writes are atomic (temporary file, fsync, rename), so a crash during a save never
destroys the previous checkpoint.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "jepa_world/train/v1"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
PREFIXES = ("module.", "_orig_mod.", "backbone.")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message says which file or key."""


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = PREFIXES) -> dict:
    """Remove wrapper prefixes (`module.` from DDP, `_orig_mod.` from torch.compile, `backbone.` from V-JEPA).

    Prefixes are removed repeatedly from the front of each key, in any order (`module.backbone.blocks.0...`).
    """
    out = {}
    for key, value in state_dict.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if key.startswith(p):
                    key, changed = key[len(p) :], True
        out[key] = value
    return out


def load_state_dict_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str) -> None:
    """Load strictly; on mismatch raise CheckpointError naming missing / unexpected keys and shape mismatches."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_abbrev(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_abbrev(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch {_abbrev(shapes)}")
        raise CheckpointError(f"{what} does not match the model: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def _abbrev(items: list[str], n: int = 6) -> str:
    shown = ", ".join(items[:n])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > n else ''}]"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` atomically to `path` (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` (never runs code from the file).

    Raises:
        CheckpointError: the file is missing, truncated, not a checkpoint, or needs arbitrary pickle code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise CheckpointError(
                f"{path} needs arbitrary pickle code to load, which jepa_world refuses (it could run anything). "
                "If you trust the file, convert it once: `torch.load(path, weights_only=False)` in a separate "
                f"session, then save only its tensors / state dicts. ({msg})"
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint: {msg}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def list_checkpoints(directory: str | Path) -> list[Path]:
    """`step_*.pt` files in a directory, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.pt"


def prune_checkpoints(directory: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` step checkpoints."""
    for old in list_checkpoints(directory)[:-keep_last]:
        old.unlink(missing_ok=True)
