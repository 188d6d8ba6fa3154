"""Indexes of media files: the one reader of folders, list files and V-JEPA CSVs, for videos and for images; and
the writer of V-JEPA-compatible CSVs (`jepa-world index`).

Formats (examples in ``data/README.md`` at the repository root):

- a folder, scanned recursively for files with an extension in `VIDEO_EXTENSIONS` (any case); hidden files and
  folders (names starting with ".") are left out; paths are sorted, so item ``i`` is the same file on every machine;
- a single video file (an index of one video);
- a text file with one entry per line: ``path`` (list file), ``path label`` (the space-separated, header-less CSV of
  the V-JEPA releases) or ``path,label``. Blank lines, ``#`` comments and a header line (``path,...``) are skipped;
  relative paths are relative to the index file's folder. A path that contains spaces is read correctly when it
  ends with a video extension (the official V-JEPA code would split it);
- several of the above, comma-separated (``"a.csv,b.csv"``) or as a list: each is read on its own (and mixed with
  weights by `jepa_world.data.video.dataset.VideoClipDataset`).

Image lists (`jepa_world.data.images.ImageFolderDataset`) are read by the same `read_index_file(..., kind="image")`.

`write_index` writes the V-JEPA form, two space-separated columns ``path label`` and nothing else, so the official
loaders read it unchanged, and a sidecar ``<name>.meta.csv`` (comma CSV with a header) with the frame count, frame
rate, duration, size and codec of every video. Files that cannot be opened or decoded are left out of both and
returned (and listed by the CLI).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jepa_world.data.video.readers import probe_video

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".3gp",
    ".avi",
    ".flv",
    ".m2ts",
    ".m4v",
    ".mkv",
    ".mov",
    ".mp4",
    ".mpeg",
    ".mpg",
    ".mts",
    ".ogv",
    ".ts",
    ".webm",
    ".wmv",
)
IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
# A first entry equal to one of these is a CSV header, not a file.
_HEADER_NAMES = frozenset(
    {"path", "paths", "file", "filename", "filepath", "fname", "video", "video_path", "image", "image_path", "img"}
)
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


@dataclass(frozen=True)
class IndexEntry:
    """One file of an index (a video, or an image of an image list).

    Attributes:
        path: Absolute or CWD-relative path of the file.
        label: The index's label column as written (None for folders and list files).
        width: Native frame width from the sidecar, if any (lets the decord reader resize on decode without a probe).
        height: Native frame height from the sidecar, if any.
    """

    path: Path
    label: str | None = None
    width: int | None = None
    height: int | None = None


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
    """

    index_path: Path
    meta_path: Path
    num_videos: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    total_frames: int = 0
    total_duration_s: float = 0.0
    paths_with_spaces: int = 0


# --------------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------------
def has_video_extension(path: str | Path) -> bool:
    """True if the name ends with one of `VIDEO_EXTENSIONS` (any case)."""
    return os.path.splitext(str(path))[1].lower() in VIDEO_EXTENSIONS


def split_index_spec(index: str | Path | Sequence[str | Path]) -> list[Path]:
    """The index paths in ``data.index``: one path, a comma-separated string of paths, or a list.

    A string that names an existing file or folder as a whole is one path even if it contains commas.
    """
    if isinstance(index, (str, Path)):
        text = str(index)
        if "," in text and not Path(text).expanduser().exists():
            parts = [p.strip() for p in text.split(",") if p.strip()]
        else:
            parts = [text]
    else:
        parts = [str(p).strip() for p in index]
    if not parts:
        raise ValueError(f"index={index!r} names no path")
    return [Path(p).expanduser() for p in parts]


