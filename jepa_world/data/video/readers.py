"""Video readers: decord (fast random access) with a per-file PyAV fallback, exact frame indexing, resize on decode.

A `VideoReader` is an open video with ``num_frames``, ``fps`` and ``get(indices) -> uint8 [T, H, W, 3]``.
`DecordReader` (fast random access; no AV1, no aarch64/macOS wheels) is the default; `PyAVReader` (FFmpeg 8 bundled
with ``av``: AV1, webm, any platform) is the fallback. With ``reader="auto"`` each file is tried with decord, then
PyAV (at open or at decode); a file decord failed on goes straight to PyAV afterwards. Both readers index frames
exactly (decord and `PyAVReader` demux the whole file once at open to build the presentation-order frame table, which
is also the per-file sanity check: a truncated container fails there, not in a decode loop), decode only from the
keyframe before the first wanted frame to the last wanted frame, and resize on decode when asked
(``short_side``; never upsampling). At native size both return the same pixels. A truncated mp4 whose header comes
first lists more frames than it holds: PyAV rejects it at open, decord reads the frames before the cut and fails on a
window past it (then PyAV is tried and rejects it). `files.py` opens files through this fallback (`open_video`) and
probes them (`probe_video`).

Shapes: readers return ``uint8 [T, H, W, 3]``.
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
from typing import Protocol, runtime_checkable

import numpy as np
from torch.utils.data import get_worker_info

logger = logging.getLogger("jepa_world.data")

READER_CHOICES: tuple[str, ...] = ("auto", "decord", "pyav")
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
        raise ImportError(
            f"reader={reader!r} needs the {wanted} package (pip install {wanted}; decord has wheels for x86_64 only)"
        )
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


def preflight(path: Path) -> None:
    """Cheap checks before any decoder sees the file (a FIFO or device would block FFmpeg forever)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"not a regular file: {path}")
    if st.st_size == 0:
        raise ValueError(f"empty file (0 bytes): {path}")


def worker_threads() -> int:
    """Decoder threads: 1 inside DataLoader workers (they already fill the cores), FFmpeg's choice otherwise."""
    return 1 if get_worker_info() is not None else 0


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
