"""Tests for jepa_world.planning.search: batched MCTS against exact tabular solutions, its errors, discrete headings."""

from __future__ import annotations

import math

import pytest
import torch

from jepa_world.planning import MCTS, SearchResult, discrete_headings
from jepa_world.planning.search import _log_standard_gamma

torch.set_num_threads(1)  # tiny tensors: thread fan-out only adds latency on a shared 2-core machine


# ----------------------------------------------------------------------------------------------------------------------
# Tabular MDPs: latents are one-hot states, step_fn is a table lookup
# ----------------------------------------------------------------------------------------------------------------------


class Tabular:
    """Deterministic MDP: ``nxt[s, a]`` next state, ``rew[s, a]`` reward; latents one-hot ``# [E, S]``."""

    def __init__(self, nxt: torch.Tensor, rew: torch.Tensor, gamma: float) -> None:
        self.nxt = nxt.long()  # [S, K]
        self.rew = rew.float()  # [S, K]
        self.gamma = gamma
        self.num_states, self.num_actions = nxt.shape
        self.step_calls: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        # Value iteration to convergence (gamma < 1): V* and Q*.
        v = torch.zeros(self.num_states, dtype=torch.float64)
        for _ in range(5000):
            q = self.rew.double() + gamma * v[self.nxt]
            v_new = q.max(dim=1).values
            if (v_new - v).abs().max() < 1e-12:
                break
            v = v_new
        self.v_star = v.float()  # [S]
        self.q_star = (self.rew.double() + gamma * v[self.nxt]).float()  # [S, K]

    def encode(self, states: list[int] | torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.as_tensor(states), self.num_states).float()  # [E, S]

    def state(self, z: torch.Tensor) -> torch.Tensor:
        return z.argmax(dim=-1)  # [E]

    def step_fn(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.step_calls.append((tuple(z.shape), tuple(a.shape)))
        assert a.dtype == torch.long
        s = self.state(z)
        return self.encode(self.nxt[s, a]), self.rew[s, a]

    def zero_value(self, z: torch.Tensor) -> torch.Tensor:
        return torch.zeros(z.shape[0])

    def exact_value(self, z: torch.Tensor) -> torch.Tensor:
        return self.v_star[self.state(z)]


def _random_mdp(num_states: int, num_actions: int, gamma: float, seed: int) -> Tabular:
    g = torch.Generator().manual_seed(seed)
    nxt = torch.randint(num_states, (num_states, num_actions), generator=g)
    rew = torch.rand(num_states, num_actions, generator=g)
    rew = torch.where(torch.rand(num_states, num_actions, generator=g) < 0.5, rew, torch.zeros_like(rew))
    return Tabular(nxt, rew, gamma)


def _clear_starts(mdp: Tabular, margin: float) -> list[int]:
    """States whose best action beats the second best by more than ``margin``."""
    top2 = mdp.q_star.topk(2, dim=1).values
    return [s for s in range(mdp.num_states) if float(top2[s, 0] - top2[s, 1]) > margin]


def _chain(gamma: float = 0.9, left_reward: float = 0.9) -> Tabular:
    """Chain 0..4 with absorbing ends (0 reward there); actions left / right / stay.

    Entering 4 pays 1, entering 0 pays ``left_reward``; everything else pays 0.
    """
    n = 5
    nxt = torch.zeros(n, 3, dtype=torch.long)
    rew = torch.zeros(n, 3)
    for s in range(n):
        for a, t in enumerate((max(s - 1, 0), min(s + 1, n - 1), s)):
            if s in (0, n - 1):
                t = s
            nxt[s, a] = t
            if s not in (0, n - 1):
                rew[s, a] = 1.0 if t == n - 1 else (left_reward if t == 0 else 0.0)
    return Tabular(nxt, rew, gamma)


# ----------------------------------------------------------------------------------------------------------------------
# Search quality against exact solutions
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_zero_leaf_value_finds_optimal_first_action_batched(seed):
    mdp = _random_mdp(8, 3, gamma=0.8, seed=seed)
    starts = _clear_starts(mdp, margin=0.1)
    assert len(starts) >= 3, "the random MDP should offer several start states with a clear best action"
    mcts = MCTS(num_actions=3, num_simulations=200, discount=0.8, max_depth=16)
    res = mcts.search(mdp.encode(starts), step_fn=mdp.step_fn, value_fn=mdp.zero_value)
    assert isinstance(res, SearchResult)
    assert res.action.tolist() == mdp.q_star[starts].argmax(dim=1).tolist()
    assert res.visit_counts.sum(dim=1).tolist() == [200.0] * len(starts)


def test_chain_optimal_direction_depends_on_start():
    mdp = _chain(gamma=0.9)
    starts = [1, 2, 3, 1, 3, 2]
    best = mdp.q_star[starts].argmax(dim=1).tolist()
    assert 0 in best and 1 in best, "the chain should make both directions optimal from some start"
    res = MCTS(num_actions=3, num_simulations=200, discount=0.9).search(
        mdp.encode(starts), step_fn=mdp.step_fn, value_fn=mdp.zero_value
    )
    assert res.action.tolist() == best


def test_batched_search_equals_one_tree_at_a_time():
    mdp = _random_mdp(9, 4, gamma=0.9, seed=3)
    starts = [0, 3, 5, 8, 3]
    mcts = MCTS(num_actions=4, num_simulations=40, discount=0.9)
    together = mcts.search(mdp.encode(starts), step_fn=mdp.step_fn, value_fn=mdp.zero_value)
    for e, s in enumerate(starts):
        alone = mcts.search(mdp.encode([s]), step_fn=mdp.step_fn, value_fn=mdp.zero_value)
        assert torch.equal(alone.visit_counts[0], together.visit_counts[e])
        torch.testing.assert_close(alone.q_values[0], together.q_values[e])
        assert int(alone.action) == int(together.action[e])


def test_exact_value_with_k_simulations_gives_q_star():
    mdp = _random_mdp(8, 4, gamma=0.9, seed=4)
    starts = _clear_starts(mdp, margin=1e-3)
    res = MCTS(num_actions=4, num_simulations=4, discount=0.9).search(
        mdp.encode(starts), step_fn=mdp.step_fn, value_fn=mdp.exact_value
    )
    # Unvisited children are valued at the parent's value, so K simulations try every root action once.
    assert torch.equal(res.visit_counts, torch.ones(len(starts), 4))
    torch.testing.assert_close(res.q_values, mdp.q_star[starts], atol=1e-5, rtol=0)
    assert res.action.tolist() == mdp.q_star[starts].argmax(dim=1).tolist()
    torch.testing.assert_close(res.value, mdp.q_star[starts].mean(dim=1), atol=1e-5, rtol=0)
    torch.testing.assert_close(res.policy, torch.full((len(starts), 4), 0.25))
    # More simulations keep the optimal action.
    more = MCTS(num_actions=4, num_simulations=24, discount=0.9).search(
        mdp.encode(starts), step_fn=mdp.step_fn, value_fn=mdp.exact_value
    )
    assert more.action.tolist() == res.action.tolist()


def test_deep_backups_are_discounted_exactly():
    # Only state 0 offers a choice; from every other state all actions agree. With value_fn = V*, every return backed
    # up through root action a, however deep, is then exactly Q*(0, a) -- which only holds if each level discounts.
    nxt = torch.tensor([[1, 3, 5], [2, 2, 2], [4, 4, 4], [4, 4, 4], [6, 6, 6], [6, 6, 6], [6, 6, 6]])
    rew = torch.tensor([0.2, 0.0, 0.5, 1.0, 0.3, 0.0, 0.1])[:, None].expand(7, 3).clone()
    rew[0] = torch.tensor([0.2, 0.0, 0.5])
    rew[2] = 2.0
    mdp = Tabular(nxt, rew, gamma=0.8)
    starts = [0, 1, 0, 3, 0]
    res = MCTS(num_actions=3, num_simulations=40, discount=0.8).search(
        mdp.encode(starts), step_fn=mdp.step_fn, value_fn=mdp.exact_value
    )
    assert (res.visit_counts[[0, 2, 4]] > 1).all(), "every root action should be searched below depth 1"
    torch.testing.assert_close(res.q_values, mdp.q_star[starts], atol=1e-5, rtol=0)
    torch.testing.assert_close(res.value, (res.policy * mdp.q_star[starts]).sum(dim=1))
    assert res.action.tolist()[::2] == [int(mdp.q_star[0].argmax())] * 3


def test_trap_long_term_reward_beats_greedy():
    # 0 --a0: +1--> 1 (dead end, 0 forever); 0 --a1: 0--> 2 --a1: 0--> 3 --any: +10--> 4 (absorbing, 0).
    # From 2, a0 falls into the dead end with +0.5.
    nxt = torch.tensor([[1, 2], [1, 1], [1, 3], [4, 4], [4, 4]])
    rew = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.5, 0.0], [10.0, 10.0], [0.0, 0.0]])
    mdp = Tabular(nxt, rew, gamma=0.97)
    assert int(mdp.rew[0].argmax()) == 0 and int(mdp.q_star[0].argmax()) == 1
    starts = [0, 2, 0]
    res = MCTS(num_actions=2, num_simulations=200, discount=0.97).search(
        mdp.encode(starts), step_fn=mdp.step_fn, value_fn=mdp.zero_value
    )
    assert res.action.tolist() == [1, 1, 1]
    assert float(res.q_values[0, 1]) > float(res.q_values[0, 0]) == 1.0
    assert float(res.q_values[0, 1]) <= float(mdp.q_star[0, 1]) + 1e-5  # zero leaf values only ever underestimate
    assert float(res.value[0]) > 1.0


