"""The field's protocols in `jepa-world plan` (`jepa_world.eval.field`, issue 39): pair selection, the env's own success
check, the floors, action blocks, the env-mismatch warning and the optional-package error.

Episode folders are collected here from stable-worldmodel's TwoRoom and Push-T at 32 px (a few episodes of 30 steps;
goals 10 rows ahead, budgets of 20 steps), so every test runs in seconds.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
from omegaconf import OmegaConf

pytest.importorskip("stable_worldmodel", reason="the field extra (stable-worldmodel) is not installed")

from jepa_world.cli import main
from jepa_world.config import ConfigError, PlannerSettings, load_config
from jepa_world.data.episodes import EpisodeDataset
from jepa_world.envs.collect import collect_episodes
from jepa_world.envs.field_envs import make_field_env
from jepa_world.eval.agents import ActionBlocks, Observation, WorldModelAgent
from jepa_world.eval.field import (
    EpisodeSource,
    draw_pairs,
    episode_files,
    held_out_files,
    run_field_episodes,
)
from jepa_world.eval.field_agents import ReplayAgent, SimulatorFieldCEMAgent, ZeroActionAgent
from jepa_world.eval.field_benchmark import episode_source
from jepa_world.eval.plan_benchmark import resolve_plan_env, run_plan_benchmark
from jepa_world.training import train_world_model

TWOROOM, PUSHT = "swm/TwoRoom-v1", "swm/PushT-v1"
OFFSET, BUDGET, SIZE = 10, 20, 32


def _source(root, files=None) -> EpisodeSource:
    files = tuple(files or episode_files(root))
    return EpisodeSource(root=root, files=files, held_out=False, why=str(root), metadata={})


@pytest.fixture(scope="module")
def tworoom(tmp_path_factory):
    out = tmp_path_factory.mktemp("tworoom") / "ep"
    return collect_episodes(env_name=TWOROOM, num_episodes=8, steps=30, output_dir=out, policy="tworoom_expert",
                            image_size=SIZE, progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def pusht(tmp_path_factory):
    out = tmp_path_factory.mktemp("pusht") / "ep"
    return collect_episodes(env_name=PUSHT, num_episodes=4, steps=30, output_dir=out, policy="pusht_weak",
                            image_size=SIZE, progress=False)  # fmt: skip


def _records(pairs):
    return [p.record() for p in pairs]


def test_swm_pairs_are_a_function_of_the_seed_and_read_the_goal_row(tworoom):
    a, _ = draw_pairs(_source(tworoom), protocol="swm", offset=OFFSET, num_pairs=6, seed=42)
    b, _ = draw_pairs(_source(tworoom), protocol="swm", offset=OFFSET, num_pairs=6, seed=42)
    c, _ = draw_pairs(_source(tworoom), protocol="swm", offset=OFFSET, num_pairs=6, seed=7)
    assert _records(a) == _records(b)
    assert _records(a) != _records(c)
    assert len({(p.episode, p.row) for p in a}) == 6  # drawn without replacement
    for p in a:
        with np.load(tworoom / p.episode) as data:
            assert p.goal_row == p.row + OFFSET < len(data["frames"])
            np.testing.assert_array_equal(p.start_state, data["env_states"][p.row])
            np.testing.assert_array_equal(p.goal_state, data["env_states"][p.goal_row])
            np.testing.assert_array_equal(p.goal_frame, data["frames"][p.goal_row])
            np.testing.assert_array_equal(p.actions, data["actions"][p.row : p.goal_row])
    with pytest.raises(ValueError, match=r"plan.pairs=100000, but only \d+ rows .* plan.offset=10"):
        draw_pairs(_source(tworoom), protocol="swm", offset=OFFSET, num_pairs=100_000, seed=0)


def test_every_agent_starts_from_the_pairs_start_rows(pusht):
    pairs, _ = draw_pairs(_source(pusht), protocol="swm", offset=OFFSET, num_pairs=3, seed=0)
    envs = [make_field_env(PUSHT, image_size=SIZE) for _ in pairs]
    space = envs[0].action_space
    for agent in (ZeroActionAgent(low=space.low, high=space.high), ReplayAgent(pairs=pairs, low=space.low,
                                                                               high=space.high)):  # fmt: skip
        st = run_field_episodes(envs, PUSHT, agent, pairs, budget=3, success_at="any", image_size=SIZE)
        np.testing.assert_array_equal(st.paths[:, 0], np.stack([p.start_state for p in pairs]))


def _pusht_success(state, goal):
    """Push-T's documented success: agent and block positions within 20 units, block angle within pi/9."""
    angle = abs(goal[4] - state[4])
    angle = min(angle, 2 * np.pi - angle)
    return np.linalg.norm(goal[:4] - state[:4]) < 20 and angle < np.pi / 9


