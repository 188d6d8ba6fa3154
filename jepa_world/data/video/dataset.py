"""Video clips for V-JEPA-style pretraining: clip sampling, clip-consistent augmentation, bad-file skipping.

Files are opened through `files.open_video` (decord, PyAV per file when decord fails).

Clip sampling (`clip_indices`, the V-JEPA convention): a clip is ``frames_per_clip`` frames ``frame_step`` apart;
with a target ``fps`` the step is ``round(video_fps / fps)`` per video. The valid window starts ``[0, N - span]``
(``span = (frames_per_clip - 1) * frame_step + 1``) are split into ``clips_per_video`` equal parts, one per clip; a
clip's window starts at a random point of its part (``random_clip``) or at its middle. Frames past the end of a
short video repeat the last frame.

Items. The dataset has ``sum(L_k) * clips_per_video`` items, where ``L_k`` is index k's share of the videos: its size
``n_k`` without weights, else ``round(sum(n) * w_k / sum(w))``. Item ``i`` is clip ``i % clips_per_video`` of slot
``i // clips_per_video``; a slot of index k covers the stratum ``[j n_k / L_k, (j + 1) n_k / L_k)`` of its videos and
picks one of them from ``aug_seed`` (so an up-weighted index repeats videos, a down-weighted one visits a different
subset every epoch). Everything random (video in the stratum, window, crop, flip) comes from the key's ``aug_seed``
(`jepa_world.data.transforms.split_key`), so a key maps to the same clip in any process, worker or resumed run.

Bad files (missing, not a regular file, empty, unreadable, truncated, no video stream, no frames) are logged once
per path per process on the ``jepa_world.data`` logger and replaced by the next video of the same index,
deterministically; ``"skipped"`` counts the files tried in vain. A RuntimeError stops the run when
``ceil(max_skip_fraction * n_k)`` consecutive files fail for one item, or when more than ``max_skip_fraction`` of the
files opened by this process (after ``min(number of videos, 200)`` of them) failed.

Shapes: readers return ``uint8 [T, H, W, 3]``; the crop and flip run on ``uint8 [T, 3, H, W]``; items are
``{"x": [3, T, S, S] float32 ImageNet-normalised, "skipped": int, "video_index": int, "frame_indices": [T] int64}``
and ``x`` feeds the tubelet encoder. References: Bardes et al. 2024 (V-JEPA), Assran et al. 2025 (V-JEPA 2); data
conventions of the V-JEPA releases.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from jepa_world.data.index import IndexEntry, read_index, split_index_spec
from jepa_world.data.transforms import apply_seeded, normalize_clip, split_key
from jepa_world.data.video.files import READERS, VideoReadError, one_line
from jepa_world.data.video.readers import preflight, reader_order, worker_threads

logger = logging.getLogger("jepa_world.data")

_SEED_MASK = (1 << 64) - 1
# The failure-rate check waits for this many opened files (or all of them in a smaller index).
_MIN_ATTEMPTS_FOR_RATE = 200


def frame_step_for(video_fps: float, *, frame_step: int, fps: float | None) -> int:
    """Frame step for one video: ``round(video_fps / fps)`` (>= 1) with a target ``fps``, else ``frame_step``.

    A video whose frame rate is unknown (``video_fps <= 0``) uses ``frame_step``.
    """
    if fps is None or fps <= 0 or not video_fps > 0:
        return frame_step
    return max(1, round(video_fps / fps))


def clip_indices(
    num_frames: int,
    *,
    frames_per_clip: int,
    frame_step: int,
    clip: int = 0,
    clips_per_video: int = 1,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Frame indices of one clip (see the module docstring).

    Args:
        num_frames: Frames in the video ``N`` (>= 1).
        frames_per_clip: Clip length ``T``.
        frame_step: Distance between sampled frames.
        clip: Which of the ``clips_per_video`` windows, ``0 <= clip < clips_per_video``.
        clips_per_video: Number of windows the video is split into.
        rng: Draws the window start within the clip's part; None takes the middle of the part.

    Returns:
        ``[T]`` int64 indices in ``[0, N)``, non-decreasing; past the end of a short video the last frame repeats.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not 0 <= clip < clips_per_video:
        raise ValueError(f"clip={clip} out of range for clips_per_video={clips_per_video}")
    span = (frames_per_clip - 1) * frame_step + 1
    num_starts = max(0, num_frames - span) + 1
    lo = min(clip * num_starts // clips_per_video, num_starts - 1)
    hi = min(max(lo, (clip + 1) * num_starts // clips_per_video - 1), num_starts - 1)
    start = int(rng.integers(lo, hi + 1)) if rng is not None else (lo + hi) // 2
    return np.minimum(start + frame_step * np.arange(frames_per_clip, dtype=np.int64), num_frames - 1)


def make_clip_transform(
    image_size: int,
    *,
    train: bool = True,
    crop_scale: tuple[float, float] = (0.3, 1.0),
    crop_aspect: tuple[float, float] = (0.75, 1.35),
    hflip: bool = True,
) -> v2.Compose:
    """Spatial clip transform: ``uint8 [T, 3, H, W]`` video -> ``uint8 [T, 3, S, S]`` (then `normalize_clip`).

    Train: random resized crop (V-JEPA ranges by default) and horizontal flip; eval: short side to ``S``, center
    crop. Pass the input as a `torchvision.tv_tensors.Video`: each random draw is made once per call, so the same crop
    and flip apply to every frame. Wrap calls in `apply_seeded`.
    """
    if train:
        ops: list[Any] = [v2.RandomResizedCrop(image_size, scale=crop_scale, ratio=crop_aspect, antialias=True)]
        if hflip:
            ops.append(v2.RandomHorizontalFlip())
    else:
        ops = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose(ops)


# --------------------------------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------------------------------
class VideoClipDataset(Dataset):
    """Clips from one or several video indexes, augmented consistently across frames (see the module docstring).

    Args:
        index: A folder, a video file, a list file or a V-JEPA CSV (`jepa_world.data.index`); several as a
            comma-separated string or a list.
        index_weights: Sampling weight per index (>= 0, not all 0); None: every video once per epoch.
        frames_per_clip: Frames ``T`` per clip.
        frame_step: Distance between sampled frames (V-JEPA: 4).
        fps: Target frame rate; when set, each video's step is ``round(video_fps / fps)`` instead of ``frame_step``.
        clips_per_video: Items per video per epoch, each from its own part of the video.
        random_clip: Random window start within the clip's part; False: the middle of the part.
        image_size: Output side ``S``.
        train: Random video-in-stratum, window, crop and flip seeded by the key's ``aug_seed``; False: deterministic
            (first video of the stratum, middle windows, resize + center crop).
        crop_scale: Area range of the random resized crop (V-JEPA: (0.3, 1.0)).
        crop_aspect: Aspect-ratio range of the crop (V-JEPA: (0.75, 1.35)).
        hflip: Random horizontal flip (train only).
        reader: auto (decord, falling back to PyAV per file) | decord | pyav.
        decode_short_side: Resize frames on decode so their short side is this (never upsampling); None:
            ``ceil(image_size * 8 / 7)`` (256 for 224); 0: decode at native size.
        max_skip_fraction: Failure threshold (module docstring).

    Raises:
        FileNotFoundError: An index does not exist.
        ValueError: An index lists no videos, or an argument is out of range.
        ImportError: The requested reader is not installed.
    """

    def __init__(
        self,
        *,
        index: str | Path | Sequence[str | Path],
        index_weights: Sequence[float] | None = None,
        frames_per_clip: int = 16,
        frame_step: int = 4,
        fps: float | None = None,
        clips_per_video: int = 1,
        random_clip: bool = True,
        image_size: int = 224,
        train: bool = True,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        crop_aspect: tuple[float, float] = (0.75, 1.35),
        hflip: bool = True,
        reader: str = "auto",
        decode_short_side: int | None = None,
        max_skip_fraction: float = 0.5,
    ) -> None:
        for name, value in (("frames_per_clip", frames_per_clip), ("frame_step", frame_step)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if clips_per_video < 1:
            raise ValueError(f"clips_per_video must be >= 1, got {clips_per_video}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be > 0 or None, got {fps}")
        if len(crop_scale) != 2 or not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {crop_scale}")
        if len(crop_aspect) != 2 or not 0.0 < crop_aspect[0] <= crop_aspect[1]:
            raise ValueError(f"crop_aspect must be (low, high) with 0 < low <= high, got {crop_aspect}")
        if not 0.0 < max_skip_fraction <= 1.0:
            raise ValueError(f"max_skip_fraction must be in (0, 1], got {max_skip_fraction}")
        if decode_short_side is not None and decode_short_side < 0:
            raise ValueError(f"decode_short_side must be >= 0 or None, got {decode_short_side}")
        self._order = reader_order(reader)  # fails early if the reader is not installed
        self.reader = reader

        self.index_paths = split_index_spec(index)
        sources = [read_index(p) for p in self.index_paths]
        if index_weights is not None:
            weights = [float(w) for w in index_weights]
            if len(weights) != len(sources):
                raise ValueError(
                    f"index_weights={list(index_weights)} has {len(weights)} entries for {len(sources)} indexes"
                )
            if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
                raise ValueError(f"index_weights={list(index_weights)} must be >= 0 and not all 0")
        self.index_weights = None if index_weights is None else weights
        self.entries: list[IndexEntry] = [e for src in sources for e in src]
        self._sizes = [len(src) for src in sources]
        self._starts = np.cumsum([0, *self._sizes[:-1]]).tolist()  # first entry of each index
        total = sum(self._sizes)
        if self.index_weights is None:
            shares = list(self._sizes)
        else:
            wsum = sum(self.index_weights)
            shares = [0 if w == 0 else max(1, round(total * w / wsum)) for w in self.index_weights]
        self._shares = shares
        self._share_starts = np.cumsum([0, *shares[:-1]]).tolist()
        self._num_slots = sum(shares)

        self.frames_per_clip, self.frame_step, self.fps = frames_per_clip, frame_step, fps
        self.clips_per_video, self.random_clip = clips_per_video, random_clip
        self.image_size, self.train = image_size, train
        self.decode_short_side = math.ceil(image_size * 8 / 7) if decode_short_side is None else decode_short_side
        self.max_skip_fraction = max_skip_fraction
        self._max_tries = [max(1, math.ceil(max_skip_fraction * n)) for n in self._sizes]
        self._min_attempts = min(len(self.entries), _MIN_ATTEMPTS_FOR_RATE)
        self.transform = make_clip_transform(
            image_size,
            train=train,
            crop_scale=(float(crop_scale[0]), float(crop_scale[1])),
            crop_aspect=(float(crop_aspect[0]), float(crop_aspect[1])),
            hflip=hflip,
        )
        # Per-process state (each DataLoader worker has its own copy).
        self._warned: set[Path] = set()
        self._decord_failed: set[Path] = set()
        self._attempts = 0
        self._failures = 0

    def __len__(self) -> int:
        return self._num_slots * self.clips_per_video

    def _rng(self, aug_seed: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([aug_seed & _SEED_MASK, stream])

    def locate(self, item: int, aug_seed: int) -> tuple[int, int, int]:
        """``(source, entry, clip)`` for item ``item``: which index, which entry of `entries`, which window."""
        slot, clip = divmod(item, self.clips_per_video)
        source = bisect.bisect_right(self._share_starts, slot) - 1
        j = slot - self._share_starts[source]
        n, share = self._sizes[source], self._shares[source]
        lo = j * n // share
        hi = max(lo + 1, (j + 1) * n // share)
        if hi - lo > 1 and self.train:
            lo += int(self._rng(aug_seed, 1).integers(hi - lo))
        return source, self._starts[source] + lo, clip

    def _read_clip(self, entry: IndexEntry, clip: int, aug_seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode one clip, trying the readers in order (decord failures fall back to PyAV at open or decode)."""
        path = entry.path
        preflight(path)
        order = [n for n in self._order if not (n == "decord" and path in self._decord_failed)] or self._order
        native = (entry.width, entry.height) if entry.width and entry.height else None
        errors = []
        for name in order:
            try:
                with READERS[name](
                    path, short_side=self.decode_short_side, num_threads=worker_threads(), native_size=native
                ) as video:
                    step = frame_step_for(video.fps, frame_step=self.frame_step, fps=self.fps)
                    # A fresh generator per attempt: the window does not depend on which reader succeeded.
                    rng = self._rng(aug_seed, 2) if self.train and self.random_clip else None
                    idx = clip_indices(
                        video.num_frames,
                        frames_per_clip=self.frames_per_clip,
                        frame_step=step,
                        clip=clip,
                        clips_per_video=self.clips_per_video,
                        rng=rng,
                    )
                    frames = video.get(idx.tolist())
                return frames, idx
            except Exception as err:
                errors.append(f"{name}: {type(err).__name__}: {one_line(err)}")
                if name == "decord" and len(self._order) > 1:
                    self._decord_failed.add(path)
        raise VideoReadError("; ".join(errors))

    def _fail(self, path: Path, reason: str) -> None:
        self._failures += 1
        if path not in self._warned:
            self._warned.add(path)
            logger.warning("skipping unreadable video %s (%s)", path, reason)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        item, aug_seed = split_key(key, len(self))
        source, first, clip = self.locate(item, aug_seed)
        start, n = self._starts[source], self._sizes[source]
        first_failure = ""
        for skipped in range(self._max_tries[source]):
            entry_index = start + (first - start + skipped) % n
            entry = self.entries[entry_index]
            self._attempts += 1
            try:
                frames, idx = self._read_clip(entry, clip, aug_seed)
            except Exception as err:
                reason = f"{type(err).__name__}: {one_line(err)}"
                self._fail(entry.path, reason)
                first_failure = first_failure or f"{entry.path} ({reason})"
                if self._attempts >= self._min_attempts and self._failures > self.max_skip_fraction * self._attempts:
                    raise RuntimeError(
                        f"{self._failures} of the {self._attempts} videos this process opened failed to decode, "
                        f"more than data.max_skip_fraction={self.max_skip_fraction} (index: "
                        f"{', '.join(map(str, self.index_paths))}); check the index paths and files "
                        f"(`jepa-world index DIR` lists unreadable files); first failure: {first_failure}"
                    ) from None
                continue
            video = tv_tensors.Video(torch.from_numpy(frames).permute(0, 3, 1, 2))  # [T, 3, H, W] uint8
            clip_u8 = apply_seeded(self.transform, video, aug_seed) if self.train else self.transform(video)
            return {
                "x": normalize_clip(clip_u8),  # [3, T, S, S]
                "skipped": skipped,
                "video_index": entry_index,
                "frame_indices": torch.from_numpy(idx),
            }
        raise RuntimeError(
            f"{self._max_tries[source]} consecutive videos from item {item} (entry {first} of {len(self.entries)}) "
            f"failed to decode (data.max_skip_fraction={self.max_skip_fraction}; index: {self.index_paths[source]}); "
            f"first failure: {first_failure}"
        )
