"""Two-Rooms geometry and dynamics: the arena's coordinates, its obstacle rectangles and exact point motion.

Geometry and protocol follow PLDM / EB-JEPA. All coordinates are in arena units of a 64 x 64 arena; one unit is one
pixel at ``image_size=64`` and frames of other sizes are scaled. ``x`` grows to the right (image columns) and ``y``
grows downwards (image rows), so a state ``(x, y)`` sits at pixel column ``x * image_size / 64`` and row
``y * image_size / 64``. Pixel ``i`` covers ``[i, i + 1)``.

Exact coordinates (``wall=True``):

- Border: 5 units thick on every side; the free arena is the closed square ``[5, 59] x [5, 59]``.
- Wall: the vertical band ``30.5 <= x <= 33.5`` (width 3, centred at x = 32).
- Door: the gap ``28 < y < 36`` in the wall (half-height 4, centred at y = 32). The wall is therefore the two
  rectangles ``[30.5, 33.5] x [5, 28]`` and ``[30.5, 33.5] x [36, 59]``.
- Rooms: left ``x <= 30.5``, right ``x >= 33.5``; ``30.5 < x < 33.5`` (only reachable through the door) is the
  doorway.

Dynamics: an action is a 2-D displacement. It is first rescaled to norm <= 2.45 (``MAX_ACTION_NORM``); the point
then moves along the segment from its position to position + displacement and STOPS at the first contact with a
wall or the border (no sliding along it). Contact is exact segment-vs-rectangle intersection, so no step can
tunnel through the wall. A point resting on a face can move along it or away from it, but any displacement with a
component into the obstacle leaves it where it is. ``discrete_action_table`` gives a discrete action set (eight
full-step headings and a no-op).

Shapes: points and displacements ``[..., 2]`` (batched over any leading dims); rectangles ``[R, 4]``.
"""

from __future__ import annotations

import math

import numpy as np

ARENA_SIZE = 64.0
BORDER = 5.0
WALL_CENTER_X = 32.0
WALL_HALF_WIDTH = 1.5
DOOR_CENTER_Y = 32.0
DOOR_HALF_HEIGHT = 4.0
MAX_ACTION_NORM = 2.45

WALL_X_MIN = WALL_CENTER_X - WALL_HALF_WIDTH  # 30.5
WALL_X_MAX = WALL_CENTER_X + WALL_HALF_WIDTH  # 33.5
DOOR_Y_MIN = DOOR_CENTER_Y - DOOR_HALF_HEIGHT  # 28.0
DOOR_Y_MAX = DOOR_CENTER_Y + DOOR_HALF_HEIGHT  # 36.0
FREE_MIN = BORDER  # 5.0
FREE_MAX = ARENA_SIZE - BORDER  # 59.0

_FAR = 1e6  # border rectangles extend this far so nothing can leave the arena whatever its start


def obstacle_rects(wall: bool = True) -> np.ndarray:
    """Axis-aligned obstacle rectangles of the arena.

    Args:
        wall: Include the two wall segments (Two-Rooms); False gives the empty point arena.

    Returns:
        float64 ``[R, 4]`` rows ``(x_min, y_min, x_max, y_max)``: four border bands, then the wall segments.
    """
    rects = [
        (-_FAR, -_FAR, FREE_MIN, _FAR),  # left border
        (FREE_MAX, -_FAR, _FAR, _FAR),  # right border
        (-_FAR, -_FAR, _FAR, FREE_MIN),  # top border
        (-_FAR, FREE_MAX, _FAR, _FAR),  # bottom border
    ]
    if wall:
        rects.append((WALL_X_MIN, FREE_MIN, WALL_X_MAX, DOOR_Y_MIN))
        rects.append((WALL_X_MIN, DOOR_Y_MAX, WALL_X_MAX, FREE_MAX))
    return np.asarray(rects, dtype=np.float64)


def clip_action_norm(action: np.ndarray, max_norm: float = MAX_ACTION_NORM) -> np.ndarray:
    """Rescale displacements ``[..., 2]`` whose norm exceeds ``max_norm`` onto the circle of radius ``max_norm``."""
    a = np.asarray(action, dtype=np.float64)
    norm = np.linalg.norm(a, axis=-1, keepdims=True)
    scale = np.minimum(1.0, max_norm / np.maximum(norm, 1e-12))
    return a * scale


