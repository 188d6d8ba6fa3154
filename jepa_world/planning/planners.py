"""Sampling-based planners over action sequences: CEM and MPPI behind one interface.

Planners only see a cost function over batched action sequences; they know nothing about encoders, world models or
environments. The caller closes over its model (encode observation and goal, roll the predictor out over the sampled
actions, measure a latent distance) and hands the planner a ``CostFn``.

References:
    - Cross-entropy method for MPC: PlaNet (Hafner et al., 2019), DINO-WM (Zhou et al., 2024),
      V-JEPA 2-AC (Assran et al., 2025: mean/std momentum 0.15, per-dimension clipping, execute first action).
    - MPPI with a softmax-weighted update: Williams et al. (2017), TD-MPC2 (Hansen et al., 2024).
    - Warm start from the previous plan shifted by one step, and keeping the current mean as a sample: JEPA-WMs.
    - Proposals from a learned policy mixed into every iteration's samples: TD-MPC2 (Hansen et al., 2024).

Shape conventions:
    E parallel episodes, S sampled sequences per episode, H planning horizon, A action dimension.
    ``cost_fn(a)`` maps ``a`` ``# [E, S, H, A]`` to a cost ``# [E, S]`` (lower is better), called once per iteration.
    Plans are ``# [E, H, A]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CEMPlanner", "CostFn", "MPPIPlanner", "PlanResult", "Planner", "SamplingPlanner", "shift_plan"]

CostFn = Callable[[Tensor], Tensor]


# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------


def shift_plan(actions: Tensor, *, steps: int = 1, fill: float | Tensor | str = 0.0) -> Tensor:
    """Warm start: drop the first ``steps`` actions of a plan and pad the end.

    Args:
        actions: Plans ``# [..., H, A]`` (usually ``[E, H, A]``).
        steps: Number of executed actions to drop (>= 0). ``steps >= H`` leaves only padding.
        fill: Padding value: a float, a tensor broadcastable to ``[..., steps, A]`` (e.g. per-dimension ``[A]``), or
            ``"last"`` to repeat the plan's last action.

    Returns:
        Shifted plans with the same shape as ``actions`` (a new tensor).
    """
    if actions.dim() < 2:
        raise ValueError(f"actions must have shape [..., H, A], got shape {tuple(actions.shape)}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    h = actions.shape[-2]
    n = min(steps, h)
    kept = actions[..., n:, :]
    pad_shape = (*actions.shape[:-2], n, actions.shape[-1])
    if isinstance(fill, str):
        if fill != "last":
            raise ValueError(f"fill must be a float, a tensor or 'last', got {fill!r}")
        pad = actions[..., -1:, :].expand(pad_shape)
    else:
        pad = torch.as_tensor(fill, dtype=actions.dtype, device=actions.device).expand(pad_shape)
    return torch.cat([kept, pad], dim=-2).clone()


def _per_dim(value: float | Sequence[float] | Tensor, action_dim: int, name: str, device: torch.device) -> Tensor:
    """Broadcast a scalar or per-dimension setting to a float32 tensor ``# [A]``."""
    t = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    if t.dim() == 0:
        t = t.expand(action_dim).clone()
    if t.shape != (action_dim,):
        raise ValueError(
            f"{name} must be a scalar or have shape ({action_dim},) (action_dim), got shape {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    return t.to(device)


# ----------------------------------------------------------------------------------------------------------------------
# Planners
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class PlanResult:
    """Output of ``Planner.plan``.

    Attributes:
        actions: Best plan per episode ``# [E, H, A]``: the lowest-cost sequence evaluated during the whole search (with
            ``keep_mean`` every intermediate mean is among them). The final distribution update is not evaluated, so
            no extra cost call is spent on it.
        cost: Cost of ``actions`` as returned by ``cost_fn`` ``# [E]`` (NaN costs are ranked as the worst value).
        iterations: Number of iterations run (= number of ``cost_fn`` calls).
        history: Per iteration, the mean elite cost (CEM) or softmax-weighted cost (MPPI), averaged over episodes.
    """

    actions: Tensor
    cost: Tensor
    iterations: int
    history: list[float] | None = None


class Planner(ABC):
    """Small interface: ``plan(cost_fn, *, num_envs, init=None, generator=None, proposals=None) -> PlanResult``."""

    horizon: int
    action_dim: int

    @abstractmethod
    def plan(
        self,
        cost_fn: CostFn,
        *,
        num_envs: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
        proposals: Tensor | None = None,
    ) -> PlanResult:
        """Search for the action sequence minimising ``cost_fn`` for each of ``num_envs`` episodes.

        Args:
            cost_fn: Maps actions ``# [E, S, H, A]`` to costs ``# [E, S]``.
            num_envs: Number of parallel episodes E.
            init: Initial mean ``# [E, H, A]`` or ``# [H, A]`` (e.g. a shifted previous plan), or None.
            generator: Torch generator on the planner's device for reproducible sampling.
            proposals: Candidate sequences ``# [E, P, H, A]`` to evaluate among the samples, or None.

        Returns:
            The best plan per episode and its cost.
        """


@dataclass(kw_only=True, eq=False)
class SamplingPlanner(Planner):
    """Settings and machinery CEM and MPPI share: Gaussian sampling around a mean, projection onto the feasible set.

    The settings are dataclass fields, declared once here; `CEMPlanner` and `MPPIPlanner` add their own (elites,
    temperature) and their own defaults for the budget. After construction `low`, `high` and `init_std` are float32
    tensors `[A]` on `device`.

    Attributes:
        horizon: Planning horizon H (>= 1).
        action_dim: Action dimension A (>= 1).
        num_samples: Samples per episode and iteration S.
        iterations: Distribution updates (= cost_fn calls) per plan.
        low: Lower action bound, scalar or per dimension `[A]`.
        high: Upper action bound, scalar or per dimension `[A]`; must exceed `low` everywhere.
        init_std: Initial sampling std, scalar or per dimension `[A]`.
        min_std: Floor on the std after each update.
        momentum: `new = momentum * old + (1 - momentum) * refit` for mean and std (V-JEPA 2-AC: 0.15).
        fixed_dims: `{dim: value}` held constant in every sample (e.g. a gripper), never sampled.
        keep_mean: Put the current mean in as sample 0, so a good warm start is never lost.
        max_norm: Shrink each sampled action vector (over the non-fixed dims) to at most this L2 norm; needs
            `low <= 0 <= high` on those dims.
        device: Device of the samples handed to `cost_fn`.
    """

    horizon: int
    action_dim: int
    num_samples: int = 300
    iterations: int = 10
    low: float | Sequence[float] | Tensor = -1.0
    high: float | Sequence[float] | Tensor = 1.0
    init_std: float | Sequence[float] | Tensor = 1.0
    min_std: float = 1e-3
    momentum: float = 0.0
    fixed_dims: dict[int, float] | None = None
    keep_mean: bool = True
    max_norm: float | None = None
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        horizon, action_dim, num_samples, iterations = self.horizon, self.action_dim, self.num_samples, self.iterations
        low, high, init_std, min_std, momentum = self.low, self.high, self.init_std, self.min_std, self.momentum
        fixed_dims, keep_mean, max_norm, device = self.fixed_dims, self.keep_mean, self.max_norm, self.device
        for name, val, lo in (("horizon", horizon, 1), ("action_dim", action_dim, 1), ("num_samples", num_samples, 1)):
            if not isinstance(val, int) or isinstance(val, bool) or val < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {val!r}")
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
            raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
        if min_std < 0:
            raise ValueError(f"min_std must be >= 0, got {min_std}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm must be > 0 or None, got {max_norm}")
        self.device = torch.device(device)
        self.horizon = horizon
        self.action_dim = action_dim
        self.num_samples = num_samples
        self.iterations = iterations
        self.low = _per_dim(low, action_dim, "low", self.device)  # [A]
        self.high = _per_dim(high, action_dim, "high", self.device)  # [A]
        bad = (self.low >= self.high).nonzero().flatten().tolist()
        if bad:
            raise ValueError(
                f"low must be < high in every dimension; violated at dims {bad}: "
                f"low={self.low[bad].tolist()}, high={self.high[bad].tolist()}"
            )
        uniform = bool((self.low == self.low[0]).all() and (self.high == self.high[0]).all())
        self._uniform_bounds = (float(self.low[0]), float(self.high[0])) if uniform else None
        self.init_std = _per_dim(init_std, action_dim, "init_std", self.device)  # [A]
        if (self.init_std <= 0).any():
            raise ValueError(f"init_std must be > 0 in every dimension, got {self.init_std.tolist()}")
        self.min_std = float(min_std)
        self.momentum = float(momentum)
        self.keep_mean = bool(keep_mean)
        self.max_norm = None if max_norm is None else float(max_norm)

        self.fixed_dims = dict(fixed_dims or {})
        for d, v in self.fixed_dims.items():
            if not isinstance(d, int) or isinstance(d, bool) or not 0 <= d < action_dim:
                raise ValueError(f"fixed_dims key must be an action dim index in [0, {action_dim}), got {d!r}")
            if not float(self.low[d]) <= float(v) <= float(self.high[d]):
                raise ValueError(
                    f"fixed_dims[{d}]={v} lies outside the bounds [{float(self.low[d])}, {float(self.high[d])}]"
                )
        self._fixed_idx = torch.tensor(sorted(self.fixed_dims), dtype=torch.long, device=self.device)
        self._fixed_val = torch.tensor(
            [float(self.fixed_dims[d]) for d in sorted(self.fixed_dims)], dtype=torch.float32, device=self.device
        )
        self._free = torch.ones(action_dim, dtype=torch.bool, device=self.device)  # [A]
        self._free[self._fixed_idx] = False
        if self.max_norm is not None:
            # Shrinking towards the origin keeps a box feasible only if the box contains the origin.
            outside = ((self.low > 0) | (self.high < 0)) & self._free
            if outside.any():
                raise ValueError(
                    f"max_norm needs low <= 0 <= high on every sampled dim; violated at dims "
                    f"{outside.nonzero().flatten().tolist()} (low={self.low.tolist()}, high={self.high.tolist()})"
                )

    # -- sampling ------------------------------------------------------------------------------------------------------

    def default_mean(self, num_envs: int) -> Tensor:
        """Initial mean ``# [E, H, A]``: the centre of the bounds (0 if symmetric), fixed dims at their value."""
        mid = (self.low + self.high) / 2
        return self._project(mid.expand(num_envs, self.horizon, self.action_dim).clone())

    def _project(self, a: Tensor) -> Tensor:
        """Clamp ``# [..., A]`` into the per-dimension box, then shrink the free dims to ``max_norm``."""
        # Scalar clamp is ~30x faster than broadcasting a [A] bound over a tiny last dim on CPU.
        ub = self._uniform_bounds
        a = a.clamp(*ub) if ub is not None else torch.clamp(a, self.low, self.high)
        if self.max_norm is not None:
            free = a * self._free
            norm = free.norm(dim=-1, keepdim=True)
            scale = (self.max_norm / norm.clamp_min(1e-12)).clamp(max=1.0)
            a = torch.where(self._free, a * scale, a)
        if self.fixed_dims:
            a[..., self._fixed_idx] = self._fixed_val
        return a

    def _initial_mean(self, init: Tensor | None, num_envs: int) -> Tensor:
        if init is None:
            return self.default_mean(num_envs)
        init = torch.as_tensor(init, dtype=torch.float32, device=self.device)
        if init.shape == (self.horizon, self.action_dim):
            init = init.expand(num_envs, -1, -1)
        if init.shape != (num_envs, self.horizon, self.action_dim):
            raise ValueError(
                f"init must have shape ({num_envs}, {self.horizon}, {self.action_dim}) or "
                f"({self.horizon}, {self.action_dim}), got {tuple(init.shape)}"
            )
        return self._project(init.clone())

    def _check_proposals(self, proposals: Tensor | None, num_envs: int) -> Tensor | None:
        if proposals is None:
            return None
        p = torch.as_tensor(proposals, dtype=torch.float32, device=self.device)
        if p.ndim != 4 or p.shape[0] != num_envs or p.shape[2:] != (self.horizon, self.action_dim):
            raise ValueError(
                f"proposals must have shape ({num_envs}, P, {self.horizon}, {self.action_dim}) ([E, P, H, A]), got "
                f"{tuple(p.shape)}"
            )
        if not 1 <= p.shape[1] < self.num_samples:
            raise ValueError(f"proposals per episode must be in [1, num_samples={self.num_samples}), got {p.shape[1]}")
        return self._project(p.clone())

    def _sample(self, mean: Tensor, std: Tensor, generator: torch.Generator | None) -> Tensor:
        e = mean.shape[0]
        eps = torch.randn(
            (e, self.num_samples, self.horizon, self.action_dim),
            generator=generator,
            device=self.device,
            dtype=torch.float32,
        )
        samples = torch.addcmul(mean.unsqueeze(1), std.unsqueeze(1), eps)  # [E, S, H, A]
        if self.keep_mean:
            samples[:, 0] = mean
        return self._project(samples)

    def _evaluate(self, cost_fn: CostFn, samples: Tensor) -> Tensor:
        cost = cost_fn(samples)
        if not isinstance(cost, Tensor):
            raise TypeError(f"cost_fn must return a torch.Tensor, got {type(cost).__name__}")
        if cost.shape != samples.shape[:2]:
            raise ValueError(
                f"cost_fn must return costs of shape {tuple(samples.shape[:2])} ([E, S]) for actions of shape "
                f"{tuple(samples.shape)}, got {tuple(cost.shape)}"
            )
        cost = cost.detach().to(device=self.device, dtype=torch.float32)
        # NaN/inf costs (diverged rollouts) must not poison topk or softmax: rank them as the worst finite value.
        return torch.nan_to_num(cost, nan=torch.finfo(torch.float32).max)

    @abstractmethod
    def _update(self, samples: Tensor, cost: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return the new (mean ``# [E, H, A]``, std ``# [E, H, A]``, summary cost ``# [E]``) from one batch."""

    @torch.no_grad()
    def plan(
        self,
        cost_fn: CostFn,
        *,
        num_envs: int = 1,
        init: Tensor | None = None,
        generator: torch.Generator | None = None,
        proposals: Tensor | None = None,
    ) -> PlanResult:
        """Search for the action sequence minimising ``cost_fn`` for each of ``num_envs`` episodes.

        Args:
            cost_fn: Maps actions ``# [E, S, H, A]`` to costs ``# [E, S]``; called exactly ``iterations`` times.
            num_envs: Number of parallel episodes E.
            init: Initial mean ``# [E, H, A]`` or ``# [H, A]`` (projected onto the bounds), or None for the centre
                of the bounds.
            generator: Torch generator on the planner's device for reproducible sampling (global RNG if None).
            proposals: Sequences ``# [E, P, H, A]`` (e.g. a policy's imagined rollouts) that replace the last P of the
                S Gaussian samples in every iteration (projected onto the bounds), so they compete for the elites.

        Returns:
            The lowest-cost evaluated sequence per episode, its cost, and the per-iteration summary cost.
        """
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        mean = self._initial_mean(init, num_envs)  # [E, H, A]
        proposals = self._check_proposals(proposals, num_envs)  # [E, P, H, A] or None
        std = self.init_std.expand_as(mean).clone()  # [E, H, A]
        best_cost = torch.full((num_envs,), float("inf"), device=self.device)  # [E]
        best_actions = mean.clone()  # [E, H, A]
        summaries = []
        m = self.momentum
        for _ in range(self.iterations):
            samples = self._sample(mean, std, generator)  # [E, S, H, A]
            if proposals is not None:
                samples[:, -proposals.shape[1] :] = proposals
            cost = self._evaluate(cost_fn, samples)  # [E, S]
            c_min, i_min = cost.min(dim=1)  # [E]
            better = c_min < best_cost
            best_cost = torch.where(better, c_min, best_cost)
            cand = samples[torch.arange(num_envs, device=self.device), i_min]  # [E, H, A]
            best_actions = torch.where(better[:, None, None], cand, best_actions)
            new_mean, new_std, summary = self._update(samples, cost)
            mean = m * mean + (1 - m) * new_mean
            std = (m * std + (1 - m) * new_std).clamp_min(self.min_std)
            summaries.append(summary.mean())
        history = torch.stack(summaries).tolist()
        return PlanResult(actions=best_actions, cost=best_cost, iterations=self.iterations, history=history)


@dataclass(kw_only=True, eq=False)
class CEMPlanner(SamplingPlanner):
    """Cross-entropy method: refit a diagonal Gaussian to the `num_elites` lowest-cost samples per episode.

    Settings in the literature (samples / elites / iterations, horizon): V-JEPA 2-AC 400/10/10, H=2, momentum 0.15,
    std = 0.05 on xyz; DINO-WM 300/30/10-30, H=5; PlaNet 1000/100/10, H=12. The shared settings are those of
    `SamplingPlanner`.

    Attributes:
        num_elites: Elites per episode (<= num_samples).
    """

    num_samples: int = 300
    num_elites: int = 30
    iterations: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        num_elites, num_samples = self.num_elites, self.num_samples
        if not isinstance(num_elites, int) or isinstance(num_elites, bool) or not 1 <= num_elites <= num_samples:
            raise ValueError(f"num_elites must be an int in [1, num_samples={num_samples}], got {num_elites!r}")

    def _update(self, samples: Tensor, cost: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        elite_cost, idx = torch.topk(cost, self.num_elites, dim=1, largest=False)  # [E, K]
        e = samples.shape[0]
        elites = samples[torch.arange(e, device=self.device)[:, None], idx]  # [E, K, H, A]
        return elites.mean(dim=1), elites.std(dim=1, unbiased=False), elite_cost.mean(dim=1)


@dataclass(kw_only=True, eq=False)
class MPPIPlanner(SamplingPlanner):
    """MPPI: refit mean and std to all samples (or the top `num_elites`) weighted by `softmax(-cost / temperature)`.

    Note the temperature divides the cost (larger = flatter weights). TD-MPC2 multiplies its score by 0.5, which
    corresponds to `temperature=2` here; its 512 samples / 64 elites / 6 iterations, H=3, are a good start. The shared
    settings are those of `SamplingPlanner`.

    Attributes:
        temperature: Softmax temperature (> 0), in units of the cost.
        num_elites: If set, only the lowest-cost `num_elites` samples get weight (TD-MPC2); None uses all samples.
    """

    num_samples: int = 512
    iterations: int = 6
    temperature: float = 0.5
    num_elites: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        temperature, num_elites, num_samples = self.temperature, self.num_elites, self.num_samples
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if num_elites is not None and (
            not isinstance(num_elites, int) or isinstance(num_elites, bool) or not 1 <= num_elites <= num_samples
        ):
            raise ValueError(f"num_elites must be None or an int in [1, num_samples={num_samples}], got {num_elites!r}")
        self.temperature = float(temperature)

    def _update(self, samples: Tensor, cost: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.num_elites is not None:
            cost, idx = torch.topk(cost, self.num_elites, dim=1, largest=False)  # [E, K]
            samples = samples[torch.arange(samples.shape[0], device=self.device)[:, None], idx]  # [E, K, H, A]
        # Subtract the minimum so huge costs do not underflow every weight to zero.
        w = torch.softmax(-(cost - cost.min(dim=1, keepdim=True).values) / self.temperature, dim=1)  # [E, K]
        w4 = w[:, :, None, None]
        mean = (w4 * samples).sum(dim=1)  # [E, H, A]
        var = (w4 * (samples - mean.unsqueeze(1)).square()).sum(dim=1)
        return mean, var.sqrt(), (w * cost).sum(dim=1)
