"""Baseline and behaviour policies for the Two-Rooms / point-arena environments.

Every policy is a callable ``policy(state, goal, rng) -> action`` with ``state`` and ``goal`` float ``[..., 2]`` in
arena units (``goal`` may be None for goal-free policies), ``rng`` a ``numpy.random.Generator``, and the action a
float32 displacement ``[..., 2]`` of norm <= ``MAX_ACTION_NORM``. Policies with memory (``VonMisesRandomWalk``)
have ``reset()``;
call it at the start of every episode. These baselines read the TRUE state: they are the floors and ceilings of
the protocol table (random, no-op, straight line, door oracle), not learned planners. Data-collection behaviour
comes from ``VonMisesRandomWalk`` (smooth random walks as in PLDM).

The protocol that compares them (start and goal in opposite rooms, ``env.max_steps`` steps, final-distance success)
is ``jepa_world.eval.protocol`` (``evaluate_policy``, ``run_episodes``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jepa_world.envs.geometry import (
    DOOR_CENTER_Y,
    DOOR_HALF_HEIGHT,
    MAX_ACTION_NORM,
    WALL_CENTER_X,
    WALL_X_MAX,
    WALL_X_MIN,
    clip_action_norm,
)

Policy = Callable[[np.ndarray, "np.ndarray | None", np.random.Generator], np.ndarray]


def _toward(state: np.ndarray, target: np.ndarray, max_norm: float) -> np.ndarray:
    """Displacement toward ``target``: the full difference when within reach, else ``max_norm`` along it."""
    return clip_action_norm(np.asarray(target, dtype=np.float64) - state, max_norm).astype(np.float32)


def _require_goal(goal: np.ndarray | None, name: str) -> np.ndarray:
    if goal is None:
        raise ValueError(f"{name} needs a goal, got goal=None")
    return np.asarray(goal, dtype=np.float64)


class RandomPolicy:
    """Uniform actions in the box ``[-max_norm, max_norm]^2`` (the env then rescales them to norm <= max_norm)."""

    def __init__(self, *, max_norm: float = MAX_ACTION_NORM) -> None:
        self.max_norm = float(max_norm)

    def __call__(self, state: np.ndarray, goal: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        shape = np.shape(state)
        return rng.uniform(-self.max_norm, self.max_norm, size=shape).astype(np.float32)


class NoOpPolicy:
    """Always the zero displacement."""

    def __call__(self, state: np.ndarray, goal: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(np.shape(state), dtype=np.float32)


class StraightLinePolicy:
    """Greedy in the true state: step straight toward the goal at full length (the wall stops it)."""

    def __init__(self, *, max_norm: float = MAX_ACTION_NORM) -> None:
        self.max_norm = float(max_norm)

    def __call__(self, state: np.ndarray, goal: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        goal = _require_goal(goal, "StraightLinePolicy")
        return _toward(np.asarray(state, dtype=np.float64), goal, self.max_norm)


class DoorWaypointPolicy:
    """Oracle: when the goal is on the other side of the wall, go through the door centre, then to the goal.

    Stateless rule on the true state, for rooms left (``x <= 30.5``) / right (``x >= 33.5``) / doorway (between):

    - same room as the goal (or ``wall=False``): straight to the goal;
    - in the doorway: straight along the door axis to ``door_centre +- clearance`` on the goal's side;
    - in the other room: if within ``align_tol`` of the door's height, straight to the exit point on the goal's
      side (a near-horizontal segment that stays inside the door); otherwise first to the approach point
      ``door_centre -+ clearance`` on its own side. Rooms are convex, so none of these segments touches the wall.
    """

    def __init__(
        self,
        *,
        wall: bool = True,
        clearance: float = 5.0,
        align_tol: float = 0.5 * DOOR_HALF_HEIGHT,
        max_norm: float = MAX_ACTION_NORM,
    ) -> None:
        if clearance <= WALL_X_MAX - WALL_CENTER_X:
            raise ValueError(f"clearance must exceed the wall's half-width, got {clearance}")
        if not 0 < align_tol < DOOR_HALF_HEIGHT:
            raise ValueError(f"align_tol must be in (0, {DOOR_HALF_HEIGHT}), got {align_tol}")
        self.wall = bool(wall)
        self.clearance = float(clearance)
        self.align_tol = float(align_tol)
        self.max_norm = float(max_norm)

    def __call__(self, state: np.ndarray, goal: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        goal = _require_goal(goal, "DoorWaypointPolicy")
        s = np.asarray(state, dtype=np.float64)
        goal = np.broadcast_to(goal, s.shape)
        if not self.wall:
            return _toward(s, goal, self.max_norm)
        x, y = s[..., 0], s[..., 1]
        goal_side = np.where(goal[..., 0] >= WALL_CENTER_X, 1.0, -1.0)  # +1: goal is right of the wall
        own_room = np.where(x <= WALL_X_MIN, -1.0, np.where(x >= WALL_X_MAX, 1.0, 0.0))
        exit_pt = np.stack([WALL_CENTER_X + goal_side * self.clearance, np.full_like(x, DOOR_CENTER_Y)], axis=-1)
        approach = np.stack([WALL_CENTER_X - goal_side * self.clearance, np.full_like(x, DOOR_CENTER_Y)], axis=-1)
        aligned = np.abs(y - DOOR_CENTER_Y) <= self.align_tol
        same_room = own_room == goal_side
        target = np.where(
            same_room[..., None],
            goal,
            np.where(((own_room == 0) | aligned)[..., None], exit_pt, approach),
        )
        return _toward(s, target, self.max_norm)


class VonMisesRandomWalk:
    """Behaviour policy for data collection: a smooth random walk (PLDM-style).

    The heading starts uniform on the circle and each step turns by a von Mises(0, ``kappa``) angle, i.e. the new
    heading is von Mises-distributed around the previous one; larger ``kappa`` gives straighter paths. Step lengths
    are uniform in ``[0, step_scale]`` (clipped to ``max_norm``), so the data also covers small actions.

    Args:
        kappa: Concentration of the heading change (radians); 0 is a fresh uniform heading every step.
        step_scale: Largest step length in arena units.
        max_norm: Action norm bound of the environment.
    """

    def __init__(
        self, *, kappa: float = 5.0, step_scale: float = MAX_ACTION_NORM, max_norm: float = MAX_ACTION_NORM
    ) -> None:
        if kappa < 0:
            raise ValueError(f"kappa must be >= 0, got {kappa}")
        if step_scale <= 0:
            raise ValueError(f"step_scale must be > 0, got {step_scale}")
        self.kappa = float(kappa)
        self.step_scale = min(float(step_scale), float(max_norm))
        self.heading: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the heading; the next call draws a fresh uniform one."""
        self.heading = None

    def __call__(self, state: np.ndarray, goal: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        batch_shape = np.shape(state)[:-1]
        if self.heading is None or self.heading.shape != batch_shape:
            self.heading = rng.uniform(-np.pi, np.pi, size=batch_shape)
        else:
            self.heading = np.angle(np.exp(1j * (self.heading + rng.vonmises(0.0, self.kappa, size=batch_shape))))
        length = rng.uniform(0.0, self.step_scale, size=batch_shape)
        return np.stack([length * np.cos(self.heading), length * np.sin(self.heading)], axis=-1).astype(np.float32)


POLICIES: dict[str, Callable[..., Policy]] = {
    "random": RandomPolicy,
    "noop": NoOpPolicy,
    "straight_line": StraightLinePolicy,
    "door_waypoint": DoorWaypointPolicy,
    "von_mises": VonMisesRandomWalk,
}


def make_policy(name: str, **kwargs: Any) -> Policy:
    """Build a policy by name (``random``, ``noop``, ``straight_line``, ``door_waypoint``, ``von_mises``)."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; known: {sorted(POLICIES)}")
    return POLICIES[name](**kwargs)
