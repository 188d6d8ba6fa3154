"""Measured results as CSV rows: one row per run, appended, never rewritten.

    from results import append_rows     # scripts/ is on sys.path when a script there runs
    append_rows("docs/results/bench_planning.csv", [{"task": "two_rooms", "encoder": "joint", "seed": 0,
                                                      "pair_seed": 0, "success": 0.88, "extra": {"steps": 1000}}])

Columns (`COLUMNS`): task, encoder, recipe, seed, pair_seed, success (a fraction in [0, 1]; empty for a timing),
extra (the run's other metrics, cost and settings as compact JSON), machine (platform, CPU model, cores, GPU if any),
date (UTC, YYYY-MM-DD) and commit (`git rev-parse --short HEAD`, with `-dirty` when tracked files have changes).
machine, date and commit are filled in when a row leaves them out. A new file starts with the header; an existing one
gets its rows appended after the ones it holds, which are never read back or rewritten (its header must match).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path

COLUMNS = ("task", "encoder", "recipe", "seed", "pair_seed", "success", "extra", "machine", "date", "commit")
REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> str:
    try:
        import torch
    except ImportError:
        return ""
    if not torch.cuda.is_available():
        return ""
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{len(names)}x {names[0]}" if names else ""


def machine() -> str:
    """`Linux x86_64, AMD EPYC 7763 64-Core Processor, 2 cores, no GPU`: where this run ran."""
    gpu = _gpu()
    return f"{platform.system()} {platform.machine()}, {_cpu_model()}, {os.cpu_count()} cores, {gpu or 'no GPU'}"


def commit(repo: Path = REPO) -> str:
    """The short hash of HEAD, `-dirty` when tracked files differ from it; empty outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout

    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("-dirty" if dirty else "")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def append_rows(path: str | Path, rows: Iterable[Mapping]) -> int:
    """Append `rows` (dicts keyed by `COLUMNS`) to the CSV at `path`; returns how many were written.

    The file and its folder are created with the header when missing or empty. Rows already in the file are left
    byte-for-byte as they are. A row with a key outside `COLUMNS`, or a file whose header differs, is an error.
    """
    path = Path(path)
    rows = list(rows)
    for row in rows:
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise ValueError(f"results row: unknown column(s) {', '.join(unknown)}; expected {', '.join(COLUMNS)}")
    fill = {"machine": machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "commit": commit()}
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if tuple(header) != COLUMNS:
            raise ValueError(f"{path}: header {header} is not {list(COLUMNS)}; write to another file")
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            unterminated = f.read(1) != b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if not new and unterminated:  # a last row written by hand without its newline: end it, change nothing else
            f.write("\n")
        if new:
            writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([_cell(row[c]) if c in row else fill.get(c, "") for c in COLUMNS])
    return len(rows)
