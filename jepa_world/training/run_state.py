"""What a run folder holds between invocations, and what a run shares with its processes.

A run folder: `config.yaml` (the resolved config), `checkpoints/step_*.pt` (atomic, newest `train.keep_last` kept),
`metrics.jsonl` (one line per logging step, flushed as written) and TensorBoard events. This module reads and writes
the pieces the loop needs to resume exactly: the checkpoint to resume from, the RNG states, the metrics file trimmed
to the resumed step, and the SIGTERM / SIGINT flag that stops a run at a step boundary.
"""

from __future__ import annotations

import json
import random
import signal
import warnings
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from jepa_world.checkpoints.io import CheckpointError, list_checkpoints, load_checkpoint


def check_writable(path: Path) -> None:
    """Create the run folder and prove it takes a file; PermissionError naming `train.output_dir` otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"train.output_dir={str(path)!r} is not writable: {err.strerror or err}") from None


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as tensors and lists (what `weights_only=True` loads back)."""
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved."""
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])


def load_resume_state(cfg: DictConfig, ckpt_dir: Path, is_main: bool) -> tuple[dict | None, Path | None]:
    """The checkpoint to resume from: an explicit path, or the newest readable one in the run (auto)."""
    if cfg.train.resume == "never":
        return None, None
    if cfg.train.resume != "auto":
        path = Path(cfg.train.resume)
        return load_checkpoint(path), path
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            return load_checkpoint(path), path
        except CheckpointError as err:
            if is_main:
                warnings.warn(f"skipping unreadable checkpoint, falling back to the previous one: {err}", stacklevel=2)
    return None, None


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut by a crash mid-write
        return 1 << 62


class MetricsLog:
    """JSONL metrics on the main process (one line per logging step, flushed at once: nothing lost on a crash)."""

    def __init__(self, path: Path, enabled: bool, *, start_step: int):
        if enabled and path.exists():
            # Lines past the resumed checkpoint belong to steps that are about to be recomputed: drop them.
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= start_step]
            path.write_text("".join(line + "\n" for line in kept))
        self.file = open(path, "a", buffering=1) if enabled else None  # noqa: SIM115

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@contextmanager
def stop_on_signals():
    """Turn SIGTERM / SIGINT into a flag the loop checks at step boundaries (main thread only)."""
    flag = {"signal": None}

    def handler(signum, frame):
        flag["signal"] = signum

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no handlers, no graceful stop
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested config as `{"train.max_steps": 200, ...}` of plain values (TensorBoard's hyper-parameters)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, Enum):
            out[f"{prefix}{k}"] = v.value
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return out
