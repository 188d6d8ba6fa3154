"""Goal costs for the planners: latent distances to a goal, and the rollout cost built from a world model.

The planners see only a cost callable `cost_fn(a [E, S, H, A]) -> [E, S]`; this module is where a world model becomes
one (`rollout_cost`), so models never import planners and planners never see models.

Shapes: E parallel episodes, S samples, H horizon, A action dim; latents `[E, 1, HW, D]` from `WorldModel.encode`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from jepa_world.planning.planners import CostFn

__all__ = [
    "REDUCE_MODES",
    "CostFn",
    "compile_rollout",
    "goal_distance",
    "latent_distance",
    "return_cost",
    "rollout_cost",
]

REDUCE_MODES = ("last", "sum", "last+mean", "mean")


class RollsOut(Protocol):
    """What a cost needs of a world model: `rollout(z0, actions, states) -> latents` (see `WorldModel.rollout`)."""

    def rollout(self, z0: Tensor, actions: Tensor, states: Tensor | None = None) -> Tensor: ...


class _CompiledRollout:
    """A `RollsOut` whose `rollout` is the model's, through `torch.compile`."""

    def __init__(self, model: RollsOut):
        # cpp_wrapper: the kernels are called from C++, not Python (1.2x on a [100, 64] rollout, same compile time)
        self._compiled = torch.compile(model.rollout, dynamic=False, options={"cpp_wrapper": True})

    def rollout(self, z0: Tensor, actions: Tensor, states: Tensor | None = None) -> Tensor:
        try:
            return self._compiled(z0, actions, states)
        except torch._dynamo.exc.BackendCompilerFailed as err:  # no C++ compiler, an unsupported op, ...
            first = str(err).strip().splitlines()[0]
            raise RuntimeError(
                f"plan.compile: torch.compile could not build the world model's rollout ({first}); plan without "
                "plan.compile=true (the same plans, eager)"
            ) from err


def compile_rollout(model: RollsOut) -> RollsOut:
    """The same world model with its `rollout` verb compiled (`plan.compile`): what `rollout_cost` calls per iteration.

    Inductor turns the H steps of a Markov rollout (`ResidualMlpDynamics`) into one fused graph, which saves the
    per-op dispatch that dominates small batches (one episode: 100 samples). Shapes are static: the first call of each
    new `[E, S, H]` compiles (about a minute on a 2-core CPU for H = 40); later calls reuse it. The same math, rounded
    differently in the last bits, hence off by default. Measured in `scripts/bench_plan_speed.py`.
    """
    return _CompiledRollout(model)


def latent_distance(z: Tensor, z_goal: Tensor, *, p: int = 1, reduce: str = "last") -> Tensor:
    """Distance of predicted latents along the horizon to a goal latent, reduced to one cost per sample.

    The per-step distance is ``mean |z - z_goal|^p`` over all latent dims (``p=1``: mean L1, ``p=2``: mean squared
    L2, i.e. MSE).

    Args:
        z: Predicted latents ``# [E, S, H, ...]``.
        z_goal: Goal latents ``# [E, ...]`` (same trailing shape as ``z``).
        p: Exponent of the elementwise absolute difference (> 0).
        reduce: ``"last"`` (last step only), ``"sum"`` (sum over steps), ``"mean"`` (mean over steps) or
            ``"last+mean"`` (last step plus mean over steps, the best variant on Two-Rooms).

    Returns:
        Cost ``# [E, S]``.
    """
    if reduce not in REDUCE_MODES:
        raise ValueError(f"reduce must be one of {REDUCE_MODES}, got {reduce!r}")
    if p <= 0:
        raise ValueError(f"p must be > 0, got {p}")
    if z.dim() < 3:
        raise ValueError(f"z must have shape [E, S, H, ...], got shape {tuple(z.shape)}")
    e, s, h = z.shape[:3]
    if z_goal.shape != (e, *z.shape[3:]):
        raise ValueError(
            f"z_goal must have shape {(e, *z.shape[3:])} to match z of shape {tuple(z.shape)}, "
            f"got {tuple(z_goal.shape)}"
        )
    g = z_goal.reshape(e, 1, 1, *z.shape[3:])  # [E, 1, 1, ...]
    diff = (z - g).abs()
    if p != 1:
        diff = diff.pow(p)
    d = diff.reshape(e, s, h, -1).mean(dim=-1)  # [E, S, H]
    if reduce == "last":
        return d[..., -1]
    if reduce == "sum":
        return d.sum(dim=-1)
    if reduce == "mean":
        return d.mean(dim=-1)
    return d[..., -1] + d.mean(dim=-1)


