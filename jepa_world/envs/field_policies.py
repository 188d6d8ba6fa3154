"""Behaviour policies for collecting from any gymnasium env, as the field collects stable-worldmodel's tasks.

Every policy here is a callable ``policy(obs, info, rng) -> action`` over the env's raw observation and info (as
``reset`` / ``step`` return them), ``rng`` a ``numpy.random.Generator`` (the collection's per-episode generator, so
a dataset is a function of its seed), with ``reset()`` called at the start of every episode. They are built for one
env by ``make_field_policy(name, env, **kwargs)``; the names are in ``FIELD_POLICIES``:

- ``random``: uniform in the env's ``Box`` action space (its own low / high), or uniform indices of a ``Discrete``.
- ``tworoom_expert``: swm TwoRoom's door-seeking expert with the field's collection noise (Gaussian action noise of
  std 2.0 added to the unit heading, the previous action repeated with probability 0.05, clipped to the bounds).
- ``pusht_weak``: swm Push-T's weak policy: a uniform random relative target, clipped to a square of +-100 units
  around the block (so the agent touches the block often).

``DEFAULT_FIELD_POLICY`` names each env's default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


def _box(env: gymnasium.Env, name: str) -> spaces.Box:
    space = env.action_space
    if not isinstance(space, spaces.Box):
        raise ValueError(f"policy {name!r} needs a Box action space, got {space}")
    return space


class UniformRandomPolicy:
    """Uniform actions in the env's ``Box`` action space (low / high as the env declares them).

    Args:
        low: Lower bound per action dim.
        high: Upper bound per action dim.
    """

    def __init__(self, *, low: np.ndarray, high: np.ndarray) -> None:
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        if self.low.shape != self.high.shape or not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError(f"random policy needs finite bounds of one shape, got {self.low} / {self.high}")

    def reset(self) -> None:
        """Nothing to forget."""

    def __call__(self, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high).astype(np.float32)


class TwoRoomExpertPolicy:
    """swm TwoRoom's expert: toward the nearest door wide enough for the agent, then to the target; with noise.

    The heading is the unit vector to the waypoint (the door centre while the target is in the other room and the
    agent is farther than ``door_reach_tol`` from that door, else the target). Gaussian noise of std ``action_noise``
    is added, then with probability ``repeat_prob`` the previous action is played again; actions are clipped to the
    env's bounds. The geometry (wall axis and position, doors, agent radius) is read from the env at every call.
    stable-worldmodel 0.1.1's own expert never repeats (it does not keep its last action): ``repeat_prob=0`` matches
    its data.

    Args:
        env: An swm TwoRoom env (``gymnasium.make("swm/TwoRoom-v1")``).
        action_noise: Std of the Gaussian noise added to the unit heading (the field's collection: 2.0).
        repeat_prob: Probability of repeating the previous action (the field's collection: 0.05).
        door_fit_margin: A door fits when its half-size is at least this times the agent radius.
        door_reach_tol: Distance (224-px units) from the door centre at which the agent heads for the target.
    """

    def __init__(
        self,
        *,
        env: gymnasium.Env,
        action_noise: float = 2.0,
        repeat_prob: float = 0.05,
        door_fit_margin: float = 1.1,
        door_reach_tol: float = 10.5,
    ) -> None:
        base = env.unwrapped
        if not (hasattr(base, "variation_space") and hasattr(base, "wall_pos")):
            raise ValueError(f"policy 'tworoom_expert' needs swm TwoRoom (swm/TwoRoom-v1), got {type(base).__name__}")
        if action_noise < 0 or not 0 <= repeat_prob <= 1:
            raise ValueError(f"need action_noise >= 0 and repeat_prob in [0, 1], got {action_noise}, {repeat_prob}")
        box = _box(env, "tworoom_expert")
        self.env = env
        self.low, self.high = box.low.astype(np.float64), box.high.astype(np.float64)
        self.action_noise, self.repeat_prob = float(action_noise), float(repeat_prob)
        self.door_fit_margin, self.door_reach_tol = float(door_fit_margin), float(door_reach_tol)
        self.last: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the previous action."""
        self.last = None

    def waypoint(self, agent: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Where the noiseless expert heads from ``agent`` for ``goal`` (both ``[2]``, 224-px units)."""
        base = self.env.unwrapped
        space = base.variation_space
        vertical = int(space["wall"]["axis"].value) == 1  # 1: vertical wall (rooms split by x), 0: horizontal
        wall = float(base.wall_pos)
        across = 0 if vertical else 1
        if (agent[across] > wall) == (goal[across] > wall):
            return goal
        n = int(space["door"]["number"].value)
        centres = np.asarray(space["door"]["position"].value, dtype=np.float64)[:n]
        sizes = np.asarray(space["door"]["size"].value, dtype=np.float64)[:n]
        radius = float(np.asarray(space["agent"]["radius"].value).reshape(-1)[0])
        doors = [np.array([wall, c] if vertical else [c, wall]) for c, s in zip(centres, sizes)
                 if s >= self.door_fit_margin * radius]  # fmt: skip
        if not doors:  # no door fits: at least walk to the wall facing the goal
            return np.array([wall, goal[1]] if vertical else [goal[0], wall])
        door = min(doors, key=lambda d: float(np.linalg.norm(d - agent)))
        return door if np.linalg.norm(door - agent) > self.door_reach_tol else goal

    def __call__(self, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        agent = np.asarray(info["state"], dtype=np.float64).reshape(-1)[:2]
        goal = np.asarray(info["goal_state"], dtype=np.float64).reshape(-1)[:2]
        delta = self.waypoint(agent, goal) - agent
        norm = float(np.linalg.norm(delta))
        action = delta / norm if norm > 1e-8 else np.zeros(2)
        if self.action_noise > 0:
            action = action + rng.normal(0.0, self.action_noise, size=2)
        if self.last is not None and self.repeat_prob > 0 and rng.uniform() < self.repeat_prob:
            action = self.last
        action = np.clip(action, self.low, self.high)
        self.last = action
        return action.astype(np.float32)


class PushTWeakPolicy:
    """swm Push-T's weak collection policy, over a single env's state.

    A target ``agent + action_scale * u`` with ``u`` uniform in ``[-1, 1]^2`` is clipped to the square of
    +-``dist_constraint`` units around the block, then turned back into the relative action
    ``(target - agent) / action_scale`` and clipped to the env's bounds. Reads ``obs["state"]``
    (agent x, y, block x, y, ...).

    Args:
        env: An swm Push-T env (its ``action_scale``, 100 units, is read from it).
        dist_constraint: Half-side of the square around the block (units of the 512-unit world).
    """

    def __init__(self, *, env: gymnasium.Env, dist_constraint: float = 100.0) -> None:
        obs_space = env.observation_space
        if not (isinstance(obs_space, spaces.Dict) and "state" in obs_space.spaces):
            raise ValueError(f"policy 'pusht_weak' needs swm Push-T (a dict observation with 'state'), got {obs_space}")
        if dist_constraint <= 0:
            raise ValueError(f"dist_constraint must be > 0, got {dist_constraint}")
        box = _box(env, "pusht_weak")
        self.low, self.high = box.low.astype(np.float64), box.high.astype(np.float64)
        self.scale = float(getattr(env.unwrapped, "action_scale", 100.0))
        self.dist_constraint = float(dist_constraint)

    def reset(self) -> None:
        """Nothing to forget."""

    def __call__(self, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        state = np.asarray(obs["state"], dtype=np.float64)
        agent, block = state[:2], state[2:4]
        target = agent + self.scale * rng.uniform(-1.0, 1.0, size=2)
        target = np.clip(target, block - self.dist_constraint, block + self.dist_constraint)
        return np.clip((target - agent) / self.scale, self.low, self.high).astype(np.float32)


class UniformDiscretePolicy:
    """Uniform indices of a ``Discrete(n, start)`` action space.

    Args:
        n: Number of actions.
        start: The first index.
    """

    def __init__(self, *, n: int, start: int = 0) -> None:
        self.n, self.start = int(n), int(start)

    def reset(self) -> None:
        """Nothing to forget."""

    def __call__(self, obs: Any, info: dict[str, Any], rng: np.random.Generator) -> int:
        return self.start + int(rng.integers(self.n))


def _random(env: gymnasium.Env) -> UniformRandomPolicy | UniformDiscretePolicy:
    if isinstance(env.action_space, spaces.Discrete):
        return UniformDiscretePolicy(n=env.action_space.n, start=env.action_space.start)
    box = _box(env, "random")
    return UniformRandomPolicy(low=box.low, high=box.high)


FIELD_POLICIES: dict[str, Callable[..., Any]] = {
    "random": _random,
    "tworoom_expert": lambda env, **kw: TwoRoomExpertPolicy(env=env, **kw),
    "pusht_weak": lambda env, **kw: PushTWeakPolicy(env=env, **kw),
}
DEFAULT_FIELD_POLICY: dict[str, str] = {"swm/TwoRoom-v1": "tworoom_expert", "swm/PushT-v1": "pusht_weak"}


def make_field_policy(name: str, env: gymnasium.Env, **kwargs: Any) -> Callable[..., np.ndarray]:
    """Build the policy ``name`` of ``FIELD_POLICIES`` for ``env`` (``kwargs``: its constructor arguments).

    Raises:
        ValueError: An unknown name (listing the known ones) or an env the policy does not fit.
    """
    if name not in FIELD_POLICIES:
        raise ValueError(f"unknown policy {name!r} for this env; known: {sorted(FIELD_POLICIES)} (or a callable)")
    return FIELD_POLICIES[name](env, **kwargs)
