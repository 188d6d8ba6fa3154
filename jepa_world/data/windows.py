"""Windows over episodes, whatever stores them: the index, the items and the interface every episode dataset shares.

`EpisodeWindows` is the base of `jepa_world.data.episodes.EpisodeDataset` (our ``.npz`` files) and
`jepa_world.data.lerobot.LeRobotEpisodes` (LeRobot v3 folders). A subclass knows its storage and fills in
``episodes`` (each with ``num_frames``, ``actions.shape == (T, A)`` and ``states`` None or of shape ``(T+1, S)``),
and two readers: `_read` (rows of an episode's frames, actions or states) and `_source` (the file a window's frames
come from). Everything else lives here once: the window index, `__len__`, `window_rows`, `window_location`,
`episode_frames` and the items.

Items (a window of ``T = window`` frames taken every ``k = frameskip`` steps from a start ``s``)::

    x       float32 [T, 3, H, W]    frames s, s+k, ..., s+(T-1)k; in [0, 1] or ImageNet-normalised (uint8 if asked)
    actions float32 [T-1, A*k]      row j = actions s+jk .. s+jk+k-1 concatenated (an action block)
    states  float32 [T, S]          states at the frame indices (absent if the episodes have no states)

Starts are ``0, stride, 2*stride, ...`` while the window fits in the episode.

`hold_out_episodes` splits the windows by episode (the last k episodes held out, so no held-out frame is ever
trained on) into two `WindowSubset` views.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from jepa_world.data.transforms import frames_to_tensor, split_key


def first_nonfinite(x: np.ndarray) -> tuple[str, int] | None:
    """``("NaN" | "inf", row)`` of the first row of ``x`` with a non-finite value, else None."""
    bad = ~np.isfinite(x.reshape(x.shape[0], -1))
    if not bad.any():
        return None
    step = int(np.argmax(bad.any(axis=1)))
    return ("NaN" if np.isnan(x[step]).any() else "inf"), step


def nonfinite_message(x: np.ndarray, name: str, steps: np.ndarray | None = None) -> str | None:
    """``"<name> contain NaN at step t"`` for the first bad row (``steps`` maps rows to episode steps), else None."""
    found = first_nonfinite(x) if len(x) else None
    if found is None:
        return None
    kind, row = found
    step = row if steps is None else int(steps[row])
    return f"{name} contain {kind} at step {step}"


def check_window_args(*, window: int, frameskip: int, stride: int, image_size: int | None) -> None:
    """Raise ``ValueError`` naming the first of the window arguments that is not a positive int."""
    for name, value in (("window", window), ("frameskip", frameskip), ("stride", stride)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")


class WindowTooLongError(ValueError):
    """No episode is long enough for one window; the fields let a caller name its own settings (`data.num_frames`)."""

    def __init__(self, *, where: str, num_episodes: int, span: int, window: int, frameskip: int, longest: int):
        self.where, self.num_episodes, self.span = where, num_episodes, span
        self.window, self.frameskip, self.longest = window, frameskip, longest
        super().__init__(self.message("window", "frameskip"))

    def message(self, window_key: str, step_key: str) -> str:
        """The error in the caller's words: ``window_key`` / ``step_key`` name its window length and frame step."""
        return (
            f"{self.where}: none of the {self.num_episodes} episodes has the {self.span} frames that "
            f"{window_key}={self.window} frames taken {step_key}={self.frameskip} steps apart need "
            f"(({self.window} - 1) x {self.frameskip} + 1); the longest has {self.longest}: lower {window_key} or "
            f"{step_key}, or record longer episodes"
        )


