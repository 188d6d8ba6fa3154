"""Tests for jepa_world.planning: CEM / MPPI planners, warm start, MPC agent, latent distances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jepa_world.planning import (
    CEMPlanner,
    MPCAgent,
    MPPIPlanner,
    PlanResult,
    latent_distance,
    shift_plan,
)

torch.set_num_threads(1)  # tiny tensors: thread fan-out only adds latency on a shared 2-core machine


def _quadratic(target: torch.Tensor):
    """Cost ||a - a*||^2 summed over the horizon; target # [E, H, A]."""

    def cost_fn(a: torch.Tensor) -> torch.Tensor:
        return (a - target[:, None]).square().sum(dim=(-1, -2))

    return cost_fn


class _Recorder:
    """Cost wrapper that keeps every batch of samples it was called with."""

    def __init__(self, fn):
        self.fn = fn
        self.calls: list[torch.Tensor] = []

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        self.calls.append(a.clone())
        return self.fn(a)


def _cem(**kw) -> CEMPlanner:
    return CEMPlanner(**{"horizon": 4, "action_dim": 2, "num_samples": 200, "num_elites": 20, "iterations": 8, **kw})


def _mppi(**kw) -> MPPIPlanner:
    return MPPIPlanner(
        **{
            "horizon": 4,
            "action_dim": 2,
            "num_samples": 512,
            "iterations": 15,
            "temperature": 1.0,
            "num_elites": 64,
            **kw,
        }
    )


PLANNERS = {"cem": _cem, "mppi": _mppi}