@pytest.mark.parametrize("env_id", [TWOROOM, PUSHT])
def test_replaying_the_dataset_reaches_most_goals_and_success_is_the_envs_own(env_id, tworoom, pusht):
    root = tworoom if env_id == TWOROOM else pusht
    pairs, _ = draw_pairs(_source(root), protocol="swm", offset=OFFSET, num_pairs=8, seed=1)
    envs = [make_field_env(env_id, image_size=SIZE) for _ in pairs]
    space = envs[0].action_space
    replay = ReplayAgent(pairs=pairs, low=space.low, high=space.high)
    noop = ZeroActionAgent(low=space.low, high=space.high)
    goals = np.stack([p.goal_state for p in pairs])
    for success_at in ("any", "final"):
        st = run_field_episodes(envs, env_id, replay, pairs, budget=BUDGET, success_at=success_at, image_size=SIZE)
        # the env's own criterion, recomputed from the visited states: at any step after the first action, or the last
        if env_id == TWOROOM:
            hit = np.linalg.norm(st.paths[:, 1:, :2] - goals[:, None, :2], axis=-1) < 16.0  # [E, T]
        else:
            hit = np.array([[_pusht_success(s, g) for s in path[1:]] for path, g in zip(st.paths, goals, strict=True)])
        np.testing.assert_array_equal(st.success, hit.any(axis=1) if success_at == "any" else hit[:, -1])
        assert st.success_rate >= 0.75, (success_at, st.success)
    low = run_field_episodes(envs, env_id, noop, pairs, budget=BUDGET, success_at="final", image_size=SIZE)
    assert low.success_rate <= st.success_rate


def test_the_ceiling_plans_on_the_true_simulator(pusht):
    pairs, _ = draw_pairs(_source(pusht), protocol="swm", offset=OFFSET, num_pairs=2, seed=0)
    envs = [make_field_env(PUSHT, image_size=SIZE) for _ in pairs]
    settings = PlannerSettings(samples=16, elites=4, iterations=2, horizon=8, replan_every=4)
    ceiling = SimulatorFieldCEMAgent(sim=make_field_env(PUSHT, image_size=SIZE), env_id=PUSHT, settings=settings,
                                     low=-1.0, high=1.0)  # fmt: skip
    st = run_field_episodes(envs, PUSHT, ceiling, pairs, budget=12, success_at="any", image_size=SIZE)
    assert st.num_plans == 3 and st.success_rate == 1.0
    with pytest.raises(ValueError, match="reads the true state"):
        ceiling.act(Observation(pixels=None, goal_pixels=None))


def test_strict_drops_same_room_tworoom_pairs(tworoom):
    env = make_field_env(TWOROOM, image_size=SIZE)
    pairs, counts = draw_pairs(_source(tworoom), protocol="strict", offset=OFFSET, num_pairs=4, seed=0, env=env,
                               env_id=TWOROOM)  # fmt: skip
    assert counts["same_room"] > 0
    for p in pairs:
        assert (p.start_state[0] < 112) != (p.goal_state[0] < 112)  # the wall at x = 112 of 224
        assert np.linalg.norm(p.start_state[:2] - p.goal_state[:2]) >= 16.0  # not solved at the start
    again, _ = draw_pairs(_source(tworoom), protocol="strict", offset=OFFSET, num_pairs=4, seed=0, env=env,
                          env_id=TWOROOM)  # fmt: skip
    assert _records(again) == _records(pairs)


