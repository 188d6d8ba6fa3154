"""Indexes of media files: the one reader of folders, list files and V-JEPA CSVs, for videos and for images.

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

The writer of V-JEPA-compatible CSVs (`jepa-world index`) is `jepa_world.data.index_writer`.
"""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

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
    # containers FFmpeg opens that the list above missed (one real clip in each was checked with PyAV)
    ".3g2",
    ".asf",
    ".divx",
    ".dv",
    ".f4v",
    ".m1v",
    ".m2v",
    ".mxf",
    ".ogg",
    ".rm",
    ".rmvb",
    ".swf",
    ".vob",
)
# Extensions `write_index` does not even try to open (every other unknown extension is probed with the readers).
NOT_VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".csv", ".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".log", ".py", ".npz", ".npy", ".pt", ".pth", ".tar",
    ".zip", ".gz", ".pdf", ".html", ".xml", ".srt", ".vtt", ".wav", ".mp3", ".flac", ".aac", ".m4a",
)  # fmt: skip
IMAGE_EXTENSIONS: tuple[str, ...] = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
# A first entry equal to one of these is a CSV header, not a file.
_HEADER_NAMES = frozenset(
    {"path", "paths", "file", "filename", "filepath", "fname", "video", "video_path", "image", "image_path", "img"}
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


def walk_files(folder: Path) -> Iterator[tuple[Path, str]]:
    """Every file under ``folder`` as ``(path, why_skipped)``, ``why_skipped`` "" for a regular file.

    Follows symlinks but visits each directory once (by device and inode), so a link loop neither repeats files nor
    runs forever; hidden names (starting with ".") are left out; sockets, FIFOs and devices are reported as
    "not a regular file" (opening one would block).
    """
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = Path(root, name)
            try:
                regular = stat.S_ISREG(os.stat(path).st_mode)
            except OSError:  # a dangling symlink
                yield path, "broken link"
                continue
            yield path, "" if regular else "not a regular file"


def scan_media_folder(folder: Path, *, extensions: Sequence[str], kind: str) -> list[Path]:
    """All regular files under ``folder`` with one of ``extensions`` (any case), recursive (see `walk_files`), sorted
    by relative POSIX path. Shared by the video index and the image folder dataset.

    Raises:
        ValueError: If there is none (the message says how many files were seen and which extensions count).
    """
    found: list[str] = []
    num_files = 0
    for path, skipped in walk_files(folder):
        num_files += 1
        if not skipped and os.path.splitext(path.name)[1].lower() in extensions:
            found.append(path.relative_to(folder).as_posix())
    if not found:
        raise ValueError(
            f"no {kind} found under {folder}: {num_files} file(s) found, accepted extensions (any case): "
            f"{', '.join(extensions)}"
        )
    return [folder / rel for rel in sorted(set(found))]


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
        with open(meta, newline="", encoding="utf-8-sig") as f:
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
        text = index_file.read_text(encoding="utf-8-sig")  # a BOM is not part of the first path
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
        found = (p for p, skipped in walk_files(path) if not skipped and has_video_extension(p))
        return "video" if next(found, None) is not None else "image"
    if has_video_extension(path):
        return "video"
    if os.path.splitext(path.name)[1].lower() in IMAGE_EXTENSIONS:
        return "image"
    videos = images = 0
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
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