def scan_media_folder(folder: Path, *, extensions: Sequence[str], kind: str) -> list[Path]:
    """All files under ``folder`` with one of ``extensions`` (any case), recursive, following symlinks, hidden names
    left out, sorted by relative POSIX path. Shared by the video index and the image folder dataset.

    Raises:
        ValueError: If there is none (the message says how many files were seen and which extensions count).
    """
    found: list[str] = []
    num_files = 0
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            num_files += 1
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                found.append(Path(root, name).relative_to(folder).as_posix())
    if not found:
        raise ValueError(
            f"no {kind} found under {folder}: {num_files} file(s) found, accepted extensions (any case): "
            f"{', '.join(extensions)}"
        )
    return [folder / rel for rel in sorted(found)]


def scan_video_folder(folder: Path) -> list[Path]:
    """All videos under ``folder`` (see `scan_media_folder`).

    Raises:
        ValueError: If there is none.
    """
    return scan_media_folder(folder, extensions=VIDEO_EXTENSIONS, kind="videos")


def _media_suffix(text: str) -> bool:
    suffix = os.path.splitext(text)[1].lower()
    return suffix in VIDEO_EXTENSIONS or suffix in IMAGE_EXTENSIONS


def parse_index_line(line: str) -> tuple[str, str | None]:
    """Split one index line into ``(path, label)``.

    Accepts ``path``, ``path label`` (V-JEPA, split at the last run of whitespace), ``path<TAB>label`` and
    ``path,label``. The whole line is the path when it ends with a media extension (so ``my clip.mp4`` works).
    """
    if "\t" in line:
        path, _, label = line.partition("\t")
        return path.strip(), label.strip() or None
    if _media_suffix(line):
        return line, None
    parts = line.rsplit(maxsplit=1)
    if len(parts) == 2 and _media_suffix(parts[0]):
        return parts[0], parts[1]
    if "," in line:
        fields = next(csv.reader([line]))
        if _media_suffix(fields[0].strip()) or len(parts) == 1:
            return fields[0].strip(), (fields[1].strip() or None) if len(fields) > 1 else None
    if len(parts) == 2:
        # No known extension anywhere: follow the V-JEPA format (first field = path).
        first, rest = line.split(maxsplit=1)
        return first, rest
    return line, None


def meta_path_for(index_file: Path) -> Path:
    """The sidecar written next to ``index_file``: ``k400.csv`` -> ``k400.meta.csv``."""
    return index_file.with_name(index_file.stem + ".meta.csv")


def _read_meta(index_file: Path) -> dict[str, tuple[int | None, int | None]]:
    """``path -> (width, height)`` from the sidecar, if there is one (silently empty otherwise)."""
    meta = meta_path_for(index_file)
    if meta == index_file or not meta.is_file():
        return {}
    sizes: dict[str, tuple[int | None, int | None]] = {}
    try:
        with open(meta, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                w, h = row.get("width") or "", row.get("height") or ""
                sizes[row.get("path", "")] = (int(w) if w.isdigit() else None, int(h) if h.isdigit() else None)
    except (OSError, csv.Error, UnicodeDecodeError):
        return {}
    return sizes


def read_index_file(index_file: Path, *, kind: str = "video") -> list[IndexEntry]:
    """Entries of a list file or V-JEPA CSV; relative paths are taken relative to the file's folder.

    Args:
        index_file: the text file.
        kind: "video" or "image" (what the entries are; only the messages and the sidecar differ).

    Raises:
        ValueError: If the file is not UTF-8 text, lists nothing, or is itself a media file.
    """
    if kind not in ("video", "image"):
        raise ValueError(f"kind={kind!r}; expected 'video' or 'image'")
    if kind == "image" and index_file.suffix.lower() in IMAGE_EXTENSIONS:
        raise ValueError(f"index {index_file} is an image; pass a folder or a text file listing images")
    try:
        text = index_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"index file {index_file} is not UTF-8 text: {err}") from err
    root = index_file.parent
    sizes = _read_meta(index_file) if kind == "video" else {}
    entries: list[IndexEntry] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, label = parse_index_line(line)
        if not entries and entry.lower() in _HEADER_NAMES:
            continue
        path = Path(entry).expanduser()
        width, height = sizes.get(entry, (None, None))
        entries.append(IndexEntry(path if path.is_absolute() else root / path, label, width, height))
    if not entries:
        raise ValueError(f"index file {index_file} lists no {kind}s (only blank lines, comments or a header)")
    return entries


