"""Video clips for V-JEPA-style pretraining: readers (decord, PyAV), clip sampling, clip-consistent augmentation.

Readers. A `VideoReader` is an open video with ``num_frames``, ``fps`` and ``get(indices) -> uint8 [T, H, W, 3]``.
`DecordReader` (fast random access; no AV1, no aarch64/macOS wheels) is the default; `PyAVReader` (FFmpeg 8 bundled
with ``av``: AV1, webm, any platform) is the fallback. With ``reader="auto"`` each file is tried with decord, then
PyAV (at open or at decode); a file decord failed on goes straight to PyAV afterwards. Both readers index frames
exactly (decord and `PyAVReader` demux the whole file once at open to build the presentation-order frame table, which
is also the per-file sanity check: a truncated container fails there, not in a decode loop), decode only from the
keyframe before the first wanted frame to the last wanted frame, and resize on decode when asked
(``short_side``; never upsampling). At native size both return the same pixels. A truncated mp4 whose header comes
first lists more frames than it holds: PyAV rejects it at open, decord reads the frames before the cut and fails on a
window past it (then PyAV is tried and rejects it).

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
conventions of the V-JEPA releases (facts sheet section 7).
"""

from __future__ import annotations

import bisect
import importlib.util
import logging
import math
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info
from torchvision import tv_tensors
from torchvision.transforms import v2

from jepa_world.data.index import VideoEntry, read_index, split_index_spec
from jepa_world.data.transforms import IMAGENET_MEAN, IMAGENET_STD, apply_seeded, split_key

logger = logging.getLogger("jepa_world.data")

READER_CHOICES: tuple[str, ...] = ("auto", "decord", "pyav")
_SEED_MASK = (1 << 64) - 1
# The failure-rate check waits for this many opened files (or all of them in a smaller index).
_MIN_ATTEMPTS_FOR_RATE = 200
_decord_quieted = False


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------
def reader_available(name: str) -> bool:
    """Whether the Python package behind reader ``name`` ("decord" or "pyav") is installed."""
    module = {"decord": "decord", "pyav": "av"}.get(name)
    if module is None:
        raise ValueError(f"reader={name!r}; expected decord or pyav")
    return importlib.util.find_spec(module) is not None


def reader_order(reader: str) -> list[str]:
    """Reader names to try, in order, for ``reader`` = auto | decord | pyav.

    Raises:
        ValueError: If ``reader`` is not a known choice.
        ImportError: If the forced reader, or for ``auto`` every reader, is not installed.
    """
    if reader not in READER_CHOICES:
        raise ValueError(f"reader={reader!r}; expected one of {', '.join(READER_CHOICES)}")
    names = ["decord", "pyav"] if reader == "auto" else [reader]
    found = [n for n in names if reader_available(n)]
    if not found:
        wanted = "decord or av" if reader == "auto" else {"decord": "decord", "pyav": "av"}[reader]
        raise ImportError(f"reader={reader!r} needs the {wanted} package: pip install 'jepa_world[video]'")
    return found


def resized_size(width: int, height: int, short_side: int | None) -> tuple[int, int] | None:
    """``(width, height)`` with the short side scaled to ``short_side`` (aspect kept), or None to keep the size.

    None when ``short_side`` is None or 0, or the video is not larger than that (never upsample).
    """
    if not short_side or min(width, height) <= short_side:
        return None
    scale = short_side / min(width, height)
    if width <= height:
        return short_side, max(1, round(height * scale))
    return max(1, round(width * scale)), short_side


def _check_indices(indices: Sequence[int], num_frames: int) -> list[int]:
    wanted = [int(i) for i in indices]
    if not wanted:
        raise ValueError("indices is empty")
    bad = [i for i in wanted if not 0 <= i < num_frames]
    if bad:
        raise IndexError(f"frame indices {bad[:5]} out of range for a video of {num_frames} frames")
    return wanted


def _probe_size_pyav(path: str | Path) -> tuple[int, int] | None:
    """Native ``(width, height)`` from the container header (no decoding), or None if PyAV cannot tell."""
    if not reader_available("pyav"):
        return None
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                return None
            cc = container.streams.video[0].codec_context
            return (cc.width, cc.height) if cc.width and cc.height else None
    except Exception:  # the reader that opens the file next reports the real problem
        return None


