"""Offline episodes on disk: the format and a lazy windowed dataset (collection: `jepa_world.envs.collect`).

On-disk format (version 1)
--------------------------
A dataset is a directory holding

- ``episode_{i:06d}.npz`` for i = 0, 1, ... (``numpy.savez`` / ``numpy.savez_compressed``; any subset of indices
  is fine, files are read in sorted name order), each with the arrays

  - ``frames``: ``uint8 [T+1, H, W, 3]`` RGB frames (required);
  - ``actions``: ``float32 [T, A]`` (required, finite);
  - ``states``: ``float32 [T+1, S]`` (optional: proprioception or the true state, finite);
  - ``env_states``: ``float64 [T+1, E]`` (optional, finite: the simulator state that restores row ``t`` exactly,
    `jepa_world.envs.field_envs.restore_env_state`; for evaluation only, never read by ``EpisodeDataset``).

  Frames come first in time: action ``t`` moves frame ``t`` to frame ``t+1``, and ``states[t]`` is the state
  shown in ``frames[t]``. ``T >= 1``. Episodes of one dataset may differ in ``T`` but must agree on ``A``, on
  whether ``states`` is present (and ``S``), and on ``H, W`` unless the dataset resizes (``image_size``).
- ``metadata.json`` at the root, a JSON object with at least ``format_version`` (1), ``env_name``,
  ``image_size``, ``action_dim``, ``state_dim`` (null without states), ``num_episodes``, ``steps`` (T per episode),
  ``policy`` and ``seed``. ``jepa_world.envs.collect.collect_episodes`` also writes ``episode_lengths``, ``env_kwargs``,
  ``policy_kwargs``, ``actions_note``, ``env_id`` (the gymnasium id), ``state_key`` and ``env_state`` (with
``env_states``: their layout and how to restore them, ``EnvStateSpec.metadata``; else null). The dataset only
requires the episode files; ``read_metadata`` loads this. Folders written before ``env_states`` stay readable.

To store your own robot's data, call ``write_episode(root / episode_filename(i), frames=..., actions=...,
states=...)`` per episode (it validates shapes and finiteness) and ``write_metadata(root, {...})`` once.
Uncompressed files (``compress=False``) are memory-mapped by ``EpisodeDataset``, so a window reads only its own
frames; compressed ones are decompressed whole per item (fine for short, small episodes).

Dataset items (``EpisodeDataset``)
----------------------------------
A window of ``T = window`` frames taken every ``frameskip`` steps from a start ``s``::

    x       float32 [T, 3, H, W]    frames s, s+k, ..., s+(T-1)k; in [0, 1] or ImageNet-normalised
    actions float32 [T-1, A*k]      row j = actions s+jk .. s+jk+k-1 concatenated (an action block)
    states  float32 [T, S]          states at the frame indices (absent if the episodes have no states)

with ``k = frameskip``; starts are ``0, stride, 2*stride, ...`` while the window fits in the episode.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jepa_world.atomic import atomic_write, atomic_write_text
from jepa_world.data.npz import NpzMember, read_npz_header, read_rows
from jepa_world.data.windows import EpisodeWindows, check_window_args, nonfinite_message

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
EPISODE_GLOB = "episode_*.npz"
_FRAME_KEYS = ("frames", "observations", "obs", "images", "pixels")


def episode_filename(index: int) -> str:
    """File name of episode ``index`` (``episode_000012.npz``)."""
    return f"episode_{index:06d}.npz"


# ---------------------------------------------------------------------------------------------------------- validation
def _check_shapes(
    frames_shape: tuple[int, ...],
    frames_dtype: np.dtype,
    actions_shape: tuple[int, ...] | None,
    states_shape: tuple[int, ...] | None,
) -> str | None:
    """The first format violation of an episode's array shapes, or None."""
    if len(frames_shape) != 4 or frames_shape[-1] != 3 or frames_dtype != np.uint8:
        return f"frames must be uint8 [T+1, H, W, 3], got {frames_dtype} {tuple(frames_shape)}"
    n = frames_shape[0]
    if n < 2:
        return f"frames has {n} steps; an episode needs at least 2 frames (1 action)"
    if actions_shape is None:
        return "actions are missing"
    if len(actions_shape) != 2:
        return f"actions must be 2-D [T, A], got shape {tuple(actions_shape)}"
    if actions_shape[0] != n - 1:
        return f"frames has {n} steps but actions has {actions_shape[0]}; expected {n - 1}"
    if states_shape is not None:
        if len(states_shape) != 2:
            return f"states must be 2-D [T+1, S], got shape {tuple(states_shape)}"
        if states_shape[0] != n:
            return f"frames has {n} steps but states has {states_shape[0]}; expected {n}"
    return None