def test_goals_closed_over_per_episode_rows():
    # Same start, per-episode goal states: every call must see the E rows in episode order.
    mdp = _chain()
    starts, goals = [3, 1, 2, 3], torch.tensor([1, 3, 4, 2])
    e = goals.shape[0]

    def step_fn(z, a):
        assert z.shape == (e, 5) and a.shape == (e,)
        s_next = mdp.nxt[mdp.state(z), a]
        return mdp.encode(s_next), (s_next == goals).float()

    def value_fn(z):
        assert z.shape == (e, 5)
        return torch.zeros(e)

    res = MCTS(num_actions=3, num_simulations=60, discount=0.9).search(
        mdp.encode(starts), step_fn=step_fn, value_fn=value_fn
    )
    assert res.action.tolist() == [0, 1, 1, 0]  # left, right, right, left


def test_prior_steers_between_equally_good_actions():
    # From 0, a1 and a2 both give +1 and lead to 1; a0 gives 0 and leads to 2. Both states then stay put with 0.
    nxt = torch.tensor([[2, 1, 1], [1, 1, 1], [2, 2, 2]])
    rew = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mdp = Tabular(nxt, rew, gamma=0.9)
    starts = [0, 0]
    peaked = torch.tensor([[0.05, 0.9, 0.05], [0.05, 0.05, 0.9]])
    calls = []

    def prior_fn(z):
        calls.append(z.shape)
        return peaked

    res = MCTS(num_actions=3, num_simulations=6, discount=0.9).search(
        mdp.encode(starts), step_fn=mdp.step_fn, value_fn=mdp.exact_value, prior_fn=prior_fn
    )
    assert res.action.tolist() == [1, 2]
    assert res.visit_counts[0, 1] > res.visit_counts[0, 2] and res.visit_counts[1, 2] > res.visit_counts[1, 1]
    assert len(calls) == 1 + 6 and all(c == (2, 3) for c in calls)


