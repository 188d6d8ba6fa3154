"""Reading `.npz` episode files without loading them: zip / npy headers and row reads of uncompressed members, so an
episode window reads only its own frames.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_ZIP_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header; fields 10/11: name and extra lengths


@dataclass(frozen=True)
class NpzMember:
    """Header of one array inside an ``.npz``: shape, dtype, and the byte offset of its data when memory-mappable."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int | None  # None: compressed member, must be read whole


def _read_npy_header(fh: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    return np.lib.format.read_array_header_2_0(fh)


def read_npz_header(path: str | Path) -> dict[str, NpzMember]:
    """Shapes and dtypes of every array in an ``.npz`` without reading the arrays' data."""
    path = Path(path)
    members: dict[str, NpzMember] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as raw:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            if info.compress_type == zipfile.ZIP_STORED:
                raw.seek(info.header_offset)
                fields = _ZIP_LOCAL_HEADER.unpack(raw.read(_ZIP_LOCAL_HEADER.size))
                raw.seek(info.header_offset + _ZIP_LOCAL_HEADER.size + fields[10] + fields[11])
                shape, fortran, dtype = _read_npy_header(raw)
                offset: int | None = raw.tell()
            else:
                with zf.open(info) as member:
                    shape, fortran, dtype = _read_npy_header(member)
                offset = None
            members[name] = NpzMember(tuple(shape), np.dtype(dtype), bool(fortran), offset)
    return members


def read_rows(path: Path, name: str, member: NpzMember, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of one array, memory-mapped when possible so only those rows are read."""
    if member.offset is not None and not member.fortran_order and not member.dtype.hasobject:
        mm = np.memmap(path, dtype=member.dtype, mode="r", offset=member.offset, shape=member.shape)
        out = np.array(mm[rows])
        del mm
        return out
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data[name][rows])