def validate_episode(
    *,
    frames: np.ndarray,
    actions: np.ndarray,
    states: np.ndarray | None = None,
    name: str = "episode",
    env_states: np.ndarray | None = None,
) -> None:
    """Check one episode against the format; raise ``ValueError("<name>: <problem>")`` on the first violation."""
    if env_states is not None:
        env_states = np.asarray(env_states)
        n = np.shape(frames)[0]
        if env_states.ndim != 2 or env_states.shape[0] != n:
            raise ValueError(f"{name}: env_states must be [T+1, E] = [{n}, E], got shape {env_states.shape}")
        if not np.issubdtype(env_states.dtype, np.number):
            raise ValueError(f"{name}: env_states must be numeric, got dtype {env_states.dtype}")
        problem = nonfinite_message(env_states.astype(np.float64), "env_states")
        if problem is not None:
            raise ValueError(f"{name}: {problem}")
    frames = np.asarray(frames)
    actions = np.asarray(actions)
    states = None if states is None else np.asarray(states)
    problem = _check_shapes(frames.shape, frames.dtype, actions.shape, None if states is None else states.shape)
    if problem is None and not np.issubdtype(actions.dtype, np.number):
        problem = f"actions must be numeric, got dtype {actions.dtype}"
    if problem is None and states is not None and not np.issubdtype(states.dtype, np.number):
        problem = f"states must be numeric, got dtype {states.dtype}"
    if problem is None:
        problem = nonfinite_message(actions.astype(np.float64), "actions")
    if problem is None and states is not None:
        problem = nonfinite_message(states.astype(np.float64), "states")
    if problem is not None:
        raise ValueError(f"{name}: {problem}")


# ---------------------------------------------------------------------------------------------------------- writing
def write_episode(
    path: str | Path,
    *,
    frames: np.ndarray,
    actions: np.ndarray,
    states: np.ndarray | None = None,
    compress: bool = True,
    env_states: np.ndarray | None = None,
) -> Path:
    """Validate and write one episode file.

    Args:
        path: Target ``.npz`` path (conventionally ``root / episode_filename(i)``).
        frames: ``uint8 [T+1, H, W, 3]``.
        actions: ``[T, A]`` finite, stored as float32.
        states: Optional ``[T+1, S]`` finite, stored as float32.
        compress: ``savez_compressed`` (small files) or ``savez`` (memory-mappable windows).
        env_states: Optional ``[T+1, E]`` finite simulator states (restore a row exactly), stored as float64.

    Raises:
        ValueError: Naming the file and the problem, e.g. ``"episode_000003.npz: actions contain NaN at step 5"``.
    """
    path = Path(path)
    validate_episode(frames=frames, actions=actions, states=states, name=path.name, env_states=env_states)
    arrays = {"frames": np.ascontiguousarray(frames), "actions": np.asarray(actions, dtype=np.float32)}
    if states is not None:
        arrays["states"] = np.asarray(states, dtype=np.float32)
    if env_states is not None:
        arrays["env_states"] = np.asarray(env_states, dtype=np.float64)
    save = np.savez_compressed if compress else np.savez
    # Atomic: a full disk or a kill leaves no truncated episode (a file object keeps numpy from adding ".npz").
    return atomic_write(path, lambda fh: save(fh, **arrays))


