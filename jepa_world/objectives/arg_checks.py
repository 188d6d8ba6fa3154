"""Argument checks shared by the objectives (masks, schedules): each returns the normalised value or raises an error
that names the argument and the bad value."""

from __future__ import annotations

import math
import operator
from typing import Any


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_grid(name: str, grid_size: Any, ndim: int) -> tuple[int, ...]:
    error = ValueError(f"{name} must be a tuple of {ndim} positive ints, got {grid_size!r}")
    try:
        grid = tuple(grid_size)
        if any(isinstance(v, bool) for v in grid):
            raise error
        grid = tuple(operator.index(v) for v in grid)
    except TypeError:
        raise error from None
    if len(grid) != ndim or min(grid) < 1:
        raise error
    return grid


def check_range(name: str, value: Any, *, upper: float | None) -> tuple[float, float]:
    """A ``(lo, hi)`` pair with ``0 < lo <= hi`` (and ``hi <= upper`` when given)."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (lo, hi) pair of numbers, got {value!r}") from None
    ok = math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi and (upper is None or hi <= upper)
    if not ok:
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must satisfy 0 < lo <= hi{bound}, got {value!r}")
    return lo, hi


def check_scale(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)