def goal_distance(z: Tensor, z_goal: Tensor) -> Tensor:
    """Per-episode mean `|z - z_goal|` over all latent dims (the planner's per-step cost with p=1): `[E, ...] -> [E]`.

    Used for the stop rule and the energy landscape, where there is one latent per episode and no horizon.
    """
    return (z - z_goal).abs().flatten(1).mean(dim=1)


def rollout_cost(
    model: RollsOut,
    z0: Tensor,
    z_goal: Tensor,
    *,
    states: Tensor | None = None,
    p: int = 1,
    reduce: str = "last",
) -> CostFn:
    """A planner cost: roll sampled actions `[E, S, H, A]` out from z0 and measure the latent distance to a goal.

    Args:
        model: a world model (its `rollout` verb is all that is used).
        z0: `[E, 1, HW, D]` current latents (from `encode`).
        z_goal: `[E, HW, D]` or `[E, 1, HW, D]` goal latents.
        states: `[E, 1, S]` current states (filled forward by the model's `state_update`), if the model uses states.
        p: 1 for L1 (V-JEPA 2-AC), 2 for MSE.
        reduce: "last", "sum", "mean" or "last+mean" over the horizon (see `latent_distance`).

    Returns:
        `cost_fn(a [E, S, H, A]) -> [E, S]`.
    """
    z_goal = z_goal[:, 0] if z_goal.ndim == z0.ndim else z_goal
    s = None if states is None else states[:, None]

    def cost_fn(a: Tensor) -> Tensor:
        z = model.rollout(z0[:, None], a.to(z0.dtype), s)  # [E, S, H, HW, D]
        return latent_distance(z, z_goal, p=p, reduce=reduce)

    return cost_fn


def return_cost(
    model: RollsOut,
    z0: Tensor,
    z_goal: Tensor,
    *,
    value: Callable[[Tensor], Tensor],
    discount: float,
) -> CostFn:
    """A planner cost that is minus a policy's own return: discounted distances over the horizon, then the critic.

    `cost = (1 - discount) * (sum_t discount^t d(z_{t+1}, g) - discount^H value(z_H))` with `d` the mean L1 latent
    distance (`goal_distance`): exactly the quantity an actor-critic trained on the reward `-d` estimates, scaled by
    `1 - discount` to a weighted mean distance. With a critic for what lies beyond it the horizon can be short.

    Args:
        model: a world model (its `rollout` verb).
        z0: `[E, 1, HW, D]` current latents.
        z_goal: `[E, HW, D]` or `[E, 1, HW, D]` goal latents.
        value: `value(z_last [E, S, HW, D]) -> [E, S]`, the critic's value of the last latent (minus the discounted
            distances still to come).
        discount: gamma in (0, 1].

    Returns:
        `cost_fn(a [E, S, H, A]) -> [E, S]`.
    """
    if not 0.0 < discount <= 1.0:
        raise ValueError(f"discount must be in (0, 1], got {discount}")
    z_goal = z_goal[:, 0] if z_goal.ndim == z0.ndim else z_goal

    def cost_fn(a: Tensor) -> Tensor:
        z = model.rollout(z0[:, None], a.to(z0.dtype))  # [E, S, H, HW, D]
        e, s, h = z.shape[:3]
        d = (z - z_goal.reshape(e, 1, 1, *z_goal.shape[1:])).abs().reshape(e, s, h, -1).mean(-1)  # [E, S, H]
        w = discount ** torch.arange(h, device=z.device, dtype=d.dtype)  # [H]
        scale = 1.0 - discount if discount < 1.0 else 1.0 / h
        return scale * ((d * w).sum(-1) - discount**h * value(z[:, :, -1]))

    return cost_fn