def write_metadata(root: str | Path, metadata: dict[str, Any]) -> Path:
    """Write ``root/metadata.json`` (``format_version`` is filled in when missing)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = {"format_version": FORMAT_VERSION, **metadata}
    return atomic_write_text(root / METADATA_FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_metadata(root: str | Path) -> dict[str, Any] | None:
    """``root/metadata.json`` as a dict, or None when absent."""
    path = Path(root) / METADATA_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def read_env_states(path: str | Path) -> np.ndarray | None:
    """The ``env_states`` ``float64 [T+1, E]`` of one episode file, or None when it has none (older folders)."""
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data["env_states"], dtype=np.float64) if "env_states" in data.files else None


def _squeeze_batch(x: np.ndarray, ndim: int, name: str, path: Path) -> np.ndarray:
    if x.ndim == ndim + 1:
        if x.shape[0] != 1:
            raise ValueError(f"{path.name}: {name} has a batch of {x.shape[0]} trajectories; expected 1")
        x = x[0]
    if x.ndim != ndim:
        raise ValueError(f"{path.name}: {name} must have {ndim} dims (or a batch dim of 1), got shape {x.shape}")
    return x


def load_npz_trajectory(path: str | Path, *, angle_dims: Sequence[int] = ()) -> dict[str, np.ndarray | None]:
    """Load one trajectory from our episode format or a robot-style ``.npz``.

    Accepted layouts: our ``frames`` / ``actions`` / ``states`` episode files, and files such as the Franka sample
    (``observations uint8 [1, T, H, W, 3]``, ``states float32 [1, T, S]``, no actions). Frames are read from the
    first of ``frames``, ``observations``, ``obs``, ``images``, ``pixels``; a leading batch dim of 1 is squeezed
    from every array and channel-first frames ``[T, 3, H, W]`` are transposed.

    When ``actions`` is absent but ``states`` is present, actions are DERIVED as state differences,
    ``actions[t] = states[t+1] - states[t]`` (the delta-pose actions of V-JEPA 2-AC when states are end-effector
    poses). Differences of the dims in ``angle_dims`` are wrapped to ``[-pi, pi)`` so an Euler angle crossing
    +-pi gives a small delta. Without actions and states, ``actions`` is None.

    Returns:
        ``{"frames": uint8 [T, H, W, 3], "states": float32 [T, S] | None, "actions": float32 [T-1, A] | None}``.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        frame_key = next((k for k in _FRAME_KEYS if k in keys), None)
        if frame_key is None:
            raise ValueError(f"{path.name}: no frames; expected one of {list(_FRAME_KEYS)}, found {sorted(keys)}")
        frames = _squeeze_batch(np.asarray(data[frame_key]), 4, frame_key, path)
        states = _squeeze_batch(np.asarray(data["states"]), 2, "states", path) if "states" in keys else None
        actions = _squeeze_batch(np.asarray(data["actions"]), 2, "actions", path) if "actions" in keys else None
    if frames.shape[-1] != 3 and frames.shape[1] == 3:
        frames = np.ascontiguousarray(frames.transpose(0, 2, 3, 1))
    if states is not None:
        states = states.astype(np.float32)
        if actions is None:
            deltas = np.diff(states.astype(np.float64), axis=0)
            for d in angle_dims:
                deltas[:, d] = (deltas[:, d] + math.pi) % (2 * math.pi) - math.pi
            actions = deltas.astype(np.float32)
    if actions is not None:
        actions = actions.astype(np.float32)
    validate_episode(
        frames=frames,
        actions=actions if actions is not None else np.zeros((frames.shape[0] - 1, 0), np.float32),
        states=states,
        name=path.name,
    )
    return {"frames": frames, "states": states, "actions": actions}


@dataclass(frozen=True)
class _Episode:
    path: Path
    num_frames: int
    frames: NpzMember
    actions: NpzMember
    states: NpzMember | None


