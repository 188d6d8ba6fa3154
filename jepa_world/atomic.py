"""Atomic file writes: nothing a user has is ever half-replaced.

Every file jepa_world replaces (checkpoints, exports, indexes, episodes, metadata) is written to a temporary file in
the same folder, flushed and fsynced, given the permissions a plain `open(path, "w")` would give (the umask applies,
unlike `tempfile.mkstemp`'s 0600), then renamed over the target. A crash, a full disk or a kill at any point leaves
either the old file or the new one, never a truncated one; the temporary file is removed on failure, and
`remove_stale_temporaries` clears those left by a process that was killed (SIGKILL runs no cleanup).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> Path:
    """Call `write(binary_file)` on a temporary file next to `path`, fsync, then rename it to `path`.

    Raises:
        OSError: the folder cannot be created or written (ENOSPC, EROFS, EACCES ...); `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