def test_call_counts_and_max_depth():
    mdp = _random_mdp(6, 3, gamma=0.9, seed=5)
    starts = [0, 1, 2, 3]
    values = []

    def value_fn(z):
        values.append(z.shape)
        return mdp.exact_value(z)

    res = MCTS(num_actions=3, num_simulations=10, discount=0.9, max_depth=1).search(
        mdp.encode(starts), step_fn=mdp.step_fn, value_fn=value_fn
    )
    assert mdp.step_calls == [((4, 6), (4,))] * 10
    assert values == [(4, 6)] * 11  # root + one per simulation
    # Depth 1: every root child is a leaf evaluated by value_fn, so Q = r + gamma * V*(s') = Q* exactly.
    torch.testing.assert_close(res.q_values, mdp.q_star[starts], atol=1e-5, rtol=0)
    assert res.visit_counts.sum(dim=1).tolist() == [10.0] * 4


def test_root_noise_is_reproducible_with_a_generator():
    mdp = _random_mdp(6, 3, gamma=0.9, seed=6)
    mcts = MCTS(num_actions=3, num_simulations=12, discount=0.9, dirichlet_alpha=0.3, root_noise_fraction=0.5)
    root = mdp.encode([0, 1, 2])
    a = mcts.search(root, step_fn=mdp.step_fn, value_fn=mdp.zero_value, generator=torch.Generator().manual_seed(7))
    b = mcts.search(root, step_fn=mdp.step_fn, value_fn=mdp.zero_value, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.visit_counts, b.visit_counts)