def _preflight(path: Path) -> None:
    """Cheap checks before any decoder sees the file (a FIFO or device would block FFmpeg forever)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"not a regular file: {path}")
    if st.st_size == 0:
        raise ValueError(f"empty file (0 bytes): {path}")


def _worker_threads() -> int:
    """Decoder threads: 1 inside DataLoader workers (they already fill the cores), FFmpeg's choice otherwise."""
    return 1 if get_worker_info() is not None else 0


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


_NORM_SCALE = (1.0 / (255.0 * torch.tensor(IMAGENET_STD))).view(3, 1, 1, 1)
_NORM_SHIFT = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(3, 1, 1, 1)


def normalize_clip(clip: torch.Tensor) -> torch.Tensor:
    """``uint8 [T, 3, S, S]`` -> ``[3, T, S, S]`` float32, ImageNet-normalised (what the tubelet encoder takes).

    One copy into a fresh float tensor, then in-place scale and shift: about 5x faster than ToDtype + Normalize
    on the channels-last tensors the crop returns.
    """
    x = torch.empty((clip.shape[1], clip.shape[0], *clip.shape[2:]), dtype=torch.float32)
    x.copy_(clip.as_subclass(torch.Tensor).permute(1, 0, 2, 3))
    return x.mul_(_NORM_SCALE).add_(_NORM_SHIFT)


