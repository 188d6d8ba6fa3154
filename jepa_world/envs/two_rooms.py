"""Two-Rooms: a dot in a walled arena with one door, rendered to pixels (numpy only).

Geometry and protocol follow PLDM / EB-JEPA. All coordinates are in
arena units of a 64 x 64 arena; one unit is one pixel at ``image_size=64`` and frames of other sizes are scaled.
``x`` grows to the right (image columns) and ``y`` grows downwards (image rows), so a state ``(x, y)`` sits at
pixel column ``x * image_size / 64`` and row ``y * image_size / 64``. Pixel ``i`` covers ``[i, i + 1)``.

Exact coordinates (``wall=True``):

- Border: 5 units thick on every side; the free arena is the closed square ``[5, 59] x [5, 59]``.
- Wall: the vertical band ``30.5 <= x <= 33.5`` (width 3, centred at x = 32).
- Door: the gap ``28 < y < 36`` in the wall (half-height 4, centred at y = 32). The wall is therefore the two
  rectangles ``[30.5, 33.5] x [5, 28]`` and ``[30.5, 33.5] x [36, 59]``.
- Rooms: left ``x <= 30.5``, right ``x >= 33.5``; ``30.5 < x < 33.5`` (only reachable through the door) is the
  doorway.

Dynamics: an action is a 2-D displacement. It is first rescaled to norm <= 2.45 (``MAX_ACTION_NORM``); the dot
then moves along the segment from its position to position + displacement and STOPS at the first contact with a
wall or the border (no sliding along it). Contact is exact segment-vs-rectangle intersection, so no step can
tunnel through the wall. A dot resting on a face can move along it or away from it, but any displacement with a
component into the obstacle leaves it where it is. The dot is a point; its rendering is a Gaussian blob of sigma
1.3 units. ``discrete_action_table`` gives a discrete action set (eight full-step headings and a no-op), played by
``jepa_world.envs.DiscreteActions`` (``jepa_world/TwoRoomsDiscrete-v0``).

Protocol (``sample_eval_pair``): start and goal in opposite rooms, 200 steps, success if the FINAL distance to the
goal is < 4.5 units. Episodes therefore run to ``max_steps`` by default (``terminate_on_success=False``).

Shapes: observations ``uint8 [H, W, 3]`` with ``H = W = image_size``; states and goals ``float32 [2]``;
``transition`` is batched over any leading dims ``[..., 2]``.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

ARENA_SIZE = 64.0
BORDER = 5.0
WALL_CENTER_X = 32.0
WALL_HALF_WIDTH = 1.5
DOOR_CENTER_Y = 32.0
DOOR_HALF_HEIGHT = 4.0
MAX_ACTION_NORM = 2.45
DOT_SIGMA = 1.3
SUCCESS_THRESHOLD = 4.5
# Random starts and goals keep this distance from every face so the blob is fully visible and not on a face.
SPAWN_MARGIN = 1.0

WALL_X_MIN = WALL_CENTER_X - WALL_HALF_WIDTH  # 30.5
WALL_X_MAX = WALL_CENTER_X + WALL_HALF_WIDTH  # 33.5
DOOR_Y_MIN = DOOR_CENTER_Y - DOOR_HALF_HEIGHT  # 28.0
DOOR_Y_MAX = DOOR_CENTER_Y + DOOR_HALF_HEIGHT  # 36.0
FREE_MIN = BORDER  # 5.0
FREE_MAX = ARENA_SIZE - BORDER  # 59.0

_FAR = 1e6  # border rectangles extend this far so nothing can leave the arena whatever its start
_FLOOR_RGB = np.array([0.0, 0.0, 0.0], dtype=np.float32)
_WALL_RGB = np.array([255.0, 255.0, 255.0], dtype=np.float32)
_DOT_RGB = np.array([255.0, 0.0, 0.0], dtype=np.float32)


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


def _move_point_scalar(x: float, y: float, dx: float, dy: float, rects: list[tuple[float, ...]]) -> tuple[float, float]:
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


def _pixel_coverage(lo: float, hi: float, n: int, scale: float) -> np.ndarray:
    """Fraction of each of ``n`` pixels (width ``scale`` units) covered by the interval ``[lo, hi]``."""
    edges = np.arange(n + 1, dtype=np.float64) * scale
    overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)
    return overlap / scale


def _render_background(image_size: int, rects: np.ndarray) -> np.ndarray:
    """Anti-aliased static layer ``float32 [H, W, 3]``: walls by their exact pixel coverage, floor elsewhere."""
    scale = ARENA_SIZE / image_size
    coverage = np.zeros((image_size, image_size), dtype=np.float64)
    for x0, y0, x1, y1 in rects:
        cx = _pixel_coverage(x0, x1, image_size, scale)
        cy = _pixel_coverage(y0, y1, image_size, scale)
        coverage = np.maximum(coverage, np.outer(cy, cx))  # rows are y
    cov = coverage[..., None].astype(np.float32)
    return _FLOOR_RGB * (1.0 - cov) + _WALL_RGB * cov


class TwoRoomsEnv(gymnasium.Env):
    """A dot moving between two rooms joined by a door, observed as RGB frames.

    Args:
        image_size: Side of the square observation in pixels (geometry is scaled from the 64-unit arena).
        wall: True for Two-Rooms; False for the empty point arena (smoke test).
        max_steps: Episode length; ``truncated`` becomes True at this step.
        render_mode: ``"rgb_array"`` or None (``render()`` returns the frame either way).
        seed: Seeds the environment's generator for resets that do not pass their own seed.
        terminate_on_success: End the episode when the goal is reached. False by default because the protocol
            runs to ``max_steps`` and judges the final state.

    ``reset(options=...)`` accepts ``"start"`` and ``"goal"`` (xy in arena units). A missing key draws a uniform
    random valid position (kept ``SPAWN_MARGIN`` from every face, never in the doorway); ``"goal": None`` means no
    goal, and then ``info`` has no ``goal_state`` / ``distance`` and the reward is 0. The reward is the negative
    distance to the goal. ``info`` holds ``state`` (float32 [2]) and, with a goal, ``goal_state`` and ``distance``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 (gymnasium API attribute)

    def __init__(
        self,
        *,
        image_size: int = 64,
        wall: bool = True,
        max_steps: int = 200,
        render_mode: str | None = "rgb_array",
        seed: int | None = None,
        terminate_on_success: bool = False,
    ) -> None:
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        self.image_size = image_size
        self.wall = bool(wall)
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.terminate_on_success = bool(terminate_on_success)
        self.rects = obstacle_rects(self.wall)
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8)
        self.action_space = spaces.Box(-MAX_ACTION_NORM, MAX_ACTION_NORM, (2,), dtype=np.float32)
        self._rect_list = [tuple(float(v) for v in r) for r in self.rects]
        # Integer background: the blob blend below is then exact outside the window it is computed in.
        self._background = np.rint(_render_background(image_size, self.rects)).astype(np.uint8)  # [H, W, 3]
        # Pixel centres in arena units, for the separable Gaussian blob.
        self._centres = (np.arange(image_size, dtype=np.float64) + 0.5) * (ARENA_SIZE / image_size)
        # Beyond 4 sigma the blob weight is < 0.0004 (< 0.1 grey levels), which cannot change a rounded pixel.
        self._blob_radius_px = math.ceil(4.0 * DOT_SIGMA * image_size / ARENA_SIZE) + 1
        self._pos = np.array([FREE_MIN + 10.0, ARENA_SIZE / 2], dtype=np.float64)
        self._goal: np.ndarray | None = None
        self._t = 0
        if seed is not None:
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(seed)

    # ------------------------------------------------------------------ geometry helpers
    @property
    def state(self) -> np.ndarray:
        """Current dot position, float32 ``[2]``."""
        return self._pos.astype(np.float32)

    @property
    def goal(self) -> np.ndarray | None:
        """Current goal position, float32 ``[2]``, or None."""
        return None if self._goal is None else self._goal.astype(np.float32)

    def is_free(self, xy: np.ndarray) -> np.ndarray:
        """Whether points ``[..., 2]`` lie outside every obstacle's interior (faces count as free)."""
        p = np.asarray(xy, dtype=np.float64)[..., None, :]  # [..., 1, 2]
        inside = np.all((self.rects[:, :2] < p) & (p < self.rects[:, 2:]), axis=-1)  # [..., R]
        return ~np.any(inside, axis=-1)

    def room_of(self, xy: np.ndarray) -> np.ndarray:
        """Room index of points ``[..., 2]``: 0 left (``x <= 30.5``), 1 right (``x >= 33.5``), -1 in the doorway.

        With ``wall=False`` the same x bands split the arena into halves.
        """
        x = np.asarray(xy, dtype=np.float64)[..., 0]
        return np.where(x <= WALL_X_MIN, 0, np.where(x >= WALL_X_MAX, 1, -1))

    def transition(self, state: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Pure dynamics: next states ``float64 [..., 2]`` from states and actions ``[..., 2]`` (batched).

        Rescales actions to norm <= 2.45, then moves with stop-at-first-contact collisions. This is the true
        simulator (e.g. for a CEM-with-simulator ceiling); it does not touch the environment's own state.
        """
        a = np.asarray(action, dtype=np.float64)
        if a.shape[-1:] != (2,):
            raise ValueError(f"action must have a last dimension of 2, got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action must be finite, got {a}")
        return move_point(state, clip_action_norm(a), self.rects)

    def success(self, state: np.ndarray, goal: np.ndarray) -> bool | np.ndarray:
        """Whether states are within ``SUCCESS_THRESHOLD`` (4.5 units) of goals; a bool for single points."""
        dist = np.linalg.norm(np.asarray(state, dtype=np.float64) - np.asarray(goal, dtype=np.float64), axis=-1)
        ok = dist < SUCCESS_THRESHOLD
        return bool(ok) if np.ndim(ok) == 0 else ok

    def sample_position(self, rng: np.random.Generator, room: int | None = None) -> np.ndarray:
        """A uniform random valid position ``float32 [2]``, ``SPAWN_MARGIN`` from every face, never in the doorway.

        Args:
            rng: Generator to draw from.
            room: 0 (left), 1 (right) or None (either, proportionally to area).
        """
        lo, hi = FREE_MIN + SPAWN_MARGIN, FREE_MAX - SPAWN_MARGIN
        x_bands = [(lo, WALL_X_MIN - SPAWN_MARGIN), (WALL_X_MAX + SPAWN_MARGIN, hi)]
        if room is None:
            widths = np.array([b - a for a, b in x_bands])
            room = int(rng.choice(2, p=widths / widths.sum()))
        elif room not in (0, 1):
            raise ValueError(f"room must be 0, 1 or None, got {room!r}")
        x = rng.uniform(*x_bands[room])
        y = rng.uniform(lo, hi)
        return np.array([x, y], dtype=np.float32)

    def sample_eval_pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Start and goal ``float32 [2]`` in opposite rooms (opposite halves when ``wall=False``), as in the protocol.

        The start room is drawn uniformly; positions are uniform within their room (see ``sample_position``).
        """
        start_room = int(rng.integers(2))
        start = self.sample_position(rng, room=start_room)
        goal = self.sample_position(rng, room=1 - start_room)
        return start, goal

    # ------------------------------------------------------------------ rendering
    def render_state(self, xy: np.ndarray) -> np.ndarray:
        """Render the arena with the dot at ``xy`` (arena units): ``uint8 [H, W, 3]``. Use it for goal images."""
        x, y = (float(v) for v in np.asarray(xy, dtype=np.float64).reshape(2))
        frame = self._background.copy()
        # Only a window around the dot is touched; outside it the blend rounds back to the background exactly.
        px_per_unit = self.image_size / ARENA_SIZE
        c0 = max(int(x * px_per_unit) - self._blob_radius_px, 0)
        c1 = min(int(x * px_per_unit) + self._blob_radius_px + 1, self.image_size)
        r0 = max(int(y * px_per_unit) - self._blob_radius_px, 0)
        r1 = min(int(y * px_per_unit) + self._blob_radius_px + 1, self.image_size)
        if c0 >= c1 or r0 >= r1:
            return frame
        inv = -0.5 / (DOT_SIGMA * DOT_SIGMA)
        gx = np.exp(inv * (self._centres[c0:c1] - x) ** 2)
        gy = np.exp(inv * (self._centres[r0:r1] - y) ** 2)
        blob = np.outer(gy, gx).astype(np.float32)[..., None]  # [h, w, 1], rows are y
        bg = frame[r0:r1, c0:c1].astype(np.float32)
        frame[r0:r1, c0:c1] = np.rint(bg + blob * (_DOT_RGB - bg)).astype(np.uint8)
        return frame

    def render(self) -> np.ndarray:
        """The current frame ``uint8 [H, W, 3]``."""
        return self.render_state(self._pos)

    # ------------------------------------------------------------------ gymnasium API
    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self._pos.astype(np.float32)}
        if self._goal is not None:
            info["goal_state"] = self._goal.astype(np.float32)
            info["distance"] = math.hypot(*(self._pos - self._goal).tolist())
        return info

    def _check_position(self, xy: Any, name: str) -> np.ndarray:
        p = np.asarray(xy, dtype=np.float64).reshape(-1)
        if p.shape != (2,) or not np.all(np.isfinite(p)):
            raise ValueError(f"options[{name!r}] must be 2 finite numbers, got {xy!r}")
        if not (FREE_MIN <= p[0] <= FREE_MAX and FREE_MIN <= p[1] <= FREE_MAX) or not self.is_free(p):
            raise ValueError(f"options[{name!r}] = {p.tolist()} lies inside a wall or outside the arena")
        return p

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; see the class docstring for ``options``."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"start", "goal"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; expected 'start' and/or 'goal'")
        if options.get("start") is not None:
            self._pos = self._check_position(options["start"], "start")
        else:
            self._pos = self.sample_position(self.np_random).astype(np.float64)
        if "goal" not in options:
            self._goal = self.sample_position(self.np_random).astype(np.float64)
        elif options["goal"] is None:
            self._goal = None
        else:
            self._goal = self._check_position(options["goal"], "goal")
        self._t = 0
        return self.render(), self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply one displacement (rescaled to norm <= 2.45) with stop-at-first-contact collisions."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (2,):
            raise ValueError(f"action must have 2 components, got shape {np.shape(action)}")
        dx, dy = float(a[0]), float(a[1])
        if not (math.isfinite(dx) and math.isfinite(dy)):
            raise ValueError(f"action must be finite, got {a.tolist()}")
        norm = math.hypot(dx, dy)
        if norm > MAX_ACTION_NORM:
            dx, dy = dx * (MAX_ACTION_NORM / norm), dy * (MAX_ACTION_NORM / norm)
        self._pos = np.array(_move_point_scalar(float(self._pos[0]), float(self._pos[1]), dx, dy, self._rect_list))
        self._t += 1
        info = self._info()
        reached = self._goal is not None and info["distance"] < SUCCESS_THRESHOLD
        reward = -info["distance"] if self._goal is not None else 0.0
        terminated = bool(self.terminate_on_success and reached)
        truncated = self._t >= self.max_steps
        return self.render(), float(reward), terminated, truncated, info
