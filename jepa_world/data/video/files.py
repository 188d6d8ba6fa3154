"""Opening and probing video files through the reader fallback of `readers.py` (decord, then PyAV).

`open_video` returns the first reader that opens a file; `probe_video` reports what an index records (frames, fps,
size, codec), decoding the first and last frames to catch truncated files. Every reader's error is kept: a file that
no reader takes raises `VideoReadError` listing each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jepa_world.data.video.readers import (
    DecordReader,
    PyAVReader,
    VideoReader,
    preflight,
    reader_available,
    reader_order,
)

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
    preflight(path)
    errors = []
    for name in reader_order(reader):
        try:
            return READERS[name](path, short_side=short_side, num_threads=num_threads, native_size=native_size)
        except Exception as err:
            errors.append(f"{name}: {type(err).__name__}: {one_line(err)}")
    raise VideoReadError("; ".join(errors))


def one_line(err: BaseException) -> str:
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
    preflight(path)
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
            errors.append(f"{name}: {type(err).__name__}: {one_line(err)}")
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