class EpisodeDataset(EpisodeWindows):
    """Lazy windows over a directory of episodes (format in the module docstring).

    Only the ``.npz`` headers are read at construction; every item opens its episode file and reads its window
    (memory-mapped for uncompressed files). Nothing large is cached, so DataLoader workers stay small, unless
    ``in_memory``: then every episode is read once at construction and items are sliced from RAM (uint8; 4,000
    Two-Rooms episodes of 17 frames at 64 px take 0.8 GB), which removes the per-item file reads that otherwise
    dominate a small model's training step.

    Args:
        root: Dataset directory.
        window: Frames per item T (>= 1).
        frameskip: Steps between consecutive frames k; the k actions in between are concatenated.
        stride: Step between window starts within an episode.
        image_size: Resize frames to this square size (bilinear, antialiased); None keeps the stored size.
        normalize: ImageNet mean/std normalisation of ``x``; False leaves it in [0, 1].
        in_memory: Read all episodes into RAM at construction (see above).
        uint8: Items' ``x`` stay ``uint8 [T, 3, H, W]`` (no normalisation) when every episode is stored at
            ``image_size`` (else float as usual; the ``uint8`` attribute tells which): batches collate 4x less data
            and are converted once with ``transforms.uint8_to_float``.

    Items, keys and the window interface: `jepa_world.data.windows.EpisodeWindows`.

    Attributes:
        num_skipped: Episodes too short for one window (skipped with a warning).
        action_dim, state_dim: Per-step dims A and S (``state_dim`` None without states).
    """

    def __init__(
        self,
        *,
        root: str | Path,
        window: int = 8,
        frameskip: int = 1,
        stride: int = 1,
        image_size: int | None = None,
        normalize: bool = True,
        in_memory: bool = False,
        uint8: bool = False,
    ) -> None:
        check_window_args(window=window, frameskip=frameskip, stride=stride, image_size=image_size)
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"root={str(self.root)!r} is not a directory")
        files = sorted(self.root.glob(EPISODE_GLOB))
        if not files:
            raise ValueError(f"root={str(self.root)!r} holds no {EPISODE_GLOB} files")
        if (self.root / ".collect.json").exists() and not (self.root / METADATA_FILE).exists():
            # `jepa-world collect` writes metadata.json last: without it the collection was interrupted
            raise ValueError(f"root={str(self.root)!r} holds an interrupted collection ({len(files)} episodes, no "
                             f"{METADATA_FILE}): rerun the same `jepa-world collect` to finish it")  # fmt: skip
        self.window, self.frameskip, self.stride = window, frameskip, stride
        self.image_size, self.normalize, self.uint8 = image_size, normalize, uint8
        self.metadata = read_metadata(self.root)
        self._index_windows([self._inspect(path) for path in files], where=f"root={str(self.root)!r}")
        self._check_consistent()
        if uint8 and image_size is not None:
            self.uint8 = all(ep.frames.shape[1:3] == (image_size, image_size) for ep in self.episodes)
        # {"frames", "actions"(, "states")} arrays of every episode when in_memory; None reads windows from the files.
        self._arrays: list[dict[str, np.ndarray]] | None = None
        if in_memory:
            self._arrays = [self._load_all(ep) for ep in self.episodes]
        self._check_finite()

    def _check_finite(self) -> None:
        """Every episode's actions and states are finite (checked once here, not only in the windows drawn)."""
        for i, ep in enumerate(self.episodes):
            names = ("actions",) if ep.states is None else ("actions", "states")
            if self._arrays is not None:
                arrays = self._arrays[i]
            else:
                with np.load(ep.path, allow_pickle=False) as data:  # reads these members only, not the frames
                    arrays = {name: np.asarray(data[name]) for name in names}
            for name in names:
                problem = nonfinite_message(arrays[name], name)
                if problem is not None:
                    raise ValueError(f"{ep.path.name}: {problem}")

    @staticmethod
    def _load_all(ep: _Episode) -> dict[str, np.ndarray]:
        names = ("frames", "actions") if ep.states is None else ("frames", "actions", "states")
        with np.load(ep.path, allow_pickle=False) as data:
            return {name: np.asarray(data[name]) for name in names}

    def _read(self, episode: int, name: str, rows: np.ndarray) -> np.ndarray:
        ep = self.episodes[episode]
        if self._arrays is not None:
            return self._arrays[episode][name][rows]
        return read_rows(ep.path, name, getattr(ep, name), rows)

    def _source(self, episode: int) -> Path:
        return self.episodes[episode].path

    @staticmethod
    def _inspect(path: Path) -> _Episode:
        try:
            members = read_npz_header(path)
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            raise ValueError(f"{path.name}: not a readable .npz file ({err})") from err
        if "frames" not in members:
            raise ValueError(f"{path.name}: frames are missing (found {sorted(members)})")
        frames, actions, states = members["frames"], members.get("actions"), members.get("states")
        problem = _check_shapes(
            frames.shape,
            frames.dtype,
            None if actions is None else actions.shape,
            None if states is None else states.shape,
        )
        if problem is not None:
            raise ValueError(f"{path.name}: {problem}")
        return _Episode(path, frames.shape[0], frames, actions, states)

    def _check_consistent(self) -> None:
        first = self.episodes[0]
        for ep in self.episodes[1:]:
            if ep.actions.shape[1] != first.actions.shape[1]:
                raise ValueError(
                    f"{ep.path.name}: action dim {ep.actions.shape[1]} differs from {first.path.name}'s "
                    f"{first.actions.shape[1]}"
                )
            if (ep.states is None) != (first.states is None) or (
                ep.states is not None and ep.states.shape[1] != first.states.shape[1]
            ):
                raise ValueError(f"{ep.path.name}: states differ in presence or size from {first.path.name}'s")
            if self.image_size is None and ep.frames.shape[1:] != first.frames.shape[1:]:
                raise ValueError(
                    f"{ep.path.name}: frame shape {ep.frames.shape[1:]} differs from {first.path.name}'s "
                    f"{first.frames.shape[1:]}; pass image_size to resize"
                )