# ----------------------------------------------------------------------------------------------------------------------
# Planners on mock costs
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_finds_quadratic_optimum_per_episode(name):
    g = torch.Generator().manual_seed(0)
    target = torch.rand(3, 4, 2, generator=g) * 1.6 - 0.8  # [E, H, A], distinct per episode, inside [-1, 1]
    cost_fn = _quadratic(target)
    res = PLANNERS[name]().plan(cost_fn, num_envs=3, generator=torch.Generator().manual_seed(1))
    assert isinstance(res, PlanResult)
    assert res.actions.shape == (3, 4, 2) and res.cost.shape == (3,)
    tol = 0.05 if name == "cem" else 0.12
    assert (res.actions - target).abs().max() < tol
    torch.testing.assert_close(res.cost, cost_fn(res.actions[:, None])[:, 0])
    assert res.iterations == len(res.history) == PLANNERS[name]().iterations
    assert res.history[-1] < res.history[0]


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_optimum_outside_bounds_lands_on_bound(name):
    low, high = torch.tensor([-1.0, -0.5]), torch.tensor([1.0, 0.25])
    target = torch.tensor([3.0, -2.0]).expand(2, 4, 2)  # beyond high in dim 0, below low in dim 1
    rec = _Recorder(_quadratic(target))
    res = PLANNERS[name](low=low, high=high).plan(rec, num_envs=2, generator=torch.Generator().manual_seed(0))
    for a in rec.calls:
        assert (a >= low).all() and (a <= high).all()
    assert (res.actions >= low).all() and (res.actions <= high).all()
    torch.testing.assert_close(res.actions, torch.tensor([1.0, -0.5]).expand(2, 4, 2), atol=0.02, rtol=0)


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_fixed_dims_never_sampled(name):
    target = torch.zeros(2, 4, 3)
    rec = _Recorder(_quadratic(target))
    planner = PLANNERS[name](action_dim=3, fixed_dims={1: 0.7})
    init = torch.randn(4, 3)  # init disagrees with the fixed value on purpose
    res = planner.plan(rec, num_envs=2, init=init, generator=torch.Generator().manual_seed(0))
    for a in rec.calls:
        assert (a[..., 1] == 0.7).all()
    assert (res.actions[..., 1] == 0.7).all()
    assert res.actions[..., [0, 2]].abs().max() < 0.2  # the free dims are still optimised


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_keep_mean_returns_initial_mean_when_optimal(name):
    init = torch.rand(2, 4, 2, generator=torch.Generator().manual_seed(3)) - 0.5
    cost_fn = _quadratic(init)
    res = PLANNERS[name](iterations=1).plan(cost_fn, num_envs=2, init=init, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(res.actions, init, atol=0, rtol=0)
    assert (res.cost == 0).all()
    # Without keep_mean the mean is never evaluated, so random samples cannot hit it exactly.
    res = PLANNERS[name](iterations=1, keep_mean=False).plan(
        cost_fn, num_envs=2, init=init, generator=torch.Generator().manual_seed(0)
    )
    assert (res.cost > 0).all()


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_max_norm_respected_by_all_samples(name):
    target = torch.full((2, 4, 2), 5.0)  # pulls every sample towards large norms
    rec = _Recorder(_quadratic(target))
    res = PLANNERS[name](low=-3.0, high=3.0, max_norm=0.8, init_std=2.0).plan(
        rec, num_envs=2, generator=torch.Generator().manual_seed(0)
    )
    norms = torch.cat([a.norm(dim=-1).flatten() for a in rec.calls])
    assert norms.max() <= 0.8 + 1e-5
    assert norms.max() > 0.79  # the constraint is active, not trivially satisfied
    assert res.actions.norm(dim=-1).max() <= 0.8 + 1e-5


def test_max_norm_ignores_fixed_dims():
    rec = _Recorder(_quadratic(torch.full((1, 4, 3), 5.0)))
    _cem(action_dim=3, low=-3.0, high=3.0, max_norm=0.5, fixed_dims={2: 2.0}).plan(rec)
    a = torch.cat(rec.calls)
    assert a[..., :2].norm(dim=-1).max() <= 0.5 + 1e-5
    assert (a[..., 2] == 2.0).all()


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_deterministic_with_generator_and_one_call_per_iteration(name):
    target = torch.rand(5, 4, 2, generator=torch.Generator().manual_seed(0)) - 0.5
    planner = PLANNERS[name](iterations=7)
    rec = _Recorder(_quadratic(target))
    r1 = planner.plan(rec, num_envs=5, generator=torch.Generator().manual_seed(42))
    assert len(rec.calls) == 7
    assert all(a.shape == (5, planner.num_samples, 4, 2) for a in rec.calls)
    r2 = planner.plan(_quadratic(target), num_envs=5, generator=torch.Generator().manual_seed(42))
    r3 = planner.plan(_quadratic(target), num_envs=5, generator=torch.Generator().manual_seed(43))
    assert torch.equal(r1.actions, r2.actions) and r1.history == r2.history
    assert not torch.equal(r1.actions, r3.actions)


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_returns_best_sample_over_all_iterations(name):
    target = torch.rand(4, 4, 2, generator=torch.Generator().manual_seed(0)) - 0.5
    cost_fn = _quadratic(target)
    rec = _Recorder(cost_fn)
    # A high std floor keeps the search noisy, so the best sample need not come from the last iteration.
    planner = PLANNERS[name](iterations=6, min_std=0.5, keep_mean=False)
    res = planner.plan(rec, num_envs=4, generator=torch.Generator().manual_seed(0))
    all_costs = torch.cat([cost_fn(a) for a in rec.calls], dim=1)  # [E, iterations * S]
    torch.testing.assert_close(res.cost, all_costs.min(dim=1).values)
    torch.testing.assert_close(res.cost, cost_fn(res.actions[:, None])[:, 0])


def test_momentum_slows_the_update():
    target = torch.full((1, 4, 2), 0.6)
    costs = {}
    for m in (0.0, 0.9):
        res = _cem(iterations=5, momentum=m).plan(_quadratic(target), generator=torch.Generator().manual_seed(0))
        costs[m] = res.cost.item()
    assert costs[0.9] > 10 * costs[0.0]


def test_mppi_temperature_controls_weighting():
    target = torch.rand(1, 4, 2, generator=torch.Generator().manual_seed(0)) - 0.5
    hist = {}
    for t in (0.01, 100.0):
        res = _mppi(iterations=1, temperature=t).plan(_quadratic(target), generator=torch.Generator().manual_seed(0))
        hist[t] = res.history[0]
    # A cold softmax puts its weight on the best samples, a hot one averages all of them.
    assert hist[0.01] < 0.5 * hist[100.0]


def test_nan_costs_ranked_worst():
    target = torch.zeros(1, 4, 2)

    def cost_fn(a):
        c = _quadratic(target)(a)
        return torch.where(a[..., 0, 0] > 0, torch.full_like(c, float("nan")), c)

    res = _cem().plan(cost_fn, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(res.cost).all() and res.actions[0, 0, 0] <= 0


def test_wall_toy_routes_around_penalty_region():
    """2-D point, position = cumsum of actions; a wall blocks the straight line to the goal."""
    goal = torch.tensor([5.0, 0.0])

    def inside_wall(pos):
        return (pos[..., 0] >= 2.0) & (pos[..., 0] <= 3.0) & (pos[..., 1].abs() <= 1.5)

    def cost_fn(a):  # [E, S, H, 2]
        pos = a.cumsum(dim=-2)
        return (pos[..., -1, :] - goal).norm(dim=-1) + 10.0 * inside_wall(pos).float().sum(dim=-1)

    straight = torch.tensor([0.5, 0.0]).expand(1, 1, 10, 2)
    assert inside_wall(straight.cumsum(dim=-2)).any()  # the direct route is blocked
    res = CEMPlanner(horizon=10, action_dim=2, iterations=15).plan(
        cost_fn, num_envs=4, generator=torch.Generator().manual_seed(0)
    )
    pos = res.actions.cumsum(dim=-2)
    assert not inside_wall(pos).any()
    assert ((pos[:, -1] - goal).norm(dim=-1) < 0.5).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_elites": 301}, "num_elites"),
        ({"num_elites": 0}, "num_elites"),
        ({"horizon": 0}, "horizon"),
        ({"iterations": 0}, "iterations"),
        ({"low": [-1.0, 1.0], "high": [1.0, 1.0]}, "low must be < high"),
        ({"low": [-1.0, -1.0, -1.0]}, "low"),
        ({"high": torch.ones(3)}, "high"),
        ({"init_std": [1.0]}, "init_std"),
        ({"init_std": 0.0}, "init_std"),
        ({"fixed_dims": {2: 0.0}}, "fixed_dims"),
        ({"fixed_dims": {-1: 0.0}}, "fixed_dims"),
        ({"fixed_dims": {0: 2.0}}, "fixed_dims"),
        ({"momentum": 1.0}, "momentum"),
        ({"min_std": -1.0}, "min_std"),
        ({"max_norm": 0.0}, "max_norm"),
        ({"max_norm": 1.0, "low": 0.5, "high": 1.0}, "max_norm"),
    ],
)
def test_cem_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CEMPlanner(**{"horizon": 3, "action_dim": 2, **kwargs})


