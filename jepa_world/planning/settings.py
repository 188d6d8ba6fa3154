"""From planner settings (`config.PlannerSettings`, the `plan.*` section) to a planner for a box action space."""

from __future__ import annotations

from jepa_world.config import PlannerSettings
from jepa_world.planning.planners import CEMPlanner, MPPIPlanner, SamplingPlanner

PLANNERS = ("cem", "mppi")


def make_planner(
    settings: PlannerSettings, *, action_dim: int, max_norm: float, low: float, high: float
) -> SamplingPlanner:
    """Build the CEM or MPPI planner of `settings` for a box action space with a norm bound.

    Args:
        settings: planner choice and budget (a `PlannerSettings`, or the `plan` section of a config).
        action_dim: action dimension A.
        max_norm: bound on the L2 norm of each sampled action (0 disables it), e.g. the env's action bound.
        low: lower bound per dimension.
        high: upper bound per dimension.
    """
    if settings.planner not in PLANNERS:
        raise ValueError(f"planner must be one of {PLANNERS}, got {settings.planner!r}")
    common = dict(
        horizon=settings.horizon,
        action_dim=action_dim,
        num_samples=settings.samples,
        iterations=settings.iterations,
        low=low,
        high=high,
        init_std=settings.init_std,
        momentum=settings.momentum,
        max_norm=max_norm if max_norm > 0 else None,
    )
    if settings.planner == "cem":
        return CEMPlanner(num_elites=settings.elites or max(1, settings.samples // 10), **common)
    return MPPIPlanner(temperature=settings.temperature, num_elites=settings.elites, **common)
