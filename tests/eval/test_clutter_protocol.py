"""The protocol on the cluttered Two-Rooms: each episode its own scene, the same for every agent, shown in the GIF."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np

from jepa_world.envs import make_env
from jepa_world.eval.agents import Agent, Observation
from jepa_world.eval.protocol import eval_pairs, run_episodes
from jepa_world.eval.viz import save_episodes_gif


class _StraightAgent(Agent):
    """Reads the pixels (so the runner renders them) and always moves right; remembers what it saw."""

    needs_pixels = True

    def __init__(self) -> None:
        self.name, self.seen = "right", []

    def act(self, obs: Observation) -> np.ndarray:
        self.seen.append((obs.pixels.copy(), obs.goal_pixels.copy()))
        return np.tile(np.array([1.0, 0.0], dtype=np.float32), (len(obs.pixels), 1))


def test_protocol_gives_each_episode_its_own_scene_the_same_for_every_agent():
    env = make_env("two_rooms_clutter", image_size=32)
    pairs = eval_pairs(env, 3, seed=0)
    runs = [_StraightAgent() for _ in range(2)]
    stats = [run_episodes(env, agent, pairs, max_steps=5, scene_seed=7) for agent in runs]
    plain = run_episodes(make_env("two_rooms", image_size=32), _StraightAgent(), pairs, max_steps=5)
    np.testing.assert_array_equal(stats[0].paths, plain.paths)  # the clutter never moves the agent
    (pix_a, goal_a), (pix_b, goal_b) = runs[0].seen[0], runs[1].seen[0]
    np.testing.assert_array_equal(pix_a, pix_b)  # same scenes for every agent
    np.testing.assert_array_equal(goal_a, goal_b)
    floor = pix_a[:, 8:24, 6:12].reshape(3, -1).astype(float)  # a patch of floor in each episode
    assert np.abs(floor[0] - floor[1]).mean() > 5 and np.abs(floor[1] - floor[2]).mean() > 5
    other = _StraightAgent()
    run_episodes(env, other, pairs, max_steps=5, scene_seed=8)
    assert not np.array_equal(other.seen[0][0], pix_a)  # the scene seed changes them
    # The distractors move between steps even where the agent's own pixels do not change.
    first, last = runs[0].seen[0][0], runs[0].seen[-1][0]
    assert (first != last).any(axis=-1).sum() > 3 * 20


def test_the_gif_shows_each_episodes_own_scenes(tmp_path):
    env = make_env("two_rooms_clutter", image_size=32)
    pairs = eval_pairs(env, 2, seed=0)
    stats = run_episodes(env, _StraightAgent(), pairs, max_steps=4)
    scenes = stats.scenes
    assert len(scenes) == 2 and all(len(s) == 5 for s in scenes)
    assert not np.array_equal(scenes[0][0].distractors, scenes[0][-1].distractors)
    assert run_episodes(make_env("two_rooms", image_size=32), _StraightAgent(), pairs, max_steps=2).scenes is None
    own = save_episodes_gif(tmp_path / "own.gif", env, stats.paths, pairs[:, 1], scenes=scenes)
    fixed = save_episodes_gif(tmp_path / "fixed.gif", env, stats.paths, pairs[:, 1])
    first_own, first_fixed = imageio.mimread(own)[0], imageio.mimread(fixed)[0]
    assert first_own.shape == first_fixed.shape and not np.array_equal(first_own, first_fixed)