def read_index(index: str | Path) -> list[IndexEntry]:
    """Entries of one index: a folder, a single video file, or a list / CSV file.

    Raises:
        FileNotFoundError: If ``index`` does not exist.
        ValueError: If it holds or lists no videos.
    """
    path = Path(index).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"index {path} does not exist (expected a folder of videos or an index file)")
    if path.is_dir():
        return [IndexEntry(p) for p in scan_video_folder(path)]
    if has_video_extension(path):
        return [IndexEntry(path)]
    return read_index_file(path)


def detect_kind(index: str | Path | Sequence[str | Path]) -> str:
    """Whether ``data.index`` points at videos or images: ``"video"`` or ``"image"``.

    Only names are looked at (no file is opened). A folder is ``"video"`` if it holds any video file; an index file is
    ``"video"`` if more of its first 100 entries end with a video extension than with an image extension. Several
    comma-separated indexes are always videos (the image pipeline reads a single index).

    Raises:
        FileNotFoundError: If a path does not exist.
    """
    paths = split_index_spec(index)
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"data.index: {p} does not exist")
    if len(paths) > 1:
        return "video"
    path = paths[0]
    if path.is_dir():
        for _root, dirs, files in os.walk(path, followlinks=True):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            if any(not n.startswith(".") and has_video_extension(n) for n in files):
                return "video"
        return "image"
    if has_video_extension(path):
        return "video"
    if os.path.splitext(path.name)[1].lower() in IMAGE_EXTENSIONS:
        return "image"
    videos = images = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, raw in enumerate(f):
                if n >= 100:
                    break
                line = raw.strip()
                if line and not line.startswith("#"):
                    entry = parse_index_line(line)[0]
                    ext = os.path.splitext(entry)[1].lower()
                    videos += ext in VIDEO_EXTENSIONS
                    images += ext in IMAGE_EXTENSIONS
    except OSError:
        return "image"
    return "video" if videos > images else "image"


# --------------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------------
def class_of(path: Path, root: Path) -> str:
    """The top-level subfolder under ``root`` ("" for files directly in ``root``)."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else ""


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
    paths = scan_video_folder(root)
    classes = sorted({class_of(p, root) for p in paths})
    class_id = {name: i for i, name in enumerate(classes)}
    report = IndexReport(index_path=output, meta_path=meta_path_for(output), classes=classes)

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

    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8", newline="\n") as f:
        for written, label, _name, _info in rows:
            f.write(f"{written} {label}\n")
    with open(report.meta_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
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
    report.num_videos = len(rows)
    report.paths_with_spaces = sum(any(c.isspace() for c in r[0]) for r in rows)
    return report


def format_report(report: IndexReport, *, max_failures: int = 50) -> str:
    """Human-readable summary of an `IndexReport` (what ``jepa-world index`` prints)."""
    hours = report.total_duration_s / 3600
    lines = [
        f"wrote {report.num_videos} videos ({report.total_frames} frames, {hours:.2f} h, {len(report.classes)} "
        f"classes) to {report.index_path}; metadata in {report.meta_path}"
    ]
    if report.paths_with_spaces:
        lines.append(
            f"note: {report.paths_with_spaces} paths contain spaces; jepa_world reads them, the official V-JEPA "
            "loaders (space-separated CSV) do not"
        )
    if report.failures:
        lines.append(f"{len(report.failures)} files could not be opened and were left out:")
        for path, reason in report.failures[:max_failures]:
            lines.append(f"  {path}: {reason}")
        if len(report.failures) > max_failures:
            lines.append(f"  ... and {len(report.failures) - max_failures} more")
    return "\n".join(lines)
