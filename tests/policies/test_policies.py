"""Policies learned in imagination: CMA-ES, the returns, the actor-critic and the evolved controller on a point mass."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from jepa_world.policies import (
    CMAES,
    EvolvedController,
    GoalActor,
    GoalCritic,
    ImaginedActorCritic,
    LinearController,
    bound_action,
    goal_rewards,
    lambda_returns,
)


class PointMass(nn.Module):
    """A world model whose dynamics are known in closed form: z' = z + a (latent = position, [N, 1, 2])."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # frozen by the learners

    def step(self, z, a):
        return z + a[:, None] + 0 * self.dummy


def _pairs(n, gen):
    return {"z0": torch.rand(n, 1, 2, generator=gen) * 8 - 4, "z_goal": torch.rand(n, 1, 2, generator=gen) * 8 - 4}


def _reach(policy, n=256, steps=12, seed=1):
    """Success rate (final distance < 0.5) of a deterministic policy acting in the true point-mass dynamics."""
    gen = torch.Generator().manual_seed(seed)
    b = _pairs(n, gen)
    z, g = b["z0"], b["z_goal"]
    with torch.no_grad():
        for _ in range(steps):
            z = z + policy(z, g)[:, None]
    return float(((z - g).norm(dim=-1)[:, 0] < 0.5).float().mean())


# -- CMA-ES ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_cmaes_finds_the_minimum_of_a_shifted_ellipsoid(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 8
    opt = torch.linspace(-2, 3, n, dtype=torch.float64)
    scales = torch.logspace(0, 2, n, dtype=torch.float64)  # condition number 1e4: needs the covariance

    def f(x):
        return ((x - opt) ** 2 * scales).sum(dim=1)

    es = CMAES(num_params=n, sigma=1.0)
    for _ in range(400):
        x = es.ask(gen)
        es.tell(x, f(x))
    assert torch.allclose(es.mean, opt, atol=1e-3), es.mean
    assert float(f(es.mean[None])) < 1e-5


def test_cmaes_rosenbrock_and_state_round_trip():
    gen = torch.Generator().manual_seed(0)

    def f(x):
        return (100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2).sum(dim=1)

    es = CMAES(num_params=4, sigma=0.5)
    for _ in range(100):
        x = es.ask(gen)
        es.tell(x, f(x))
    twin = CMAES(num_params=4, sigma=0.5)
    twin.load_state_dict(es.state_dict())  # the whole search state is in buffers
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for _ in range(400):
        x1, x2 = es.ask(g1), twin.ask(g2)
        assert torch.equal(x1, x2)
        es.tell(x1, f(x1))
        twin.tell(x2, f(x2))
    assert torch.allclose(es.mean, torch.ones(4, dtype=torch.float64), atol=1e-3), es.mean


def test_cmaes_rejects_bad_settings_and_shapes():
    with pytest.raises(ValueError, match="sigma"):
        CMAES(num_params=3, sigma=0.0)
    with pytest.raises(ValueError, match="num_params"):
        CMAES(num_params=0)
    es = CMAES(num_params=3, population=6)
    with pytest.raises(ValueError, match=r"candidates \[6, 3\]"):
        es.tell(torch.zeros(5, 3), torch.zeros(5))


# -- returns -----------------------------------------------------------------------------------------------------------
def test_lambda_returns_match_their_definition():
    gen = torch.Generator().manual_seed(0)
    T, N, gamma, lam = 5, 3, 0.9, 0.7
    r, v = torch.randn(T, N, generator=gen), torch.randn(T + 1, N, generator=gen)
    # The lambda-return as the (1 - lam)-weighted mix of n-step returns, the last one taking the remaining weight.
    want = torch.zeros(T, N)
    for t in range(T):
        steps = T - t
        for n in range(1, steps + 1):
            g_n = sum(gamma**k * r[t + k] for k in range(n)) + gamma**n * v[t + n]
            w = (1 - lam) * lam ** (n - 1) if n < steps else lam ** (steps - 1)
            want[t] += w * g_n
    got = lambda_returns(r, v, discount=gamma, lam=lam)
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(lambda_returns(r, v, discount=gamma, lam=0.0), r + gamma * v[1:])


def test_goal_rewards_are_minus_the_distance_after_each_step():
    gen = torch.Generator().manual_seed(0)
    zs, g = torch.randn(7, 4, 1, 3, generator=gen), torch.randn(4, 1, 3, generator=gen)
    r, d = goal_rewards(zs, g)
    assert torch.allclose(r, -d[1:])
    assert torch.allclose(d[2], (zs[2] - g).abs().flatten(1).mean(1))


def test_actions_stay_in_the_norm_ball():
    a = bound_action(torch.randn(1000, 2) * 10, 2.45)
    assert float(a.norm(dim=-1).max()) <= 2.45 + 1e-5


# -- learners on a point mass ------------------------------------------------------------------------------------------
def test_actor_critic_learns_to_reach_goals_in_a_point_mass_world():
    torch.manual_seed(0)
    wm = PointMass()
    actor = GoalActor(latent_dim=2, action_dim=2, max_action=1.0, hidden_dim=64)
    critic = GoalCritic(latent_dim=2, hidden_dim=64)
    learner = ImaginedActorCritic(world_model=wm, actor=actor, critic=critic, horizon=10, entropy_weight=1e-4)
    assert not any(p.requires_grad for p in wm.parameters())
    opt = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    before = _reach(lambda z, g: actor(z, g, deterministic=True)[0])
    for _ in range(300):
        loss, metrics = learner(_pairs(128, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        learner.update_slow_critic()
    after = _reach(lambda z, g: actor(z, g, deterministic=True)[0])
    assert before < 0.1, before
    assert after > 0.9, (after, metrics)
    assert wm.dummy.grad is None  # the world model is never trained
    # The critic learned the value of the distances to come: a far goal is worth less than a reached one.
    z = _pairs(256, gen)["z0"] * 0.5
    near, far = z + torch.tensor([0.5, 0.0]), z + torch.tensor([0.0, 3.0])
    with torch.no_grad():
        assert float(critic(z, far).mean()) < float(critic(z, near).mean()) - 1.0


def test_evolved_controller_reaches_goals_in_a_point_mass_world():
    torch.manual_seed(0)
    wm = PointMass()
    ctrl = LinearController(latent_dim=2, action_dim=2, max_action=1.0)
    learner = EvolvedController(world_model=wm, controller=ctrl, horizon=10, sigma=0.1)
    gen = torch.Generator().manual_seed(0)
    before = _reach(lambda z, g: ctrl(z, g))
    first = None
    for _ in range(120):
        _, metrics = learner(_pairs(64, gen))
        first = first if first is not None else float(metrics["fitness_mean"])
    after = _reach(lambda z, g: ctrl(z, g))
    assert before < 0.1 and after > 0.8, (before, after)
    assert float(metrics["fitness_mean"]) < 0.5 * first


def test_learners_reject_bad_settings():
    wm, actor, critic = PointMass(), GoalActor(latent_dim=2, action_dim=2), GoalCritic(latent_dim=2)
    with pytest.raises(ValueError, match="discount"):
        ImaginedActorCritic(world_model=wm, actor=actor, critic=critic, discount=0.0)
    with pytest.raises(ValueError, match="horizon"):
        EvolvedController(world_model=wm, controller=LinearController(latent_dim=2, action_dim=2), horizon=0)
    assert math.isclose(GoalActor(latent_dim=2, action_dim=2, max_action=2.0).max_action, 2.0)