def test_mppi_validation_and_plan_argument_checks():
    with pytest.raises(ValueError, match="temperature"):
        MPPIPlanner(horizon=3, action_dim=2, temperature=0.0)
    with pytest.raises(ValueError, match="num_elites"):
        MPPIPlanner(horizon=3, action_dim=2, num_samples=10, num_elites=11)
    planner = _cem()
    cost_fn = _quadratic(torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="init"):
        planner.plan(cost_fn, num_envs=2, init=torch.zeros(2, 3, 2))
    with pytest.raises(ValueError, match="num_envs"):
        planner.plan(cost_fn, num_envs=0)
    with pytest.raises(ValueError, match="cost_fn"):
        planner.plan(lambda a: a.sum(dim=(-1, -2)).flatten(), num_envs=2)
    res = planner.plan(cost_fn, num_envs=2, init=torch.zeros(4, 2))  # [H, A] init is broadcast over episodes
    assert res.actions.shape == (2, 4, 2)


# ----------------------------------------------------------------------------------------------------------------------
# Warm start and MPC agent
# ----------------------------------------------------------------------------------------------------------------------


def test_shift_plan_semantics():
    a = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    out = shift_plan(a, steps=2)
    assert torch.equal(out[:, :3], a[:, 2:]) and (out[:, 3:] == 0).all()
    out = shift_plan(a, steps=1, fill="last")
    assert torch.equal(out[:, :4], a[:, 1:]) and torch.equal(out[:, 4], a[:, 4])
    fill = torch.tensor([7.0, 8.0, 9.0])
    out = shift_plan(a, steps=3, fill=fill)
    assert torch.equal(out[:, :2], a[:, 3:]) and torch.equal(out[:, 2:], fill.expand(2, 3, 3))
    assert torch.equal(shift_plan(a, steps=0), a) and shift_plan(a, steps=0) is not a
    assert (shift_plan(a, steps=7, fill=1.0) == 1).all()
    with pytest.raises(ValueError, match="steps"):
        shift_plan(a, steps=-1)
    with pytest.raises(ValueError, match="fill"):
        shift_plan(a, fill="first")


class _SpyPlanner:
    """Forwards to a real planner and records each call's init and result."""

    def __init__(self, planner):
        self.planner = planner
        self.horizon, self.action_dim = planner.horizon, planner.action_dim
        self.inits: list[torch.Tensor | None] = []
        self.results: list[PlanResult] = []

    def plan(self, cost_fn, *, num_envs=1, init=None, generator=None):
        self.inits.append(None if init is None else init.clone())
        res = self.planner.plan(cost_fn, num_envs=num_envs, init=init, generator=generator)
        self.results.append(res)
        return res