def test_strict_drops_pairs_solved_at_the_start(tmp_path):
    def still_then_random(obs, info, rng):  # 15 still steps (start row == goal row), then random pushes
        still_then_random.t += 1
        return np.zeros(2) if still_then_random.t <= 15 else rng.uniform(-1, 1, 2)

    still_then_random.reset = lambda: setattr(still_then_random, "t", 0)
    root = collect_episodes(env_name=PUSHT, num_episodes=2, steps=30, output_dir=tmp_path / "ep",
                            policy=still_then_random, image_size=SIZE, progress=False)  # fmt: skip
    env = make_field_env(PUSHT, image_size=SIZE)
    with pytest.warns(UserWarning, match=r"strict: only \d+ of plan.pairs=100 pairs"):
        pairs, counts = draw_pairs(_source(root), protocol="strict", offset=OFFSET, num_pairs=100, seed=0, env=env,
                                   env_id=PUSHT)  # fmt: skip
    assert counts["solved_at_start"] >= 2 * (15 - OFFSET)  # the still rows at least
    assert pairs and not any(_pusht_success(p.start_state, p.goal_state) for p in pairs)
    swm, _ = draw_pairs(_source(root), protocol="swm", offset=OFFSET, num_pairs=counts["candidate_rows"], seed=0)
    assert any(_pusht_success(p.start_state, p.goal_state) for p in swm)  # swm keeps them


def test_strict_pairs_come_only_from_held_out_episodes(pusht):
    run_cfg = OmegaConf.create({"wm": {"val_episodes": 2, "window": 4, "frameskip": 1}})
    src = episode_source(load_config([], ["plan.protocol=strict"], command="plan").plan, "strict", run_cfg, pusht)
    env = make_field_env(PUSHT, image_size=SIZE)
    pairs, _ = draw_pairs(src, protocol="strict", offset=OFFSET, num_pairs=20, seed=0, env=env, env_id=PUSHT)
    assert len(pairs) == 20 and {p.episode for p in pairs} == {"episode_000002.npz", "episode_000003.npz"}


def test_strict_holds_out_what_train_wm_held_out(tworoom, tmp_path):
    run_cfg = OmegaConf.create({"wm": {"val_episodes": 3, "window": 4, "frameskip": 1}})
    plan = load_config([], ["plan.protocol=strict"], command="plan").plan
    src = episode_source(plan, "strict", run_cfg, tworoom)
    # the episodes train-wm held out: the last 3 of those long enough for a window (too-short ones skipped first)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        windows = EpisodeDataset(root=tworoom, window=4, frameskip=1)
    assert [f.name for f in src.files] == [ep.path.name for ep in windows.episodes[-3:]]
    assert src.held_out
    with pytest.raises(ValueError, match=r"wm.val_episodes=K .* plan.episodes_dir"):
        episode_source(plan, "strict", OmegaConf.create({"wm": {"val_episodes": 0}}), tworoom)
    own = load_config([], ["plan.protocol=strict", f"plan.episodes_dir={tworoom}"], command="plan").plan
    with pytest.raises(ValueError, match=r"is the folder the world model was trained on"):
        episode_source(own, "strict", run_cfg, tworoom)
    with pytest.raises(ValueError, match=r"wm.val_episodes=50 must be between 1 and"):
        held_out_files(episode_files(tworoom), val_episodes=50, window=4, frameskip=1)


def _train(tmp_path, episodes, **extra):
    over = {"train.output_dir": tmp_path / "run", "train.max_steps": 2, "train.batch_size": 8, "train.log_every": 1,
            "train.ckpt_every": 2, "train.progress": False, "train.tensorboard": False, "wm.window": 3,
            "data.image_size": SIZE, **({"wm.episodes": episodes} if episodes else {}), **extra}  # fmt: skip
    train_world_model(load_config([], [f"{k}={v}" for k, v in over.items()], command="train-wm"))
    return tmp_path / "run"


FAST = ["plan.pairs=3", f"plan.offset={OFFSET}", f"plan.budget={BUDGET}", "plan.samples=8", "plan.elites=2",
        "plan.iterations=1", "plan.horizon=4", "plan.replan_every=2"]  # fmt: skip


