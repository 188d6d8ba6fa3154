"""Model-predictive control around a planner: replan every few steps, warm-started from the shifted last plan.

References: PlaNet (Hafner et al., 2019) and TD-MPC2 (Hansen et al., 2024) receding-horizon control; the warm start
from the previous plan shifted by the executed steps, as in JEPA-WMs.

Shapes: E parallel episodes, H horizon, A action dim; plans `[E, H, A]`, actions returned `float32 [E, A]`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jepa_world.planning.planners import CostFn, Planner, PlanResult, shift_plan


def _as_bound_array(value: np.ndarray | Tensor | None, name: str) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array [A], got shape {arr.shape}")
    return arr


class MPCAgent:
    """Model-predictive control around a ``Planner``.

    Every ``replan_every`` calls to ``act`` it builds a cost for the current observations and goals with
    ``make_cost(obs, goal)`` and plans (warm-started from the previous plan shifted by the executed steps); in between
    it executes the next actions of the current plan.

    Args:
        planner: Any ``Planner``.
        make_cost: ``make_cost(obs_batch, goal_batch) -> CostFn`` for the current state (the caller encodes obs and
            goal with its world model and returns a function of the sampled actions).
        replan_every: Env steps between replans (1 <= replan_every <= planner.horizon).
        warm_start: Initialise each plan from the previous one shifted by ``replan_every`` steps.
        action_low: Lower env action bound (scalar or ``[A]``) for clipping the returned actions, or None.
        action_high: Upper env action bound (scalar or ``[A]``), or None.
        shift_fill: Padding for the warm start (see ``shift_plan``): a float, a tensor ``[A]`` or ``"last"``.
        generator: Torch generator passed to every ``plan`` call for reproducible episodes.
        make_proposals: ``make_proposals(obs_batch, goal_batch) -> [E, P, H, A]`` candidate sequences (a policy's
            imagined rollouts) mixed into every iteration's samples; the first one is also the initial mean of a
            plan without a previous plan to warm-start from. None: Gaussian samples only.

    Attributes:
        last_plan_time: Wall-clock seconds of the last replan (``make_cost`` + ``plan``, device synchronised).
        last_result: ``PlanResult`` of the last replan, or None.
        num_plans: Replans since the last ``reset``.
    """

    def __init__(
        self,
        *,
        planner: Planner,
        make_cost: Callable[[Any, Any], CostFn],
        replan_every: int = 1,
        warm_start: bool = True,
        action_low: np.ndarray | Tensor | None = None,
        action_high: np.ndarray | Tensor | None = None,
        shift_fill: float | Tensor | str = 0.0,
        generator: torch.Generator | None = None,
        make_proposals: Callable[[Any, Any], Tensor] | None = None,
    ) -> None:
        if not isinstance(replan_every, int) or isinstance(replan_every, bool) or replan_every < 1:
            raise ValueError(f"replan_every must be an int >= 1, got {replan_every!r}")
        if replan_every > planner.horizon:
            raise ValueError(f"replan_every={replan_every} exceeds the planner horizon {planner.horizon}")
        self.planner = planner
        self.make_cost = make_cost
        self.replan_every = replan_every
        self.warm_start = bool(warm_start)
        self.action_low = _as_bound_array(action_low, "action_low")
        self.action_high = _as_bound_array(action_high, "action_high")
        if (
            self.action_low is not None
            and self.action_high is not None
            and np.any(np.broadcast_to(self.action_low, self.action_high.shape) > self.action_high)
        ):
            raise ValueError(f"action_low must be <= action_high, got {self.action_low} and {self.action_high}")
        self.shift_fill = shift_fill
        self.generator = generator
        self.make_proposals = make_proposals
        self.last_plan_time = 0.0
        self.reset()

    def reset(self, num_envs: int = 1) -> None:
        """Start new episodes: forget the current plan (no warm start for the next one)."""
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        self.num_envs = num_envs
        self.last_result: PlanResult | None = None
        self.num_plans = 0
        self._plan: Tensor | None = None  # [E, H, A] on the planner's device
        self._plan_np: np.ndarray | None = None  # [E, H, A]
        self._t = 0  # actions of the current plan executed so far

    def _replan(self, obs: Any, goal: Any) -> None:
        start = time.perf_counter()
        init = None
        if self.warm_start and self._plan is not None:
            init = shift_plan(self._plan, steps=self._t, fill=self.shift_fill)
        cost_fn = self.make_cost(obs, goal)
        proposals = None if self.make_proposals is None else self.make_proposals(obs, goal)  # [E, P, H, A]
        if proposals is not None and init is None:
            init = proposals[:, 0]
        extra = {} if proposals is None else {"proposals": proposals}  # planners without proposals still plug in
        result = self.planner.plan(cost_fn, num_envs=self.num_envs, init=init, generator=self.generator, **extra)
        self._plan = result.actions
        # The host copy synchronises the device, so the timing covers the whole search.
        self._plan_np = result.actions.detach().float().cpu().numpy()
        self.last_plan_time = time.perf_counter() - start
        self.last_result = result
        self.num_plans += 1
        self._t = 0

    def act(self, obs: Any, goal: Any) -> np.ndarray:
        """Return the next actions ``# [E, A]`` (float32), replanning if ``replan_every`` steps have passed.

        Args:
            obs: Current observations, batched over ``num_envs`` in whatever form ``make_cost`` accepts.
            goal: Goals, batched the same way.
        """
        if self._plan_np is None or self._t >= self.replan_every:
            self._replan(obs, goal)
        a = self._plan_np[:, self._t].astype(np.float32, copy=True)  # [E, A]
        self._t += 1
        if self.action_low is not None or self.action_high is not None:
            a = np.clip(a, self.action_low, self.action_high).astype(np.float32, copy=False)
        return a