def _integrator_cost(obs, goal):
    """Exact model of s' = s + a: squared distance to the goal summed over the horizon."""
    s = torch.as_tensor(obs, dtype=torch.float32)  # [E, 1]
    g = torch.as_tensor(goal, dtype=torch.float32)  # [E, 1]

    def cost_fn(a):  # [E, S, H, 1]
        traj = s[:, None, None] + a.cumsum(dim=2)
        return (traj - g[:, None, None]).square().sum(dim=(-1, -2))

    return cost_fn


def _integrator_agent(**kw):
    planner = CEMPlanner(horizon=5, action_dim=1, num_samples=100, num_elites=10, iterations=5)
    return MPCAgent(planner=planner, make_cost=_integrator_cost, generator=torch.Generator().manual_seed(0), **kw)


@pytest.mark.parametrize("replan_every", [1, 3])
def test_mpc_agent_reaches_goal_on_integrator(replan_every):
    agent = _integrator_agent(replan_every=replan_every, action_low=np.array([-1.0]), action_high=np.array([1.0]))
    goal = np.array([[4.3], [-2.5], [0.7]], dtype=np.float32)
    s = np.zeros((3, 1), dtype=np.float32)
    agent.reset(num_envs=3)
    for _ in range(12):
        a = agent.act(s, goal)
        assert a.shape == (3, 1) and a.dtype == np.float32
        s = s + a
    assert np.abs(s - goal).max() < 0.1
    assert agent.last_plan_time > 0


def test_mpc_agent_replans_every_k_steps_and_executes_the_plan():
    spy = _SpyPlanner(CEMPlanner(horizon=5, action_dim=1, num_samples=50, num_elites=5, iterations=3))
    n_costs = []

    def make_cost(obs, goal):
        n_costs.append(1)
        return _integrator_cost(obs, goal)

    agent = MPCAgent(planner=spy, make_cost=make_cost, replan_every=3)
    agent.reset(num_envs=2)
    s, goal = np.zeros((2, 1), np.float32), np.full((2, 1), 2.0, np.float32)
    executed = []
    for _ in range(12):
        a = agent.act(s, goal)
        executed.append(a)
        s = s + a
    assert len(spy.results) == len(n_costs) == agent.num_plans == 4
    for i, res in enumerate(spy.results):
        np.testing.assert_array_equal(np.stack(executed[3 * i : 3 * i + 3], axis=1), res.actions[:, :3].numpy())
    # Warm start: each replan starts from the previous plan shifted by the 3 executed steps.
    assert spy.inits[0] is None
    for prev, init in zip(spy.results[:-1], spy.inits[1:]):
        torch.testing.assert_close(init, shift_plan(prev.actions, steps=3))


def test_mpc_agent_clips_actions_and_reset_clears_warm_start():
    spy = _SpyPlanner(CEMPlanner(horizon=3, action_dim=2, low=-2.0, high=2.0, num_samples=50, iterations=6))

    def make_cost(obs, goal):
        return lambda a: -a[..., 0, :].sum(dim=-1)  # wants the largest first action: 2.0 in both dims

    agent = MPCAgent(
        planner=spy,
        make_cost=make_cost,
        action_low=np.array([-0.5, -1.0]),
        action_high=torch.tensor([0.5, 1.0]),
        generator=torch.Generator().manual_seed(0),
    )
    agent.reset(num_envs=2)
    a = agent.act(None, None)
    assert (spy.results[0].actions[:, 0] > torch.tensor([0.5, 1.0])).all()  # the plan itself exceeds the env bounds
    np.testing.assert_array_equal(a, np.tile(np.array([[0.5, 1.0]], np.float32), (2, 1)))
    agent.act(None, None)
    assert spy.inits[1] is not None
    agent.reset(num_envs=2)
    agent.act(None, None)
    assert spy.inits[2] is None
    agent_cold = MPCAgent(planner=spy, make_cost=make_cost, warm_start=False)
    agent_cold.act(None, None)
    agent_cold.act(None, None)
    assert spy.inits[-1] is None


def test_mpc_agent_validation():
    planner = _cem()
    with pytest.raises(ValueError, match="replan_every"):
        MPCAgent(planner=planner, make_cost=_integrator_cost, replan_every=0)
    with pytest.raises(ValueError, match="replan_every"):
        MPCAgent(planner=planner, make_cost=_integrator_cost, replan_every=5)
    with pytest.raises(ValueError, match="action_low"):
        MPCAgent(planner=planner, make_cost=_integrator_cost, action_low=np.ones(2), action_high=np.zeros(2))


