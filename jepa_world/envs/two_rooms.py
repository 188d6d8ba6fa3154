"""Two-Rooms: a dot in a walled arena with one door, rendered to pixels (numpy only).

Geometry, collisions and the action rescaling live in ``jepa_world.envs.geometry`` (exact coordinates there):
a 64 x 64 arena with a 5-unit border, a vertical wall at x = 32 with a door at 28 < y < 36, actions rescaled to norm
<= 2.45 and stop-at-first-contact motion. The dot is a point; its rendering is a Gaussian blob of sigma 1.3 units
(red on a black floor, white walls). ``texture=True`` and ``distractors=K`` add the visual nuisances of
``jepa_world.envs.clutter`` (a textured floor per episode, dots that move on their own); both are off by default,
and they change the frames only, never the agent's dynamics or the protocol.

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

from jepa_world.envs.clutter import DISTRACTOR_RGB, Scene, advance, compose, draw_blob, random_floor
from jepa_world.envs.geometry import (
    ARENA_SIZE,
    FREE_MAX,
    FREE_MIN,
    MAX_ACTION_NORM,
    WALL_X_MAX,
    WALL_X_MIN,
    clip_action_norm,
    move_point,
    move_point_scalar,
    obstacle_rects,
)

DOT_SIGMA = 1.3
SUCCESS_THRESHOLD = 4.5
# Random starts and goals keep this distance from every face so the blob is fully visible and not on a face.
SPAWN_MARGIN = 1.0
_FLOOR_RGB = np.array([0.0, 0.0, 0.0], dtype=np.float32)
_WALL_RGB = np.array([255.0, 255.0, 255.0], dtype=np.float32)
_DOT_RGB = np.array([255.0, 0.0, 0.0], dtype=np.float32)


def _pixel_coverage(lo: float, hi: float, n: int, scale: float) -> np.ndarray:
    """Fraction of each of ``n`` pixels (width ``scale`` units) covered by the interval ``[lo, hi]``."""
    edges = np.arange(n + 1, dtype=np.float64) * scale
    overlap = np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0.0, None)
    return overlap / scale


def _wall_coverage(image_size: int, rects: np.ndarray) -> np.ndarray:
    """Exact share ``float64 [H, W]`` of each pixel covered by the obstacles (anti-aliased walls)."""
    scale = ARENA_SIZE / image_size
    coverage = np.zeros((image_size, image_size), dtype=np.float64)
    for x0, y0, x1, y1 in rects:
        cx = _pixel_coverage(x0, x1, image_size, scale)
        cy = _pixel_coverage(y0, y1, image_size, scale)
        coverage = np.maximum(coverage, np.outer(cy, cx))  # rows are y
    return coverage


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
        texture: Draw a new textured floor at every reset (``jepa_world.envs.clutter``); False: a black floor.
        distractors: Number of dots that move on their own, drawn under the agent (0: none).

    ``reset(options=...)`` accepts ``"start"`` and ``"goal"`` (xy in arena units). A missing key draws a uniform
    random valid position (kept ``SPAWN_MARGIN`` from every face, never in the doorway); ``"goal": None`` means no
    goal, and then ``info`` has no ``goal_state`` / ``distance`` and the reward is 0. The reward is the negative
    distance to the goal. ``info`` holds ``state`` (float32 [2]) and, with a goal, ``goal_state`` and ``distance``.
    The nuisances are drawn from the env's generator after the start and goal (a plain env draws nothing more), and
    the distractors move at every ``step``; ``scene`` is the current one.
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
        texture: bool = False,
        distractors: int = 0,
    ) -> None:
        if not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
        if not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be 'rgb_array' or None, got {render_mode!r}")
        if not isinstance(distractors, int) or isinstance(distractors, bool) or distractors < 0:
            raise ValueError(f"distractors must be an int >= 0, got {distractors!r}")
        self.image_size = image_size
        self.wall = bool(wall)
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.terminate_on_success = bool(terminate_on_success)
        self.texture = bool(texture)
        self.num_distractors = distractors
        self.rects = obstacle_rects(self.wall)
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8)
        self.action_space = spaces.Box(-MAX_ACTION_NORM, MAX_ACTION_NORM, (2,), dtype=np.float32)
        self._rect_list = [tuple(float(v) for v in r) for r in self.rects]
        self._wall_coverage = _wall_coverage(image_size, self.rects)  # [H, W]
        # Integer background: the blob blend is then exact outside the window it is computed in.
        floor = np.broadcast_to(_FLOOR_RGB, (image_size, image_size, 3))
        self._plain_scene = Scene(background=compose(floor, self._wall_coverage, _WALL_RGB),
                                  distractors=np.zeros((0, 2)), headings=np.zeros(0))  # fmt: skip
        # Before the first reset a cluttered env shows the scene of generator 0 (so its frames are never plain).
        self._scene = self.sample_scene(np.random.default_rng(0))
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
    def cluttered(self) -> bool:
        """Whether the frames carry nuisances (a textured floor, distractors): then each episode has its own scene."""
        return self.texture or self.num_distractors > 0

    @property
    def scene(self) -> Scene:
        """What the current frame shows besides the agent (background, distractors); see ``jepa_world.envs.clutter``."""
        return self._scene

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

    def sample_scene(self, rng: np.random.Generator) -> Scene:
        """A new scene: a textured floor if ``texture``, ``num_distractors`` dots at uniform valid positions.

        A plain env (no texture, no distractors) returns its fixed scene and draws nothing from ``rng``.
        """
        if not self.cluttered:
            return self._plain_scene
        background = self._plain_scene.background
        if self.texture:
            background = compose(random_floor(rng, self.image_size), self._wall_coverage, _WALL_RGB)
        k = self.num_distractors
        positions = np.array([self.sample_position(rng) for _ in range(k)], dtype=np.float64).reshape(k, 2)
        return Scene(background=background, distractors=positions, headings=rng.uniform(0.0, 2.0 * math.pi, size=k))

    def advance_scene(self, scene: Scene, rng: np.random.Generator) -> Scene:
        """The scene one step later (the distractors move; a scene without them is returned as is)."""
        return advance(scene, rng, self.rects)

    # ------------------------------------------------------------------ rendering
    def render_state(self, xy: np.ndarray, scene: Scene | None = None) -> np.ndarray:
        """Render the arena with the dot at ``xy`` (arena units): ``uint8 [H, W, 3]``. Use it for goal images.

        Args:
            xy: The agent's position.
            scene: Background and distractors to draw (default: the current ``scene``).
        """
        x, y = (float(v) for v in np.asarray(xy, dtype=np.float64).reshape(2))
        scene = self._scene if scene is None else scene
        frame = scene.background.copy()
        blob = dict(centres=self._centres, radius_px=self._blob_radius_px, sigma=DOT_SIGMA)
        for k, (dx, dy) in enumerate(scene.distractors.tolist()):
            draw_blob(frame, (dx, dy), DISTRACTOR_RGB[k % len(DISTRACTOR_RGB)], **blob)
        draw_blob(frame, (x, y), _DOT_RGB, **blob)
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
        self._scene = self.sample_scene(self.np_random)
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
        self._pos = np.array(move_point_scalar(float(self._pos[0]), float(self._pos[1]), dx, dy, self._rect_list))
        self._t += 1
        self._scene = self.advance_scene(self._scene, self.np_random)
        info = self._info()
        reached = self._goal is not None and info["distance"] < SUCCESS_THRESHOLD
        reward = -info["distance"] if self._goal is not None else 0.0
        terminated = bool(self.terminate_on_success and reached)
        truncated = self._t >= self.max_steps
        return self.render(), float(reward), terminated, truncated, info