def move_point(start: np.ndarray, displacement: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Move points along straight segments, stopping at the first contact with any rectangle.

    Rectangles are treated as open sets: touching a face is allowed, entering the interior is not. Per segment
    the entry time into each rectangle is found with the slab method; the earliest entry in ``[0, 1)`` wins and the
    point stops there, its coordinate on the hit axis snapped exactly onto the face (so float rounding never leaves
    it inside, which would freeze it). No norm clipping here: any displacement length is handled without tunnelling.

    Args:
        start: ``[..., 2]`` start points (must not lie inside a rectangle's interior; such points do not move).
        displacement: ``[..., 2]`` displacements, broadcastable against ``start``.
        rects: ``[R, 4]`` rectangles ``(x_min, y_min, x_max, y_max)``.

    Returns:
        float64 ``[..., 2]`` end points.
    """
    p, d = np.broadcast_arrays(np.asarray(start, dtype=np.float64), np.asarray(displacement, dtype=np.float64))
    batch_shape = p.shape[:-1]
    p = p.reshape(-1, 1, 2)  # [N, 1, 2]
    d = d.reshape(-1, 1, 2)  # [N, 1, 2]
    lo = rects[None, :, :2]  # [1, R, 2]
    hi = rects[None, :, 2:]  # [1, R, 2]
    moving = d != 0.0  # [N, 1, 2]
    safe_d = np.where(moving, d, 1.0)
    t_a = (lo - p) / safe_d  # [N, R, 2]
    t_b = (hi - p) / safe_d
    inside_slab = (lo < p) & (p < hi)  # a still axis never constrains the time only if strictly inside the slab
    t_lo = np.where(moving, np.minimum(t_a, t_b), np.where(inside_slab, -np.inf, np.inf))
    t_hi = np.where(moving, np.maximum(t_a, t_b), np.where(inside_slab, np.inf, -np.inf))
    hit_axis = np.argmax(t_lo, axis=-1)  # [N, R]
    t_enter = np.max(t_lo, axis=-1)
    t_exit = np.min(t_hi, axis=-1)
    hits = (t_enter < t_exit) & (t_exit > 0.0) & (t_enter < 1.0)
    t_hit = np.where(hits, np.maximum(t_enter, 0.0), np.inf)  # [N, R]
    first = np.argmin(t_hit, axis=-1)  # [N]
    rows = np.arange(p.shape[0])
    t = t_hit[rows, first]  # [N]
    blocked = np.isfinite(t)
    t = np.where(blocked, t, 1.0)
    end = p[:, 0] + t[:, None] * d[:, 0]  # [N, 2]
    # Snap onto the face that was hit (only for genuine entries; t == 0 means "stay", handled below).
    axis = hit_axis[rows, first]
    dir_on_axis = d[rows, 0, axis]
    face = np.where(dir_on_axis > 0, rects[first, axis], rects[first, axis + 2])
    snap = blocked & (t > 0.0)
    end[rows[snap], axis[snap]] = face[snap]
    stay = blocked & (t == 0.0)
    end[stay] = p[stay, 0]
    return end.reshape(*batch_shape, 2)


def discrete_action_table(num_headings: int = 8) -> np.ndarray:
    """Discrete action set: ``num_headings`` displacements of the full step ``MAX_ACTION_NORM``, then a no-op.

    Row ``k < num_headings`` is ``MAX_ACTION_NORM * (cos, sin)(2 * pi * k / num_headings)`` (x = cos, y = sin; y grows
    downwards, so k = 2 of 8 moves down), the last row is zero: the same order as
    ``jepa_world.planning.discrete_headings(num_headings, MAX_ACTION_NORM)``. Components below 1e-12 are exactly 0,
    so an axis move has no sideways residue (which would stop a dot resting on a face from sliding along it).

    Returns:
        float32 ``[num_headings + 1, 2]`` (``[9, 2]`` by default).
    """
    if not isinstance(num_headings, int) or isinstance(num_headings, bool) or num_headings < 1:
        raise ValueError(f"num_headings must be an int >= 1, got {num_headings!r}")
    angles = 2.0 * np.pi * np.arange(num_headings, dtype=np.float64) / num_headings
    table = np.stack([np.cos(angles), np.sin(angles)], axis=-1)  # [num_headings, 2]
    table = np.where(np.abs(table) < 1e-12, 0.0, table) * MAX_ACTION_NORM
    return np.concatenate([table, np.zeros((1, 2))], axis=0).astype(np.float32)


def move_point_scalar(x: float, y: float, dx: float, dy: float, rects: list[tuple[float, ...]]) -> tuple[float, float]:
    """Single-point `move_point` in plain Python floats (the per-step path; numpy is slower for one point)."""
    best_t, best_axis, best_face = math.inf, -1, 0.0
    for x0, y0, x1, y1 in rects:
        t_enter, t_exit, axis, face = -math.inf, math.inf, -1, 0.0
        for p, d, lo, hi, k in ((x, dx, x0, x1, 0), (y, dy, y0, y1, 1)):
            if d == 0.0:
                if not lo < p < hi:
                    t_enter = math.inf  # never inside this slab: no hit
                    break
                continue
            ta, tb = (lo - p) / d, (hi - p) / d
            t_lo, t_hi = (ta, tb) if ta < tb else (tb, ta)
            if t_lo > t_enter:
                t_enter, axis, face = t_lo, k, lo if d > 0 else hi
            t_exit = min(t_exit, t_hi)
        if t_enter < t_exit and t_exit > 0.0 and t_enter < 1.0:
            t = max(t_enter, 0.0)
            if t < best_t:
                best_t, best_axis, best_face = t, axis, face
    if best_t == math.inf:
        return x + dx, y + dy
    if best_t == 0.0:
        return x, y
    nx, ny = x + best_t * dx, y + best_t * dy
    return (best_face, ny) if best_axis == 0 else (nx, best_face)