def test_plan_defaults_to_the_models_env_and_warns_on_another(pusht, tmp_path, capsys):
    run = _train(tmp_path, pusht)
    # no --env: the env of the model's episodes, on its default protocol (swm), floors and learned rows in one table
    assert main(["plan", "--checkpoint", str(run), *FAST, f"plan.output={tmp_path / 'out'}", "-q"]) == 0
    table = capsys.readouterr().out
    assert "swm/PushT-v1: protocol swm, 3 pairs" in table
    for row in ("| world model + CEM |", "| no-op |", "| random |", "| replay (dataset actions) |"):
        assert row in table
    saved = json.loads((tmp_path / "out" / "pairs.json").read_text())
    assert len(saved["pairs"]) == 3 and {"episode", "row", "goal_row", "start_state", "goal_state"} <= set(
        saved["pairs"][0]
    )
    assert main(["plan", "--checkpoint", str(run), *FAST, f"plan.output={tmp_path / 'out2'}", "-q"]) == 0
    assert json.loads((tmp_path / "out2" / "pairs.json").read_text())["pairs"] == saved["pairs"]  # same pairs
    # planned on another env: a warning naming both
    plan = load_config([], ["plan.env=two_rooms", "plan.episodes=1", "plan.max_steps=2", "plan.ceiling=false",
                            "plan.baselines=false", "plan.stop_radius=null"], command="plan").plan  # fmt: skip
    with pytest.warns(UserWarning, match=r"plan.env='two_rooms'.*came from env 'swm/PushT-v1'"):
        run_plan_benchmark(run, plan=plan, log=None)
    other = load_config([], ["plan.env=swm/PushT-v1", "plan.env_kwargs={resolution: 48}"], command="plan").plan
    with pytest.warns(UserWarning, match=r"plan.env_kwargs=\{'resolution': 48\}.*env_kwargs=\{\}"):
        assert resolve_plan_env(other, pusht)[:2] == ("swm/PushT-v1", {"resolution": 48})


def test_a_frameskip_model_plans_in_blocks_of_env_actions(tworoom, tmp_path):
    run = _train(tmp_path, tworoom, **{"wm.frameskip": 2})
    plan = load_config([], [*FAST, "plan.pairs=2"], command="plan").plan
    result = run_plan_benchmark(run, plan=plan, log=None)
    assert result["settings"]["frameskip"] == 2 and result["protocol"]["env"] == TWOROOM
    assert result["results"][0]["name"] == "world model + CEM (2-action blocks)"
    # the agent: one model step (a 4-d action block) per 2 env steps of the 2-d env
    from jepa_world.checkpoints import load_world_model

    model = load_world_model(run)
    assert model.predictor.action_dim == 4
    pairs, _ = draw_pairs(_source(tworoom), protocol="swm", offset=OFFSET, num_pairs=2, seed=0)
    envs = [make_field_env(TWOROOM, image_size=SIZE) for _ in pairs]
    settings = PlannerSettings(samples=8, elites=2, iterations=1, horizon=4, replan_every=2)
    inner = WorldModelAgent(model=model, settings=settings, max_norm=0.0, low=-1.0, high=1.0)
    agent = ActionBlocks(agent=inner, frameskip=2, action_dim=2, low=-1.0, high=1.0)
    st = run_field_episodes(envs, TWOROOM, agent, pairs, budget=8, success_at="any", image_size=SIZE)
    assert agent.model_steps == 4 and st.num_plans == 2  # 8 env steps = 4 blocks, a solve every 2 blocks
    # and on our Two-Rooms protocol
    ours = _train(tmp_path / "ours", None, **{"wm.frameskip": 2, "wm.collect.episodes": 6, "wm.collect.steps": 8})
    keys = ["plan.env=two_rooms", "plan.episodes=2", "plan.max_steps=6", "plan.samples=8", "plan.elites=2",
            "plan.iterations=1", "plan.horizon=4", "plan.replan_every=2", "plan.baselines=false", "plan.ceiling=false",
            "plan.stop_radius=null"]  # fmt: skip
    plan = load_config([], keys, command="plan").plan
    result = run_plan_benchmark(ours, plan=plan, log=None)
    assert result["settings"]["frameskip"] == 2 and result["results"][0]["num_plans"] == 2  # 6 steps = 3 blocks


def test_a_missing_field_package_names_what_to_install(monkeypatch):
    from jepa_world.eval.plan_benchmark import check_plan_env

    monkeypatch.setitem(sys.modules, "stable_worldmodel", None)  # as if it were not installed
    with pytest.raises(ValueError, match=r"plan.env='swm/PushT-v1'.*pip install .*stable-worldmodel"):
        check_plan_env("swm/PushT-v1")
    with pytest.raises(ConfigError, match=r"plan.env.*did you mean 'two_rooms'"):  # the form is checked at load
        load_config([], ["plan.env=two_room"], command="plan")
