"""Tests for the Two-Rooms nuisances (``texture=True``, ``distractors=K``): frames change, the agent does not."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium")

import gymnasium

from jepa_world.envs import TWO_ROOMS_CLUTTER_ID, TwoRoomsEnv, make_env
from jepa_world.envs.clutter import DISTRACTOR_RGB, DISTRACTOR_SPEED, Scene
from jepa_world.envs.collect import collect_episodes
from jepa_world.envs.geometry import FREE_MAX, FREE_MIN


def _run(env: TwoRoomsEnv, seed: int, steps: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames, states = [obs], [info["state"]]
    for _ in range(steps):
        obs, _, _, _, info = env.step(rng.uniform(-3, 3, size=2))
        frames.append(obs)
        states.append(info["state"])
    return frames, states


def test_nuisances_change_the_frames_but_not_the_agent():
    plain_frames, plain_states = _run(TwoRoomsEnv(image_size=32), seed=5, steps=40)
    frames, states = _run(TwoRoomsEnv(image_size=32, texture=True, distractors=2), seed=5, steps=40)
    np.testing.assert_array_equal(np.stack(states), np.stack(plain_states))  # same starts, goals and dynamics
    assert all(not np.array_equal(a, b) for a, b in zip(frames, plain_frames, strict=True))


def test_texture_is_new_each_episode_and_static_within_one():
    env = TwoRoomsEnv(image_size=32, texture=True)
    env.reset(seed=0)
    first = env.scene.background.copy()
    env.step(np.array([1.0, 0.0]))
    np.testing.assert_array_equal(env.scene.background, first)
    env.reset()
    assert np.abs(env.scene.background.astype(int) - first.astype(int)).mean() > 10
    # The walls stay white on top of any floor; the floor is not the plain black.
    assert (first[:, :2] == 255).all() and first[10:20, 8:12].mean() > 20


def test_distractors_move_stay_free_and_are_seeded():
    env = TwoRoomsEnv(image_size=32, distractors=3)
    env.reset(seed=1)
    positions = [env.scene.distractors.copy()]
    for _ in range(300):
        env.step(np.zeros(2))
        positions.append(env.scene.distractors.copy())
    p = np.stack(positions)  # [T, K, 2]
    assert p.shape == (301, 3, 2)
    assert env.is_free(p).all() and (p >= FREE_MIN).all() and (p <= FREE_MAX).all()
    steps = np.linalg.norm(np.diff(p, axis=0), axis=-1)
    assert steps.max() <= DISTRACTOR_SPEED + 1e-9 and np.median(steps) == pytest.approx(DISTRACTOR_SPEED)
    assert np.ptp(p[:, :, 0], axis=0).min() > 5  # each one wanders
    again = TwoRoomsEnv(image_size=32, distractors=3)
    again.reset(seed=1)
    for _ in range(300):
        again.step(np.zeros(2))
    np.testing.assert_array_equal(again.scene.distractors, p[-1])


def test_distractors_are_drawn_in_their_colours_under_the_agent():
    env = TwoRoomsEnv(image_size=64, distractors=2)
    env.reset(seed=2, options={"start": [15.0, 15.0], "goal": [45.0, 45.0]})
    frame = env.render()
    for k, (x, y) in enumerate(env.scene.distractors):
        if np.hypot(x - 15.0, y - 15.0) > 6:  # not hidden by the agent
            np.testing.assert_allclose(frame[int(y), int(x)], DISTRACTOR_RGB[k], atol=60)
    # The agent is drawn last: a distractor right under it leaves its centre pixel pure red.
    under = Scene(background=env.scene.background, distractors=np.array([[15.5, 15.5]]), headings=np.zeros(1))
    on_top = env.render_state([15.5, 15.5], scene=under)
    assert tuple(on_top[15, 15]) == (255, 0, 0)
    assert tuple(on_top[15, 19]) != tuple(env.render_state([15.5, 15.5])[15, 19])  # the distractor shows around it
    # Without a scene, render_state draws the current one, which moves at every step.
    before = env.render_state([40.0, 20.0])
    env.step(np.zeros(2))
    assert not np.array_equal(env.render_state([40.0, 20.0]), before)


def test_bad_distractor_count_is_a_clear_error():
    with pytest.raises(ValueError, match="distractors must be an int >= 0, got -1"):
        TwoRoomsEnv(distractors=-1)
    with pytest.raises(ValueError, match="got 1.5"):
        TwoRoomsEnv(distractors=1.5)


def test_collect_records_the_nuisance_settings(tmp_path):
    root = collect_episodes(env_name="two_rooms", num_episodes=2, steps=4, output_dir=tmp_path / "ep", seed=0,
                            image_size=32, env_kwargs={"texture": True, "distractors": 1})  # fmt: skip

    meta = json.loads((root / "metadata.json").read_text())
    assert meta["env_kwargs"] == {"texture": True, "distractors": 1}


def test_clutter_alias_builds_the_cluttered_env_everywhere(tmp_path):
    for env in (make_env("two_rooms_clutter", image_size=32), gymnasium.make(TWO_ROOMS_CLUTTER_ID).unwrapped):
        assert env.wall and env.texture and env.num_distractors == 3
        # Before any reset the frames are already cluttered (scene of generator 0), never the plain arena.
        assert not np.array_equal(env.render_state([15.0, 15.0]), make_env("two_rooms").render_state([15.0, 15.0]))
    root = collect_episodes(env_name="two_rooms_clutter", num_episodes=1, steps=3, output_dir=tmp_path / "ep",
                            seed=0, image_size=32, progress=False)  # fmt: skip
    frames = np.load(root / "episode_000000.npz")["frames"]  # [T + 1, S, S, 3]
    assert frames.shape == (4, 32, 32, 3) and frames[0, 8:24, 6:12].std() > 10  # a textured floor, not black