# --------------------------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------------------------
@runtime_checkable
class VideoReader(Protocol):
    """An open video file.

    Attributes:
        name: Reader name ("decord" or "pyav").
        num_frames: Frames in the video (>= 1).
        fps: Average frame rate, 0.0 if unknown.
    """

    name: str
    num_frames: int
    fps: float

    def get(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (any order, repeats allowed) as ``uint8 [T, H, W, 3]`` RGB."""
        ...

    def close(self) -> None:
        """Release the file."""
        ...


class _ReaderBase:
    name = "base"
    num_frames: int
    fps: float

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DecordReader(_ReaderBase):
    """decord reader: random access with ``get_batch``.

    Args:
        path: Video file.
        short_side: Resize on decode so the short side is this (aspect kept, never upsampled); None: native size.
        num_threads: Decoder threads (0: decord's choice).
        native_size: ``(width, height)`` if known (index sidecar); else read from the header with PyAV when a resize
            is wanted (decord cannot report the size before opening with it).

    Raises:
        ImportError: decord is not installed.
        Exception: whatever decord raises for a file it cannot open (DECORDError, RuntimeError, AssertionError).
    """

    name = "decord"

    def __init__(
        self,
        path: str | Path,
        *,
        short_side: int | None = None,
        num_threads: int = 0,
        native_size: tuple[int, int] | None = None,
    ) -> None:
        global _decord_quieted
        import decord

        if not _decord_quieted:
            decord.logging.set_level(decord.logging.QUIET)
            _decord_quieted = True
        width = height = -1
        if short_side:
            native = native_size or _probe_size_pyav(path)
            size = resized_size(*native, short_side) if native else None
            if size is not None:
                width, height = size
        self._vr = decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height, num_threads=num_threads)
        self.num_frames = len(self._vr)
        fps = float(self._vr.get_avg_fps())
        self.fps = fps if math.isfinite(fps) and fps > 0 else 0.0

    def get(self, indices: Sequence[int]) -> np.ndarray:
        wanted = _check_indices(indices, self.num_frames)
        unique = sorted(set(wanted))
        batch = self._vr.get_batch(unique).asnumpy()  # [U, H, W, 3]
        if unique == wanted:
            return batch
        row = {i: k for k, i in enumerate(unique)}
        return batch[[row[i] for i in wanted]]

    def close(self) -> None:
        self._vr = None


class PyAVReader(_ReaderBase):
    """PyAV (FFmpeg) reader: seeks to the keyframe before the first wanted frame and decodes forward.

    Opening demuxes every packet of the first video stream (no decoding) to build the presentation-order frame
    table; packets FFmpeg marks as discard (edit lists) are not frames. Streams without timestamps are decoded from
    the start, counting frames.

    Args:
        path: Video file.
        short_side: Resize on decode (FFmpeg's swscale, bilinear, in YUV) so the short side is this; None: native.
        num_threads: Decoder threads (0: FFmpeg's choice, with frame + slice threading).
        native_size: Unused (the header is read anyway); accepted for a uniform constructor.

    Raises:
        ImportError: av is not installed.
        ValueError: The file has no video stream or the stream has no frames.
        av.error.FFmpegError: FFmpeg cannot open or demux the file (e.g. truncated).
    """

    name = "pyav"

    def __init__(
        self,
        path: str | Path,
        *,
        short_side: int | None = None,
        num_threads: int = 0,
        native_size: tuple[int, int] | None = None,
    ) -> None:
        import av

        self._threads = num_threads
        self._container = av.open(str(path), metadata_errors="ignore")
        try:
            self._open(short_side)
        except BaseException:
            self._container.close()
            raise

    def _open(self, short_side: int | None) -> None:
        streams = self._container.streams.video
        if not streams:
            kinds = ", ".join(s.type for s in self._container.streams) or "none"
            raise ValueError(f"no video stream (streams: {kinds})")
        stream = self._stream = streams[0]
        if self._threads == 1:
            stream.thread_count = 1
        else:
            stream.thread_type = "AUTO"
            stream.thread_count = self._threads
        pts: list[int | None] = []
        key_pts: list[int] = []
        num_packets = 0  # all of the stream's packets, to compare with the header's count
        for packet in self._container.demux(stream):
            if packet.size == 0 and packet.dts is None:  # the empty packet PyAV yields at the end
                continue
            num_packets += 1
            if packet.size == 0 or packet.is_discard:  # dropped-frame marker / edit-list discard: not a frame
                continue
            pts.append(packet.pts)
            if packet.is_keyframe and packet.pts is not None:
                key_pts.append(packet.pts)
        if not pts:
            raise ValueError("the video stream has no frames")
        if stream.frames > 0 and num_packets < stream.frames:
            # FFmpeg's demuxer stops quietly at the cut; decord fails on the missing frames instead.
            raise ValueError(f"truncated file: the header lists {stream.frames} frames, {num_packets} are present")
        self._sequential = any(t is None for t in pts)
        if self._sequential:
            self.num_frames = len(pts)
        else:
            self._pts = sorted(set(pts))
            self._index_of = {t: i for i, t in enumerate(self._pts)}
            self._key_pts = sorted(set(key_pts)) or [self._pts[0]]
            self.num_frames = len(self._pts)
        rate = stream.average_rate or stream.guessed_rate
        if rate:
            self.fps = float(rate)
        elif stream.duration and stream.time_base:
            self.fps = self.num_frames / float(stream.duration * stream.time_base)
        else:
            self.fps = 0.0
        cc = stream.codec_context
        self.codec = cc.name
        self._size = resized_size(cc.width, cc.height, short_side) if cc.width and cc.height else None

    def _to_array(self, frame) -> np.ndarray:
        # One swscale thread: frames are small and threads cost more than they save in loaded workers.
        if self._size is not None:
            # Scaling in YUV, then converting the small frame, is 3-4x faster than one combined RGB+scale pass.
            frame = frame.reformat(width=self._size[0], height=self._size[1], threads=1)
        return frame.to_ndarray(format="rgb24", threads=1)

    def _decode_from(self, seek_pts: int | None, need: set[int], out: dict[int, np.ndarray]) -> None:
        """Decode from the keyframe at ``seek_pts`` (None: from the start) until the last wanted frame."""
        last = max(need)
        if self._sequential or seek_pts is None:
            self._container.seek(0)
        else:
            self._container.seek(seek_pts, stream=self._stream, backward=True, any_frame=False)
        counter = -1
        for frame in self._container.decode(self._stream):
            if self._sequential:
                counter += 1
                i: int | None = counter
            else:
                i = self._index_of.get(frame.pts) if frame.pts is not None else None
            if i is None:
                continue
            if i in need and i not in out:
                out[i] = self._to_array(frame)
            if i >= last:
                break

    def get(self, indices: Sequence[int]) -> np.ndarray:
        wanted = _check_indices(indices, self.num_frames)
        need = set(wanted)
        out: dict[int, np.ndarray] = {}
        if self._sequential:
            self._decode_from(None, need, out)
        else:
            target = self._pts[min(need)]
            k = bisect.bisect_right(self._key_pts, target) - 1
            seek_pts = self._key_pts[max(k, 0)]
            self._decode_from(seek_pts, need, out)
            if need - out.keys() and seek_pts != self._pts[0]:
                # The seek landed past the target (damaged index): decode again from the start.
                self._decode_from(None, need, out)
        if not out:
            raise RuntimeError(f"decoded none of the {len(need)} requested frames")
        missing = sorted(need - out.keys())
        if missing:
            # Frames the decoder dropped (e.g. leading B-frames of an open GOP): the nearest earlier decoded one.
            have = sorted(out)
            for i in missing:
                j = bisect.bisect_right(have, i) - 1
                out[i] = out[have[max(j, 0)]]
        return np.stack([out[i] for i in wanted])

    def close(self) -> None:
        self._container.close()


READERS: dict[str, type] = {"decord": DecordReader, "pyav": PyAVReader}


class VideoReadError(RuntimeError):
    """No reader could open or decode a file; the message lists each reader's error."""


def open_video(
    path: str | Path,
    *,
    reader: str = "auto",
    short_side: int | None = None,
    num_threads: int = 0,
    native_size: tuple[int, int] | None = None,
) -> VideoReader:
    """Open ``path`` with the first reader of `reader_order` (``reader``) that can.

    Only the open is covered by the fallback; `VideoClipDataset` and `probe_video` also fall back on decode errors.

    Raises:
        FileNotFoundError / ValueError: missing, non-regular or empty file (no reader is tried).
        VideoReadError: every reader failed.
    """
    path = Path(path)
    _preflight(path)
    errors = []
    for name in reader_order(reader):
        try:
            return READERS[name](path, short_side=short_side, num_threads=num_threads, native_size=native_size)
        except Exception as err:
            errors.append(f"{name}: {type(err).__name__}: {_one_line(err)}")
    raise VideoReadError("; ".join(errors))


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def probe_video(
    path: str | Path, *, reader: str = "auto", check_decode: bool = True, num_threads: int = 0
) -> dict[str, Any]:
    """Open a video and report ``num_frames``, ``fps``, ``width``, ``height``, ``codec``, ``reader``.

    Args:
        path: Video file.
        reader: auto | decord | pyav.
        check_decode: Also decode the first and last frames (catches truncated files).
        num_threads: Decoder threads (0: the decoder's choice).

    Raises:
        FileNotFoundError / ValueError / VideoReadError: the file is unusable (message says why).
    """
    path = Path(path)
    _preflight(path)
    errors = []
    for name in reader_order(reader):
        try:
            with READERS[name](path, num_threads=num_threads) as video:
                info: dict[str, Any] = {"num_frames": video.num_frames, "fps": video.fps, "reader": name}
                width = height = 0
                if check_decode:
                    frames = video.get([0, video.num_frames - 1])
                    height, width = frames.shape[1:3]
                codec = getattr(video, "codec", "")
            if not (codec and width):
                codec, width, height = _header_info(path, codec, width, height)
            info.update(width=int(width), height=int(height), codec=codec)
            return info
        except Exception as err:
            errors.append(f"{name}: {type(err).__name__}: {_one_line(err)}")
    raise VideoReadError("; ".join(errors))


def _header_info(path: Path, codec: str, width: int, height: int) -> tuple[str, int, int]:
    if reader_available("pyav"):
        import av

        try:
            with av.open(str(path), metadata_errors="ignore") as container:
                cc = container.streams.video[0].codec_context
                return codec or cc.name, width or cc.width, height or cc.height
        except Exception:
            pass
    return codec, width, height


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
        self.entries: list[VideoEntry] = [e for src in sources for e in src]
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

    def _read_clip(self, entry: VideoEntry, clip: int, aug_seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode one clip, trying the readers in order (decord failures fall back to PyAV at open or decode)."""
        path = entry.path
        _preflight(path)
        order = [n for n in self._order if not (n == "decord" and path in self._decord_failed)] or self._order
        native = (entry.width, entry.height) if entry.width and entry.height else None
        errors = []
        for name in order:
            try:
                with READERS[name](
                    path, short_side=self.decode_short_side, num_threads=_worker_threads(), native_size=native
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
                errors.append(f"{name}: {type(err).__name__}: {_one_line(err)}")
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
                reason = f"{type(err).__name__}: {_one_line(err)}"
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
