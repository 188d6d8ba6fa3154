"""Collection from any gymnasium env: stable-worldmodel's Push-T and TwoRoom with the field's behaviour policies, a
``module:EnvId`` toy env with dict observations, the stored env state that restores a row, and the errors."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch

gymnasium = pytest.importorskip("gymnasium")

from jepa_world.cli import main  # noqa: E402
from jepa_world.data.episodes import EpisodeDataset, episode_filename, read_env_states, read_metadata  # noqa: E402
from jepa_world.envs.collect import collect_episodes  # noqa: E402
from jepa_world.envs.field_envs import (  # noqa: E402
    make_field_env,
    parse_key_values,
    render_frame,
    restore_env_state,
)
from jepa_world.envs.field_policies import PushTWeakPolicy, TwoRoomExpertPolicy, make_field_policy  # noqa: E402

TOY = "tests.envs.toy_dict_env"
EPISODES, STEPS, SIZE = 3, 6, 64


def _episodes(root):
    return [dict(np.load(root / episode_filename(i))) for i in range(EPISODES)]


@pytest.fixture(scope="module")
def pusht(tmp_path_factory):
    root = tmp_path_factory.mktemp("pusht")
    return collect_episodes(env_name="swm/PushT-v1", policy=None, num_episodes=EPISODES, steps=STEPS, output_dir=root,
                            image_size=SIZE, seed=1, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def tworoom(tmp_path_factory):
    root = tmp_path_factory.mktemp("tworoom")
    return collect_episodes(env_name="swm/TwoRoom-v1", policy=None, num_episodes=EPISODES, steps=STEPS,
                            output_dir=root, image_size=SIZE, seed=1, progress=False)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------- swm Push-T
def test_pusht_collects_frames_states_and_env_states_with_the_weak_policy(pusht):
    meta = read_metadata(pusht)
    assert meta["env_id"] == "swm/PushT-v1" and meta["policy"] == "pusht_weak" and meta["state_key"] == "state"
    assert meta["env_state"]["goal_dims"] == 7 and meta["env_state"]["goal_option"] == "goal_state"
    assert len(meta["env_state"]["names"]) == 10 and meta["state_dim"] == 7
    for ep in _episodes(pusht):
        assert ep["frames"].shape == (STEPS + 1, SIZE, SIZE, 3) and ep["frames"].dtype == np.uint8
        assert ep["actions"].shape == (STEPS, 2) and np.all(np.abs(ep["actions"]) <= 1.0)
        assert ep["env_states"].shape == (STEPS + 1, 10) and ep["env_states"].dtype == np.float64
        np.testing.assert_allclose(ep["states"], ep["env_states"][:, :7].astype(np.float32))
        # the weak policy aims at a target within +-100 units of the block (unless the action bound cut it short)
        agent, block = ep["env_states"][:-1, :2], ep["env_states"][:-1, 2:4]
        target = agent + 100.0 * ep["actions"].astype(np.float64)
        assert np.all((np.abs(target - block) <= 100.0 + 1e-3) | (np.abs(ep["actions"]) >= 1.0 - 1e-6))
        assert np.abs(np.diff(ep["env_states"][:, :2], axis=0)).max() > 1.0, "the agent should move"
    assert len(EpisodeDataset(root=pusht, window=2)) > 0  # a pixel model reads the folder as before


def test_pusht_env_state_restores_a_row_exactly(pusht):
    ep = _episodes(pusht)[1]
    env = make_field_env("swm/PushT-v1", image_size=SIZE)
    goal = ep["env_states"][-1]
    for t in (0, 3, STEPS - 1):
        obs, info = restore_env_state(env, "swm/PushT-v1", ep["env_states"][t], goal=goal, seed=123)
        np.testing.assert_array_equal(render_frame(env, SIZE), ep["frames"][t])
        np.testing.assert_array_equal(obs["state"], ep["env_states"][t, :7])
        np.testing.assert_array_equal(info["goal_state"], goal[:7])
        obs, *_ = env.step(ep["actions"][t])  # the block's velocity is restored too: the next row follows exactly
        np.testing.assert_allclose(obs["state"], ep["env_states"][t + 1, :7], atol=1e-9)
    env.close()


def test_pusht_success_is_the_env_terminated_flag_at_the_goal(pusht):
    ep = _episodes(pusht)[0]
    env = make_field_env("swm/PushT-v1", image_size=SIZE)
    restore_env_state(env, "swm/PushT-v1", ep["env_states"][2], goal=ep["env_states"][3])
    assert env.step(ep["actions"][2])[2], "replaying the dataset action reaches the next row: success"
    far = ep["env_states"][3].copy()
    far[2:4] += 150.0  # the block 150 units away from where it will be
    restore_env_state(env, "swm/PushT-v1", ep["env_states"][2], goal=far)
    assert not env.step(ep["actions"][2])[2]
    env.close()


# ---------------------------------------------------------------------------------------------------------- swm TwoRoom
def test_tworoom_collects_with_the_noisy_expert_and_restores_rows(tworoom):
    meta = read_metadata(tworoom)
    assert meta["env_id"] == "swm/TwoRoom-v1" and meta["policy"] == "tworoom_expert"
    assert meta["env_state"]["goal_option"] == "target_state" and meta["state_dim"] == 2
    env = make_field_env("swm/TwoRoom-v1", image_size=SIZE)
    for ep in _episodes(tworoom):
        assert ep["frames"].shape == (STEPS + 1, SIZE, SIZE, 3) and ep["env_states"].shape == (STEPS + 1, 2)
        assert np.all(np.abs(ep["actions"]) <= 1.0) and np.abs(ep["actions"]).max() > 0.5
        for t in (0, STEPS):
            _, info = restore_env_state(env, "swm/TwoRoom-v1", ep["env_states"][t], goal=np.array([170.0, 60.0]))
            np.testing.assert_array_equal(render_frame(env, SIZE), ep["frames"][t])
            np.testing.assert_allclose(info["state"], ep["env_states"][t], atol=1e-5)
            np.testing.assert_allclose(info["goal_state"], [170.0, 60.0])
    env.close()


def test_tworoom_expert_heads_for_the_door_then_the_target():
    env = make_field_env("swm/TwoRoom-v1", image_size=SIZE)
    policy = TwoRoomExpertPolicy(env=env, action_noise=0.0, repeat_prob=0.0)
    rng = np.random.default_rng(0)
    obs, info = restore_env_state(env, "swm/TwoRoom-v1", np.array([50.0, 150.0]), goal=np.array([180.0, 150.0]))
    door = np.array([112.0, 49.0])  # the default door: centred at y = 49 on the wall at x = 112
    want = (door - [50.0, 150.0]) / np.linalg.norm(door - [50.0, 150.0])
    np.testing.assert_allclose(policy(obs, info, rng), want, atol=1e-5)
    obs, info = restore_env_state(env, "swm/TwoRoom-v1", np.array([108.0, 50.0]), goal=np.array([180.0, 150.0]))
    want = np.array([72.0, 100.0]) / np.linalg.norm([72.0, 100.0])  # at the door: straight for the target
    np.testing.assert_allclose(policy(obs, info, rng), want, atol=1e-5)
    obs, info = restore_env_state(env, "swm/TwoRoom-v1", np.array([150.0, 150.0]), goal=np.array([180.0, 110.0]))
    np.testing.assert_allclose(policy(obs, info, rng), [0.6, -0.8], atol=1e-5)  # same room: straight there
    noisy = make_field_policy("tworoom_expert", env)  # the field's noise: 2.0, repeat 0.05
    actions = np.stack([noisy(obs, info, rng) for _ in range(400)])
    assert np.all(np.abs(actions) <= 1.0) and np.mean(np.abs(actions) == 1.0) > 0.4  # mostly saturated noise
    repeats = np.mean(np.all(actions[1:] == actions[:-1], axis=1))
    assert 0.01 < repeats < 0.12  # about 5% of the actions repeat the previous one
    env.close()


def test_torch_rendering_envs_step_on_one_thread_and_a_callable_policy_gets_obs_and_info(tmp_path):
    torch.set_num_threads(2)
    seen = []

    def right(obs, info, rng):
        seen.append((torch.get_num_threads(), tuple(np.asarray(obs).shape), "goal_state" in info))
        return np.array([1.0, 0.0], np.float32)

    root = collect_episodes(env_name="swm/TwoRoom-v1", policy=right, num_episodes=1, steps=3, output_dir=tmp_path,
                            image_size=32, progress=False)  # fmt: skip
    assert torch.get_num_threads() == 2  # restored
    assert seen == [(1, (10,), True)] * 3
    states = read_env_states(root / episode_filename(0))
    assert np.all(np.diff(states[:, 0]) > 0) and np.allclose(np.diff(states[:, 1]), 0)


# -------------------------------------------------------------------------------------------------------- module:EnvId
def test_a_module_env_id_with_dict_observations_is_imported_and_collected(tmp_path):
    sys.modules.pop(TOY, None)
    gymnasium.registry.pop("ToyDict-v0", None)
    root = collect_episodes(env_name=f"{TOY}:ToyDict-v0", policy="random", num_episodes=EPISODES, steps=STEPS,
                            output_dir=tmp_path / "a", image_size=SIZE, env_kwargs={"start_scale": 0.5},
                            progress=False)  # fmt: skip
    toy = importlib.import_module(TOY)
    meta = read_metadata(root)
    assert meta["env_id"] == "ToyDict-v0" and meta["state_key"] == "state" and meta["env_state"] is None
    assert meta["env_kwargs"] == {"start_scale": 0.5}
    for ep in _episodes(root):
        assert ep["frames"].shape == (STEPS + 1, SIZE, SIZE, 3) and "env_states" not in ep
        assert np.all(ep["actions"] >= toy.LOW) and np.all(ep["actions"] <= toy.HIGH)  # the env's own bounds
        assert ep["actions"][:, 1].max() > 0.1 or ep["actions"][:, 1].min() < -0.05
        assert np.all(ep["states"][0] <= 0.5)  # the env kwarg reached the constructor
        np.testing.assert_allclose(np.clip(ep["states"][:-1] + ep["actions"], 0, 1), ep["states"][1:], atol=1e-6)
    speed = collect_episodes(env_name=f"{TOY}:ToyDict-v0", num_episodes=1, steps=STEPS, output_dir=tmp_path / "b",
                             policy="random", state_key="speed", progress=False)  # fmt: skip
    ep = dict(np.load(speed / episode_filename(0)))
    np.testing.assert_allclose(ep["states"][1:, 0], np.linalg.norm(ep["actions"], axis=1), atol=1e-6)
    with pytest.raises(ValueError, match=r"state_key='nope'.*\['speed', 'state'\]"):
        collect_episodes(env_name=f"{TOY}:ToyDict-v0", num_episodes=1, steps=2, output_dir=tmp_path / "c",
                         policy="random", state_key="nope", progress=False)  # fmt: skip


def test_field_policies_act_within_the_env_bounds():
    toy = importlib.import_module(TOY)
    env = make_field_env(f"{TOY}:ToyDict-v0", image_size=16)
    obs, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = np.stack([make_field_policy("random", env)(obs, info, rng) for _ in range(500)])
    assert np.all(actions >= toy.LOW) and np.all(actions <= toy.HIGH)
    assert np.all(actions.min(0) < toy.LOW + 0.05) and np.all(actions.max(0) > toy.HIGH - 0.05)  # the whole box
    with pytest.raises(ValueError, match="pusht_weak.*needs swm Push-T"):
        PushTWeakPolicy(env=gymnasium.make("CartPole-v1"))
    with pytest.raises(ValueError, match="tworoom_expert.*needs swm TwoRoom"):
        make_field_policy("tworoom_expert", env)


# ---------------------------------------------------------------------------------------------------------- errors, CLI
def test_a_missing_package_names_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_worldmodel", None)  # as if not installed
    with pytest.raises(ImportError, match=r"swm/PushT-v1.*pip install .*stable-worldmodel==0\.1\.1"):
        collect_episodes(env_name="swm/PushT-v1", policy=None, num_episodes=1, steps=2, output_dir=tmp_path,
                         progress=False)  # fmt: skip
    with pytest.raises(ImportError, match=r"jepa_world_no_such_module.*install the package"):
        collect_episodes(env_name="jepa_world_no_such_module:Foo-v0", policy=None, num_episodes=1, steps=2,
                         output_dir=tmp_path, progress=False)  # fmt: skip
    assert main(["collect", "--env", "swm/TwoRoom-v1", "--output", str(tmp_path / "x"), "--episodes", "1"]) == 2


def test_env_kwargs_are_yaml_scalars():
    got = parse_key_values(["a=3", "b=0.5", "c=true", "d=null", "e=[1, 2]", "f=text", "g=1e-3", "h="])
    assert got == {"a": 3, "b": 0.5, "c": True, "d": None, "e": [1, 2], "f": "text", "g": 1e-3, "h": ""}
    with pytest.raises(ValueError, match="--env-kwargs: expected key=value"):
        parse_key_values(["novalue"])


def test_cli_collect_takes_env_kwargs_names_policies_and_overwrite(tmp_path, capsys):
    out = str(tmp_path / "toy")
    args = ["collect", "--env", f"{TOY}:ToyDict-v0", "--episodes", "2", "--steps", "3", "--output", out,
            "--image-size", "16", "--env-kwargs", "start_scale=0.25", "--seed", "4"]  # fmt: skip
    assert main(args) == 0
    meta = read_metadata(out)
    assert meta["env_kwargs"] == {"start_scale": 0.25} and meta["policy"] == "random"
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--env-kwargs", "start_scale=0.5"]) == 0
    assert read_metadata(out)["env_kwargs"] == {"start_scale": 0.5}
    assert main([*args, "--overwrite", "--policy", "von_mises"]) == 2
    err = capsys.readouterr().err
    assert "--policy von_mises" in err and "pusht_weak, random, tworoom_expert" in err


def test_make_env_knows_package_and_module_ids():
    from jepa_world.envs import make_env

    assert make_env("swm/TwoRoom-v1").spec.id == "swm/TwoRoom-v1"
    assert make_env(f"{TOY}:ToyDict-v0").spec.id == "ToyDict-v0"
    with pytest.raises(ImportError, match="install the package that provides 'jepa_world_no_such_module'"):
        make_env("jepa_world_no_such_module:Foo-v0")
