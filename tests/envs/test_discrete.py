"""Tests for the discrete-action Two-Rooms: the DiscreteActions wrapper, its action table, registration and make_env."""

from __future__ import annotations

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from gymnasium import spaces  # noqa: E402

from jepa_world.envs import (  # noqa: E402
    DISCRETE_ENV_ALIASES,
    TWO_ROOMS_DISCRETE_ID,
    DiscreteActions,
    TwoRoomsEnv,
    make_env,
)
from jepa_world.envs.geometry import MAX_ACTION_NORM, discrete_action_table  # noqa: E402

# Well inside the left room: every full step from here stays clear of walls and border.
FREE_START = (15.0, 20.0)


def _env(**kwargs) -> DiscreteActions:
    return make_env("two_rooms_discrete", image_size=16, **kwargs)


def test_action_table_headings_and_noop():
    table = discrete_action_table()
    assert table.shape == (9, 2) and table.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(table[:8], axis=1), MAX_ACTION_NORM, rtol=1e-6)
    assert np.array_equal(table[8], [0.0, 0.0])
    angles = np.mod(np.arctan2(table[:8, 1], table[:8, 0]), 2 * np.pi)
    np.testing.assert_allclose(angles, 2 * np.pi * np.arange(8) / 8, atol=1e-6)
    assert table[2, 0] == 0.0 and table[6, 0] == 0.0 and table[4, 1] == 0.0  # axis moves: no sideways residue


def test_action_table_matches_planning_headings():
    pytest.importorskip("torch")
    from jepa_world.planning import discrete_headings

    ref = discrete_headings(8, step=MAX_ACTION_NORM).numpy()
    np.testing.assert_array_equal(discrete_action_table(), ref)


def test_make_env_wraps_two_rooms_with_discrete_nine():
    env = _env()
    assert isinstance(env, DiscreteActions)
    assert env.action_space == spaces.Discrete(9)
    assert isinstance(env.unwrapped, TwoRoomsEnv) and env.unwrapped.wall
    assert np.array_equal(env.headings, discrete_action_table())
    # The bare aliases are unchanged.
    assert type(make_env("two_rooms", image_size=16)) is TwoRoomsEnv
    assert not make_env("point_arena", image_size=16).wall
    assert DISCRETE_ENV_ALIASES == {"two_rooms_discrete": TWO_ROOMS_DISCRETE_ID}


@pytest.mark.parametrize("k", range(9))
def test_each_index_moves_by_its_row(k):
    env = _env()
    _, info = env.reset(seed=0, options={"start": FREE_START, "goal": None})
    start = info["state"].astype(np.float64)
    _, _, _, _, info = env.step(k)
    np.testing.assert_allclose(info["state"] - start, discrete_action_table()[k], atol=1e-5)
    if k == 8:
        assert np.array_equal(info["state"], np.asarray(FREE_START, dtype=np.float32))


def test_noop_keeps_position_over_many_steps():
    env = _env()
    env.reset(seed=1, options={"start": FREE_START})
    for _ in range(5):
        _, _, _, _, info = env.step(np.int64(8))
    np.testing.assert_array_equal(info["state"], np.asarray(FREE_START, dtype=np.float32))


def test_walls_still_stop_the_dot():
    env = _env()
    # Just left of the wall, away from the door: moving right (k = 0) stops on the wall's left face.
    env.reset(seed=0, options={"start": (29.5, 15.0), "goal": None})
    _, _, _, _, info = env.step(0)
    np.testing.assert_allclose(info["state"], [30.5, 15.0], atol=1e-5)
    # Resting on the face, straight down (k = 2) slides along it: an axis move has no component into the wall.
    _, _, _, _, info = env.step(2)
    np.testing.assert_allclose(info["state"], [30.5, 15.0 + MAX_ACTION_NORM], atol=1e-5)


@pytest.mark.parametrize("bad", [9, -1, 2.0, True, np.array([1, 2])])
def test_bad_index_raises(bad):
    env = _env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(bad)


def test_wrapper_validates_table_against_action_space():
    base = TwoRoomsEnv(image_size=16)
    with pytest.raises(ValueError, match=r"\[K, 2\]"):
        DiscreteActions(base, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\[K, 2\]"):
        DiscreteActions(base, np.zeros(2))
    with pytest.raises(ValueError, match="outside"):
        DiscreteActions(base, np.array([[0.0, 0.0], [3.0, 0.0]]))
    with pytest.raises(ValueError, match="finite"):
        DiscreteActions(base, np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="Box"):
        DiscreteActions(DiscreteActions(base, discrete_action_table()), discrete_action_table())
    table = np.array([[1.0, 0.0], [0.0, 0.0]])
    env = DiscreteActions(base, table)
    table[0, 0] = 2.0  # the wrapper keeps its own read-only copy
    assert env.headings[0, 0] == 1.0 and not env.headings.flags.writeable


def test_gymnasium_make_and_unwrapped_helpers():
    env = gymnasium.make(TWO_ROOMS_DISCRETE_ID, image_size=16, max_steps=3)
    assert env.action_space == spaces.Discrete(9)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16, 16, 3) and obs.dtype == np.uint8
    truncated = False
    for _ in range(3):
        obs, _, _, truncated, _ = env.step(env.action_space.sample())
    assert truncated
    base = env.unwrapped
    assert isinstance(base, TwoRoomsEnv)
    start, goal = base.sample_eval_pair(np.random.default_rng(0))
    assert base.room_of(start) != base.room_of(goal)
    assert base.render_state(goal).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="wall"):
        make_env("two_rooms_discrete", wall=False)
