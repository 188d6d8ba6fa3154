"""The floors and the ceiling of the field's protocols (`eval.field`): no-op, random, replay of the dataset's actions,
and the planner on the true simulator, each an `Agent` acting on a batch of E envs side by side.

Shapes: E pairs, A env action dim, D env-state dim; env states ``float64 [E, D]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jepa_world.config import PlannerSettings
from jepa_world.envs.field_envs import read_env_state, restore_env_state
from jepa_world.eval.agents import Agent, Observation, _MPCBase
from jepa_world.eval.field import FieldPair, state_distance
from jepa_world.planning import CostFn


class ZeroActionAgent(Agent):
    """No-op: zero actions (clipped into the env's Box), which stand still in swm's envs (relative actions).

    Args:
        low: The env's action lower bound ``[A]``.
        high: Its upper bound ``[A]``.
        name: Row label.
    """

    privileged = False

    def __init__(self, *, low: np.ndarray, high: np.ndarray, name: str = "no-op") -> None:
        self.action = np.clip(np.zeros_like(np.asarray(low, dtype=np.float32)), low, high).astype(np.float32)
        self.name = name

        self._num_envs = 1

    def reset(self, num_envs: int) -> None:
        self._num_envs = num_envs

    def act(self, obs: Observation) -> np.ndarray:
        return np.repeat(self.action[None], self._num_envs, axis=0)


class UniformActionAgent(Agent):
    """Random: actions uniform in the env's Box, from ``numpy.random.default_rng((seed, 1))`` (re-seeded at reset).

    Args:
        low: The env's action lower bound ``[A]``.
        high: Its upper bound ``[A]``.
        seed: Seed.
        name: Row label.
    """

    privileged = False

    def __init__(self, *, low: np.ndarray, high: np.ndarray, seed: int = 0, name: str = "random") -> None:
        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError(f"{name} needs a bounded Box action space, got [{self.low}, {self.high}]")
        self.seed, self.name = seed, name
        self.reset(1)

    def reset(self, num_envs: int) -> None:
        self._num_envs = num_envs
        self.rng = np.random.default_rng((self.seed, 1))

    def act(self, obs: Observation) -> np.ndarray:
        return self.rng.uniform(self.low, self.high, size=(self._num_envs, *self.low.shape)).astype(np.float32)


class ReplayAgent(Agent):
    """Replay: each pair's own dataset actions from its start row (``offset`` of them), then zeros.

    Shows that the goal is reachable in the budget (on Push-T the block's velocity is restored too, so the replay is
    close to the recording; a budget below the offset cannot reach it).

    Args:
        pairs: The pairs, in the runner's order.
        low: The env's action lower bound ``[A]`` (actions are clipped into the Box).
        high: Its upper bound ``[A]``.
        name: Row label.
    """

    privileged = False

    def __init__(
        self, *, pairs: Sequence[FieldPair], low: np.ndarray, high: np.ndarray, name: str = "replay (dataset actions)"
    ) -> None:
        self.pairs, self.low, self.high, self.name = list(pairs), low, high, name
        self._t = 0

    def reset(self, num_envs: int) -> None:
        if num_envs != len(self.pairs):
            raise ValueError(f"{self.name} holds the actions of {len(self.pairs)} pairs, got {num_envs} episodes")
        self._t = 0

    def act(self, obs: Observation) -> np.ndarray:
        a = np.stack(
            [p.actions[self._t] if self._t < len(p.actions) else np.zeros_like(p.actions[0]) for p in self.pairs]
        )
        self._t += 1
        return np.clip(a, self.low, self.high).astype(np.float32)


class SimulatorFieldCEMAgent(_MPCBase):
    """Ceiling: the planner with the TRUE simulator as its model: each sample restores a copy of the env into the
    current state (with the goal set) and steps it; cost = last-step + mean distance to the goal over the horizon
    (`state_distance`), 0 from the step the env reports success on.

    Slow (one env reset per sample and step-by-step physics: on Push-T minutes per pair), so off by default.

    Args:
        sim: A spare env of the same id (restored for every sample).
        env_id: Its gymnasium id.
        settings: Planner settings (horizon in env steps).
        low: The env's action lower bound (scalar: the Box's minimum).
        high: Its upper bound (scalar: the Box's maximum).
        seed: Sampling seed.
        name: Row label.
    """

    privileged = True

    def __init__(
        self,
        *,
        sim: Any,
        env_id: str,
        settings: PlannerSettings,
        low: float,
        high: float,
        seed: int = 0,
        name: str = "CEM + true sim",
    ) -> None:
        self.sim, self.env_id, self.name = sim, env_id, name
        self.box_low, self.box_high = sim.action_space.low, sim.action_space.high
        action_dim = int(np.prod(sim.action_space.shape))
        super().__init__(settings=settings, action_dim=action_dim, max_norm=0.0, low=low, high=high, seed=seed)

    def _make_cost(self, current: np.ndarray, goal: np.ndarray) -> CostFn:
        def cost_fn(a: Tensor) -> Tensor:
            acts = np.clip(a.detach().cpu().double().numpy(), self.box_low, self.box_high)  # [E, S, H, A]
            cost = np.zeros(acts.shape[:2])
            for i in range(acts.shape[0]):
                for s in range(acts.shape[1]):
                    restore_env_state(self.sim, self.env_id, current[i], goal=goal[i])
                    total, d = 0.0, 0.0
                    for h in range(acts.shape[2]):
                        o, _, terminated, _, info = self.sim.step(acts[i, s, h].astype(self.sim.action_space.dtype))
                        state = read_env_state(self.sim, self.env_id, o, info)
                        d = 0.0 if terminated else state_distance(self.env_id, state, goal[i])
                        total += d
                    cost[i, s] = d + total / acts.shape[2]
            return torch.from_numpy(cost).float()

        return cost_fn

    def act(self, obs: Observation) -> np.ndarray:
        if obs.state is None:
            raise ValueError(f"{self.name} reads the true state, but obs.state is None")
        return self.mpc.act(obs.state, obs.goal_state)