class EpisodeWindows(Dataset):
    """The shared half of an episode dataset (see the module docstring); not built directly.

    Attributes:
        episodes: The episodes long enough for one window (set by `_index_windows`).
        num_skipped: Episodes too short for one window (skipped with a warning).
        action_dim, state_dim: Per-step dims A and S (``state_dim`` None without states).
    """

    window: int
    frameskip: int
    stride: int
    image_size: int | None
    normalize: bool
    uint8: bool

    # ------------------------------------------------------------------------------------------- for subclasses
    def _read(self, episode: int, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` of episode number ``episode``'s ``"frames"`` (uint8 [N, H, W, 3]), ``"actions"`` or
        ``"states"``."""
        raise NotImplementedError

    def _source(self, episode: int) -> Path:
        """The file that holds episode number ``episode``'s frames."""
        raise NotImplementedError

    def _index_windows(self, episodes: Sequence[Any], *, where: str) -> None:
        """Keep the episodes long enough for one window (warn about the others) and index every window's start.

        Args:
            episodes: All episodes, each with ``num_frames``.
            where: The dataset, as the messages name it.

        Raises:
            ValueError: No episode is long enough for one window.
        """
        span = (self.window - 1) * self.frameskip + 1  # frames one window covers
        self.episodes = [ep for ep in episodes if ep.num_frames >= span]
        self.num_skipped = len(episodes) - len(self.episodes)
        if not self.episodes:
            raise WindowTooLongError(
                where=where,
                num_episodes=len(episodes),
                span=span,
                window=self.window,
                frameskip=self.frameskip,
                longest=max((ep.num_frames for ep in episodes), default=0),
            )
        if self.num_skipped:
            warnings.warn(
                f"{self.num_skipped} of {len(episodes)} episodes in {where} are shorter than {span} frames; skipped",
                stacklevel=3,
            )
        starts = [np.arange(0, ep.num_frames - span + 1, self.stride, dtype=np.int64) for ep in self.episodes]
        self._episode_of = np.concatenate([np.full(len(s), e, dtype=np.int64) for e, s in enumerate(starts)])  # [N]
        self._start_of = np.concatenate(starts)  # [N] first frame of each window

    # ------------------------------------------------------------------------------------------------ interface
    @property
    def action_dim(self) -> int:
        return self.episodes[0].actions.shape[1]

    @property
    def state_dim(self) -> int | None:
        states = self.episodes[0].states
        return None if states is None else states.shape[1]

    def __len__(self) -> int:
        return len(self._start_of)

    def window_location(self, key: Any) -> tuple[Path, int]:
        """``(file holding the frames, first frame index within the episode)`` of the window behind a key."""
        index, _ = split_key(key, len(self))
        return self._source(int(self._episode_of[index])), int(self._start_of[index])

    def window_rows(self, key: Any) -> tuple[int, np.ndarray]:
        """``(episode number, frame rows [T])`` of the window behind a key (what a feature cache indexes)."""
        index, _ = split_key(key, len(self))
        start = int(self._start_of[index])
        return int(self._episode_of[index]), start + self.frameskip * np.arange(self.window)

    def window_episodes(self) -> np.ndarray:
        """The episode number of every window, ``int64 [len(self)]`` (a copy)."""
        return self._episode_of.copy()

    def episode_frames(self, episode: int) -> np.ndarray:
        """All frames ``uint8 [F, H, W, 3]`` of one episode (from RAM when the dataset holds them)."""
        return self._read(episode, "frames", np.arange(self.episodes[episode].num_frames))

    def episode_states(self, episode: int) -> np.ndarray:
        """All states ``float32 [F, S]`` of one episode, checked finite.

        Raises:
            ValueError: the episodes have no states.
        """
        if self.episodes[episode].states is None:
            raise ValueError(f"{self._source(episode).name} has no states")
        return self._checked(episode, "states", np.arange(self.episodes[episode].num_frames))

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        return self.item(key)

    def item(self, key: Any, *, frames: bool = True) -> dict[str, torch.Tensor]:
        """The item behind a key; `frames=False` leaves out (and does not read) its pixels.

        Keys are an int or ``(index, aug_seed)`` (no augmentation here, so ``aug_seed`` is ignored).
        """
        e, frame_rows = self.window_rows(key)  # [T]
        k, t = self.frameskip, self.window
        action_rows = np.arange(frame_rows[0], frame_rows[0] + k * (t - 1))  # [(T-1)*k]
        actions = self._checked(e, "actions", action_rows)  # [(T-1)*k, A]
        item = {"actions": torch.from_numpy(actions.reshape(t - 1, k * self.action_dim))}  # [T-1, A*k]
        if frames:
            item["x"] = self._frames_to_tensor(self._read(e, "frames", frame_rows))  # from [T, H, W, 3] uint8
        if self.episodes[e].states is not None:
            item["states"] = torch.from_numpy(self._checked(e, "states", frame_rows))  # [T, S]
        return item

    def _checked(self, episode: int, name: str, rows: np.ndarray) -> np.ndarray:
        """``float32`` rows of ``"actions"`` / ``"states"``, a fresh array, checked finite (the step is named)."""
        values = np.array(self._read(episode, name, rows), dtype=np.float32)
        problem = nonfinite_message(values, name, rows)
        if problem is not None:
            raise ValueError(f"{self._source(episode).name}: {problem}")
        return values

    def _frames_to_tensor(self, frames: np.ndarray) -> torch.Tensor:
        if self.uint8:
            return torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))  # [T, 3, H, W] uint8
        return frames_to_tensor(frames, normalize=self.normalize, image_size=self.image_size)


class WindowSubset(Dataset):
    """The windows of `dataset` at `indices`, keyed as the dataset is: ``i`` or ``(i, aug_seed)`` -> ``indices[i]``.

    Args:
        dataset: an episode dataset or a view of one (`FeatureWindows`), indexed by window.
        indices: window numbers of `dataset`, ``int [N]``.
    """

    def __init__(self, dataset: Dataset, indices: np.ndarray) -> None:
        self.dataset, self.indices = dataset, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Any) -> dict[str, torch.Tensor]:
        index, aug_seed = split_key(key, len(self))
        return self.dataset[(int(self.indices[index]), aug_seed)]


def hold_out_episodes(
    windows: EpisodeWindows, num_held_out: int, *, dataset: Dataset | None = None, where: str = "the episodes"
) -> tuple[WindowSubset, WindowSubset]:
    """Split the windows by episode: ``(windows of the first episodes, windows of the last num_held_out)``.

    Args:
        windows: the episode dataset whose episodes are split.
        num_held_out: episodes held out, from the end (``windows.episodes`` order, i.e. the episodes kept after
            the too-short ones were skipped).
        dataset: what the subsets view, window for window (default ``windows``; a `FeatureWindows` of it).
        where: the setting, as the error message names it.

    Raises:
        ValueError: ``num_held_out`` is not in ``1 .. len(windows.episodes) - 1``.
    """
    total = len(windows.episodes)
    if not 1 <= num_held_out < total:
        raise ValueError(f"{where}={num_held_out} must be between 1 and {total - 1}: the dataset has {total} episodes")
    held_out = windows.window_episodes() >= total - num_held_out  # [N]
    source = windows if dataset is None else dataset
    return WindowSubset(source, np.flatnonzero(~held_out)), WindowSubset(source, np.flatnonzero(held_out))
