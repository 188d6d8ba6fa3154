"""The state probe (`jepa_world.eval.state_probe`): it recovers a state that the features hold linearly, not noise."""

from __future__ import annotations

import numpy as np

from jepa_world.envs.geometry import ARENA_SIZE
from jepa_world.eval.state_probe import probe_state

EPISODES, FRAMES, TOKENS, DIM = 40, 10, 4, 16


def _states_and_episodes(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    states = rng.uniform(0.0, ARENA_SIZE, size=(EPISODES * FRAMES, 2))  # positions in px
    return states, np.repeat(np.arange(EPISODES), FRAMES)


def test_probe_recovers_a_linear_state_and_not_from_noise():
    rng = np.random.default_rng(0)
    states, episode = _states_and_episodes(rng)
    mixing = rng.normal(size=(2, TOKENS * DIM))
    linear = (states @ mixing + 0.01 * rng.normal(size=(len(states), TOKENS * DIM))).reshape(-1, TOKENS, DIM)
    noise = rng.normal(size=linear.shape)

    held = probe_state(linear, states, episode, (0, 50))
    assert held[0]["fit_frames"] == 24 * FRAMES and held[0]["test_frames"] == 8 * FRAMES  # 60 / 20 / 20 by episode
    assert held[50]["fit_frames"] == 50
    for n in (0, 50):
        assert held[n]["rmse"] < 0.5 and held[n]["r2"] > 0.99 and held[n]["within"] == 1.0, held[n]

    blind = probe_state(noise, states, episode, (0,))[0]
    assert blind["rmse"] > 10 and blind["r2"] < 0.1 and blind["within"] < 0.2, blind


def test_a_fit_passed_in_replaces_the_ridge():
    rng = np.random.default_rng(1)
    states, episode = _states_and_episodes(rng)
    features = rng.normal(size=(len(states), DIM))

    def mean_of_fit(f, y, test):  # knows the states of the fit frames only
        return np.broadcast_to(y.mean(0), (len(test), 2))

    out = probe_state(features, states, episode, (0,), fit=mean_of_fit)[0]
    test = episode >= 32
    expected = np.sqrt(((states[test] - states[episode < 24].mean(0)) ** 2).sum(1).mean())
    assert out["lambda"] is None and np.isclose(out["rmse"], expected)
