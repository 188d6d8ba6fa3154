"""Training-checkpoint file I/O: the only part of `checkpoints/` the training loop needs.

Training checkpoints are `torch.save` dicts with the keys users of the releases recognise (`encoder`,
`target_encoder`, `predictor`, `opt`, `step`) plus what exact resumption needs (`rng`, `config`). They hold only
tensors, numbers, strings, lists and dicts, so they load with `torch.load(..., weights_only=True)`: nothing in a
checkpoint is ever executed. Writes are atomic (temporary file, fsync, rename), so a crash during a save never
destroys the previous checkpoint. Run folders keep them as `checkpoints/step_XXXXXXXX.pt`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from jepa_world.atomic import DiskFullError, atomic_write, disk_full_error

CHECKPOINT_FORMAT = "jepa_world/train/v1"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message says which file or key."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` atomically to `path` (temporary file in the same folder, fsync, rename).

    Raises:
        DiskFullError: the disk is full: the message names the folder, its free space and the newest earlier
            checkpoint, which is intact (no partial file is left).
    """
    path = Path(path)
    try:
        return atomic_write(path, lambda f: torch.save({"format": CHECKPOINT_FORMAT, **state}, f))
    except DiskFullError as err:
        earlier = list_checkpoints(path.parent)
        intact = (
            f"the earlier checkpoint {earlier[-1]} is intact (a rerun resumes from it)"
            if earlier
            else "no earlier checkpoint was touched"
        )
        raise disk_full_error(path, err.__cause__ or err, intact) from err.__cause__


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
        text = str(err)
        found = re.search(r"GLOBAL ([\w.]+)", text)  # a pickle of objects or calls: only this case needs code
        if found:
            what = f" (it pickles {found.group(1)})"
            raise CheckpointError(
                f"{path} needs arbitrary pickle code to load{what}, which jepa_world refuses (it could run anything). "
                "If you trust the file, convert it once: `torch.load(path, weights_only=False)` in a separate "
                "session, then save only its tensors / state dicts."
            ) from None
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt, truncated, or not a PyTorch file): "
            f"{type(err).__name__}{': ' + _first_line(text) if text else ''}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def _first_line(text: str) -> str:
    """The first sentence of an error's first line (at most 300 characters, cut at a word with an ellipsis)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    first = lines[0].split(". ")[0].rstrip(".")
    return first if len(first) <= 300 else first[:300].rsplit(" ", 1)[0] + " ..."


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
