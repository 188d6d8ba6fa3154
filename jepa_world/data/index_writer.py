"""`jepa-world index`: open every candidate file under a folder and write a V-JEPA CSV plus a metadata sidecar.

`write_index` writes the V-JEPA form, two space-separated columns ``path label`` and nothing else, so the official
loaders read it unchanged, and a sidecar ``<name>.meta.csv`` (comma CSV with a header) with the frame count, frame
rate, duration, size and codec of every video. Files with a known video extension and files with an unknown one are
opened (FFmpeg reads more containers than any list); images, text and other known non-video files are counted by
reason, and files that cannot be opened are left out and listed. Both files are replaced atomically, and nothing is
written when no file could be read, so a failed run never damages an existing index.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jepa_world.atomic import atomic_write_text, check_writable_target
from jepa_world.data.index import (
    IMAGE_EXTENSIONS,
    NOT_VIDEO_EXTENSIONS,
    VIDEO_EXTENSIONS,
    class_of,
    meta_path_for,
    walk_files,
)
from jepa_world.data.video.files import probe_video

META_COLUMNS: tuple[str, ...] = (
    "path",
    "label",
    "class_name",
    "num_frames",
    "fps",
    "duration_s",
    "width",
    "height",
    "codec",
    "reader",
)


@dataclass
class IndexReport:
    """What `write_index` did.

    Attributes:
        index_path: The V-JEPA CSV written.
        meta_path: The sidecar with per-video metadata.
        num_videos: Videos written.
        failures: ``(path, reason)`` for every file left out because it could not be opened or decoded.
        classes: Class names in label order (label ``i`` is ``classes[i]``).
        total_frames: Sum of the frame counts of the videos written.
        total_duration_s: Sum of their durations.
        paths_with_spaces: Paths written that contain whitespace (not readable by the official V-JEPA loaders).
        skipped: files not tried, counted by reason (``"image (.jpg)"``, ``"not a video (.txt)"``,
            ``"not a regular file"``, ``"broken link"``).
    """

    index_path: Path
    meta_path: Path
    num_videos: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    total_frames: int = 0
    total_duration_s: float = 0.0
    paths_with_spaces: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def _probe_one(path: Path, reader: str, check_decode: bool, num_threads: int) -> tuple[Path, dict | None, str]:
    """(path, info dict or None, failure reason)."""
    try:
        info = probe_video(path, reader=reader, check_decode=check_decode, num_threads=num_threads)
    except Exception as err:  # any decoder failure means: leave the file out and report it
        return path, None, f"{type(err).__name__}: {err}"
    return path, info, ""


def _probe_all(paths: list[Path], reader: str, check_decode: bool, num_workers: int) -> Iterator[tuple]:
    if num_workers <= 1:
        return (_probe_one(p, reader, check_decode, 0) for p in paths)
    # Threads, not processes: FFmpeg and decord release the GIL while demuxing and decoding, and a thread pool
    # needs no re-import of torch per worker and is safe whatever the parent process has done before.
    from concurrent.futures import ThreadPoolExecutor

    def run() -> Iterator[tuple]:
        with ThreadPoolExecutor(num_workers) as pool:
            yield from pool.map(lambda p: _probe_one(p, reader, check_decode, 1), paths)

    return run()


def _index_candidates(root: Path) -> tuple[list[Path], dict[str, int]]:
    """Files `write_index` tries to open (known video extensions, and unknown ones), and the others by reason."""
    paths, skipped = [], {}
    for path, why in walk_files(root):
        ext = os.path.splitext(path.name)[1].lower()
        if not why and ext in IMAGE_EXTENSIONS:
            why = f"image ({ext})"
        elif not why and ext in NOT_VIDEO_EXTENSIONS:
            why = f"not a video ({ext})"
        if why:
            skipped[why] = skipped.get(why, 0) + 1
        else:
            paths.append(path)
    return sorted(paths, key=lambda p: p.relative_to(root).as_posix()), skipped


def write_index(
    root: str | Path,
    output: str | Path,
    *,
    relative: bool = False,
    reader: str = "auto",
    check_decode: bool = True,
    num_workers: int = 0,
) -> IndexReport:
    """Scan ``root`` for videos, open each one, and write a V-JEPA CSV plus a metadata sidecar.

    Labels are class ids: the sorted names of the top-level subfolders of ``root`` (files directly in ``root`` form
    the class ``""``), as in an ImageFolder. Unreadable files are left out and reported.

    Args:
        root: Folder scanned recursively (see `scan_video_folder`).
        output: The CSV to write (``path label`` per line, space-separated, no header). The sidecar goes to
            `meta_path_for` (``output``).
        relative: Write paths relative to the output file's folder (our loader resolves them so; the official code
            resolves them against its working directory) instead of absolute paths.
        reader: ``auto`` | ``decord`` | ``pyav``, as for the dataset.
        check_decode: Also decode the first and last frame of each video (catches truncated files; slower).
        num_workers: Threads opening files in parallel (0 or 1: one at a time).

    Returns:
        An `IndexReport`.

    Raises:
        FileNotFoundError: If ``root`` is not a folder.
        ValueError: If it holds no video files, or ``num_workers`` is negative.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"root={str(root)!r} is not a folder")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    output = Path(output).expanduser()
    if output.is_dir():
        raise ValueError(f"--output {output} is a folder; give the path of the index file to write")
    check_writable_target(output, what="the index")  # before any file is opened
    paths, skipped = _index_candidates(root)
    if not paths:
        detail = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())) or "no files"
        raise ValueError(
            f"no videos found under {root} ({detail}); known video extensions: {', '.join(VIDEO_EXTENSIONS)}"
        )
    classes = sorted({class_of(p, root) for p in paths})
    class_id = {name: i for i, name in enumerate(classes)}
    report = IndexReport(index_path=output, meta_path=meta_path_for(output), classes=classes, skipped=skipped)

    rows: list[tuple[str, int, str, dict]] = []
    for path, info, reason in _probe_all(paths, reader, check_decode, num_workers):
        if info is None:
            report.failures.append((path, reason))
            continue
        if relative:
            written = Path(os.path.relpath(path.resolve(), output.resolve().parent)).as_posix()
        else:
            written = path.resolve().as_posix()
        name = class_of(path, root)
        rows.append((written, class_id[name], name, info))

    if not rows:
        return report  # nothing readable: writing an empty index would destroy the one already at `output`, if any
    meta = io.StringIO(newline="")
    writer = csv.writer(meta)
    writer.writerow(META_COLUMNS)
    for written, label, name, info in rows:
        duration = info["num_frames"] / info["fps"] if info["fps"] > 0 else float("nan")
        writer.writerow(
            [
                written,
                label,
                name,
                info["num_frames"],
                f"{info['fps']:.6g}",
                "" if math.isnan(duration) else f"{duration:.3f}",
                info["width"],
                info["height"],
                info["codec"],
                info["reader"],
            ]
        )
        report.total_frames += info["num_frames"]
        report.total_duration_s += 0.0 if math.isnan(duration) else duration
    # Both files are replaced atomically: a failure (full disk, a kill) leaves the previous index as it was.
    atomic_write_text(report.meta_path, meta.getvalue())
    atomic_write_text(output, "".join(f"{written} {label}\n" for written, label, _name, _info in rows))
    report.num_videos = len(rows)
    report.paths_with_spaces = sum(any(c.isspace() for c in r[0]) for r in rows)
    return report


def format_report(report: IndexReport, *, max_failures: int = 50) -> str:
    """Human-readable summary of an `IndexReport` (what ``jepa-world index`` prints)."""
    hours = report.total_duration_s / 3600
    if report.num_videos == 0:
        lines = [
            f"wrote 0 videos: none of the files could be opened, so {report.index_path} was not written (an index "
            "already there is unchanged)"
        ]
    else:
        lines = [
            f"wrote {report.num_videos} videos ({report.total_frames} frames, {hours:.2f} h, {len(report.classes)} "
            f"classes) to {report.index_path}; metadata in {report.meta_path}"
        ]
    if report.paths_with_spaces:
        lines.append(
            f"note: {report.paths_with_spaces} paths contain spaces; jepa_world reads them, the official V-JEPA "
            "loaders (space-separated CSV) do not"
        )
    if report.skipped:
        counts = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items()))
        lines.append(f"not tried: {counts}")
    if report.failures:
        lines.append(f"{len(report.failures)} files could not be opened and were left out:")
        for path, reason in report.failures[:max_failures]:
            lines.append(f"  {path}: {reason}")
        if len(report.failures) > max_failures:
            lines.append(f"  ... and {len(report.failures) - max_failures} more")
    return "\n".join(lines)