@pytest.mark.parametrize("alpha", [0.1, 0.5, 2.5])
def test_gamma_sampler_moments(alpha):
    g = torch.Generator().manual_seed(0)
    x = _log_standard_gamma(alpha, (40000,), g, "cpu").exp()
    # Gamma(alpha, 1): mean alpha, variance alpha; the standard error of the mean is sqrt(alpha / n).
    assert abs(float(x.mean()) - alpha) < 5 * math.sqrt(alpha / 40000)
    assert abs(float(x.var()) - alpha) < 0.1 * alpha


# ----------------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_actions": 1}, "num_actions"),
        ({"num_actions": 3, "discount": 0.0}, "discount"),
        ({"num_actions": 3, "discount": 1.5}, "discount"),
        ({"num_actions": 3, "num_simulations": 0}, "num_simulations"),
        ({"num_actions": 3, "max_depth": 0}, "max_depth"),
        ({"num_actions": 3, "c_puct": 0.0}, "c_puct"),
        ({"num_actions": 3, "dirichlet_alpha": -1.0}, "dirichlet_alpha"),
        ({"num_actions": 3, "root_noise_fraction": 1.5}, "root_noise_fraction"),
    ],
)
def test_bad_settings_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MCTS(**kwargs)


def test_wrong_callable_shapes_raise():
    mdp = _chain()
    root = mdp.encode([1, 2])
    mcts = MCTS(num_actions=3, num_simulations=3)

    def bad_latent(z, a):
        z2, r = mdp.step_fn(z, a)
        return z2[:, :3], r

    def bad_reward(z, a):
        z2, r = mdp.step_fn(z, a)
        return z2, r[:, None]

    with pytest.raises(ValueError, match=r"z_next.*\(2, 5\).*\(2, 3\)"):
        mcts.search(root, step_fn=bad_latent, value_fn=mdp.zero_value)
    with pytest.raises(ValueError, match=r"reward.*\(2,\).*\(2, 1\)"):
        mcts.search(root, step_fn=bad_reward, value_fn=mdp.zero_value)
    with pytest.raises(ValueError, match="pair"):
        mcts.search(root, step_fn=lambda z, a: z, value_fn=mdp.zero_value)
    with pytest.raises(ValueError, match=r"value_fn.*\(2,\).*\(2, 1\)"):
        mcts.search(root, step_fn=mdp.step_fn, value_fn=lambda z: torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"prior_fn.*\(2, 3\).*\(2, 4\)"):
        mcts.search(root, step_fn=mdp.step_fn, value_fn=mdp.zero_value, prior_fn=lambda z: torch.ones(2, 4) / 4)
    with pytest.raises(ValueError, match="root"):
        mcts.search(torch.tensor(1.0), step_fn=mdp.step_fn, value_fn=mdp.zero_value)


# ----------------------------------------------------------------------------------------------------------------------
# Discrete headings
# ----------------------------------------------------------------------------------------------------------------------


def test_discrete_headings_table():
    table = discrete_headings()
    assert table.shape == (9, 2) and table.dtype == torch.float32
    torch.testing.assert_close(table[:8].norm(dim=1), torch.ones(8))
    assert torch.equal(table[8], torch.zeros(2))
    angles = torch.atan2(table[:8, 1], table[:8, 0]) % (2 * math.pi)
    torch.testing.assert_close(angles, torch.arange(8) * (2 * math.pi / 8), atol=1e-6, rtol=0)
    assert table[2, 0] == 0.0 and table[4, 1] == 0.0  # pure axis moves have no rounding residue
    scaled = discrete_headings(4, step=2.5, noop=False)
    assert scaled.shape == (4, 2)
    torch.testing.assert_close(scaled, torch.tensor([[2.5, 0.0], [0.0, 2.5], [-2.5, 0.0], [0.0, -2.5]]))
    with pytest.raises(ValueError, match="num_headings"):
        discrete_headings(0)
    with pytest.raises(ValueError, match="step"):
        discrete_headings(8, step=0.0)
