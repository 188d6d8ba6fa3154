"""Atomic file writes: nothing a user has is ever half-replaced.

Every file jepa_world replaces (checkpoints, exports, indexes, episodes, metadata) is written to a temporary file in
the same folder, flushed and fsynced, given the permissions a plain `open(path, "w")` would give (the umask applies,
unlike `tempfile.mkstemp`'s 0600), then renamed over the target. A crash, a full disk or a kill at any point leaves
either the old file or the new one, never a truncated one; the temporary file is removed on failure, and
`remove_stale_temporaries` clears those left by a process that was killed (SIGKILL runs no cleanup).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"
# What a full disk looks like: ENOSPC / EDQUOT from the OS, or torch's zip writer stopping short of what it wrote.
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_TORCH_SHORT_WRITE = ("unexpected pos", "enforce fail at inline_container", "PytorchStreamWriter failed writing")


class DiskFullError(OSError):
    """A write stopped because the disk is full; the message names the folder, its free space and what is intact."""

    def __init__(self, message: str, folder: Path):
        super().__init__(errno.ENOSPC, message)
        self.folder = folder

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` is what a full disk (or quota) raises, as an OSError or as torch's short-write RuntimeError."""
    if isinstance(err, OSError):
        return err.errno in _DISK_FULL_ERRNOS
    return isinstance(err, RuntimeError) and any(text in str(err) for text in _TORCH_SHORT_WRITE)


def free_space(folder: str | Path) -> str:
    """The free space of the disk holding `folder`, for messages (`"1.2 MB"`), or "unknown"."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown"
    for unit in ("bytes", "kB", "MB", "GB"):
        if free < 1000 or unit == "GB":
            return f"{free} bytes" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1000
    return "unknown"  # not reached


def disk_full_error(path: Path, err: BaseException, intact: str) -> DiskFullError:
    """The error for a write of `path` that a full disk stopped; `intact` says what the user still has."""
    cause = "" if isinstance(err, OSError) else f" (torch: {str(err).splitlines()[0].strip()[:120]})"
    return DiskFullError(
        f"could not write {path}: No space left on device{cause}; the disk holding {path.parent} is full "
        f"({free_space(path.parent)} free). Nothing partial was left; {intact}. Free some space and run again",
        path.parent,
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> Path:
    """Call `write(binary_file)` on a temporary file next to `path`, fsync, then rename it to `path`.

    Raises:
        DiskFullError: the disk is full (ENOSPC, a quota, or torch's short write): the message names the folder and
            its free space; `path` is left as it was and no temporary file remains.
        OSError: the folder cannot be created or written (EROFS, EACCES ...); `path` is left as it was.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if is_disk_full(err) and not isinstance(err, DiskFullError):
            intact = f"{path.name} is as it was" if path.exists() else "no file was replaced"
            raise disk_full_error(path, err, intact) from err
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write` of UTF-8 text."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files `atomic_write` left in `directory` when its process was killed; returns them."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def check_writable_target(path: str | Path, *, what: str = "output") -> Path:
    """Fail now, naming the path, if `path` could not be created later (its nearest existing folder is not writable).

    Commands check their outputs before the work starts, so an hour of planning or probing is not lost to a typo.
    """
    path = Path(path).expanduser()
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None:
        return path
    if existing == path and not path.is_dir() and not os.access(path, os.W_OK):
        raise PermissionError(f"{what} {path} exists and is not writable")
    folder = existing if existing.is_dir() else existing.parent
    if existing != path and not existing.is_dir():
        raise NotADirectoryError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: {folder} is not writable")
    return path