# ----------------------------------------------------------------------------------------------------------------------
# Latent distances
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reduce", ["last", "sum", "last+mean", "mean"])
def test_latent_distance_matches_explicit_loops(p, reduce):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 4, 5, 6, generator=g)  # [E, S, H, N, D]
    z_goal = torch.randn(2, 5, 6, generator=g)
    out = latent_distance(z, z_goal, p=p, reduce=reduce)
    assert out.shape == (2, 3)
    for e in range(2):
        for s in range(3):
            steps = [float(((z[e, s, t] - z_goal[e]).abs() ** p).mean()) for t in range(4)]
            expected = {
                "last": steps[-1],
                "sum": sum(steps),
                "last+mean": steps[-1] + sum(steps) / len(steps),
                "mean": sum(steps) / len(steps),
            }[reduce]
            assert out[e, s].item() == pytest.approx(expected, rel=1e-5)


def test_latent_distance_validation():
    z = torch.zeros(2, 3, 4, 8)
    with pytest.raises(ValueError, match="reduce"):
        latent_distance(z, torch.zeros(2, 8), reduce="median")
    with pytest.raises(ValueError, match="z_goal"):
        latent_distance(z, torch.zeros(3, 8))
    with pytest.raises(ValueError, match="p must"):
        latent_distance(z, torch.zeros(2, 8), p=0)


def test_cem_and_mppi_share_their_settings_and_keep_their_own_defaults():
    from dataclasses import fields

    from jepa_world.config import PlannerSettings
    from jepa_world.planning import SamplingPlanner, make_planner

    shared = {f.name for f in fields(SamplingPlanner)}
    assert shared <= {f.name for f in fields(CEMPlanner)} and shared <= {f.name for f in fields(MPPIPlanner)}
    assert {f.name for f in fields(CEMPlanner)} - shared == {"num_elites"}
    assert {f.name for f in fields(MPPIPlanner)} - shared == {"temperature", "num_elites"}
    cem, mppi = CEMPlanner(horizon=3, action_dim=2), MPPIPlanner(horizon=3, action_dim=2)
    assert (cem.num_samples, cem.iterations, mppi.num_samples, mppi.iterations) == (300, 10, 512, 6)
    assert cem.low.shape == (2,) and cem.low.dtype == torch.float32  # bounds become per-dimension tensors
    # The config's planner settings build either planner, with the env's bounds.
    for kind, cls in (("cem", CEMPlanner), ("mppi", MPPIPlanner)):
        settings = PlannerSettings(planner=kind, samples=20, elites=4, iterations=2, horizon=5)
        planner = make_planner(settings, action_dim=2, max_norm=1.5, low=-1.5, high=1.5)
        assert type(planner) is cls and (planner.num_samples, planner.num_elites, planner.horizon) == (20, 4, 5)
        assert planner.max_norm == 1.5 and torch.equal(planner.high, torch.full((2,), 1.5))
    with pytest.raises(ValueError, match="planner must be one of"):
        make_planner(PlannerSettings(planner="icem"), action_dim=2, max_norm=0, low=-1, high=1)


def test_return_cost_is_minus_the_discounted_return_with_the_critic_at_the_end():
    from jepa_world.planning.costs import return_cost

    class Shift:  # z' = z + a on a [.., 1, 2] latent
        def rollout(self, z0, actions, states=None):
            return z0 + actions.cumsum(dim=-2)[..., None, :]

    gen = torch.Generator().manual_seed(0)
    z0, g = torch.randn(2, 1, 1, 2, generator=gen), torch.randn(2, 1, 2, generator=gen)
    a = torch.randn(2, 3, 4, 2, generator=gen)  # [E, S, H, A]
    gamma = 0.9

    def value(z_last):  # [E, S, 1, 2] -> [E, S]
        return -z_last.sum(dim=(-1, -2))

    cost = return_cost(Shift(), z0, g, value=value, discount=gamma)(a)
    for e in range(2):
        for s in range(3):
            z, ret = z0[e, 0], 0.0
            for t in range(4):
                z = z + a[e, s, t]
                ret -= gamma**t * float((z - g[e]).abs().mean())
            ret += gamma**4 * float(value(z[None, None]))
            assert cost[e, s].item() == pytest.approx(-(1 - gamma) * ret, rel=1e-5)
    with pytest.raises(ValueError, match="discount"):
        return_cost(Shift(), z0, g, value=value, discount=0.0)
