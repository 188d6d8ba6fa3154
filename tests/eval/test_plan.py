"""The planning protocol and agents (`jepa_world.eval`), `load_world_model`, and the `plan` command."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from jepa_world import checkpoints
from jepa_world.config import PlanConfig, PlannerSettings, load_config
from jepa_world.envs import TwoRoomsEnv, make_env, make_policy
from jepa_world.envs.geometry import MAX_ACTION_NORM
from jepa_world.eval.agents import Observation, PolicyAgent, SimulatorCEMAgent, WorldModelAgent
from jepa_world.eval.plan_benchmark import plan_from_config, run_plan_benchmark
from jepa_world.eval.protocol import eval_pairs, evaluate_policy, run_episodes
from jepa_world.models import create_model
from jepa_world.models.small import PooledEncoder
from jepa_world.models.world_model import WorldModel
from jepa_world.training import train_world_model
from tests.conftest import ROOT


def _tiny_model(image_size: int = 32, seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    encoder = PooledEncoder(img_size=image_size, hidden_dim=32, embed_dim=16)
    predictor = create_model("dynamics_nano", embed_dim=16, action_dim=2, state_dim=0)
    return WorldModel(encoder=encoder, predictor=predictor, pool=True, freeze_encoder=False).eval()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wm")
    over = {"train.output_dir": tmp / "run", "train.max_steps": 3, "train.batch_size": 8, "train.log_every": 1,
            "train.ckpt_every": 3, "train.progress": False, "train.tensorboard": False, "wm.collect.episodes": 8,
            "wm.collect.steps": 6, "wm.window": 4, "data.image_size": 32}  # fmt: skip
    cfg = load_config([], [f"{k}={v}" for k, v in over.items()], command="train-wm")
    train_world_model(cfg)
    return tmp / "run", cfg


def test_eval_pairs_match_evaluate_policy_and_straight_line_agrees():
    env = make_env("two_rooms")
    ref = evaluate_policy(env, make_policy("straight_line"), num_episodes=8, seed=3)
    pairs = eval_pairs(env, 8, seed=3)
    np.testing.assert_array_equal(pairs, ref["pairs"])
    assert np.all(env.room_of(pairs[:, 0]) != env.room_of(pairs[:, 1]))  # opposite rooms
    stats = run_episodes(env, PolicyAgent(policy="straight_line"), pairs, max_steps=env.max_steps)
    np.testing.assert_allclose(stats.final_distance, ref["final_distance"], atol=1e-9)
    assert stats.paths.shape == (8, env.max_steps + 1, 2)


def test_simulator_cem_reaches_goals_where_random_and_noop_do_not():
    env = make_env("point_arena", image_size=32)
    pairs = eval_pairs(env, 6, seed=0)
    settings = PlannerSettings(samples=32, elites=4, iterations=3, horizon=8, replan_every=2)
    sim = run_episodes(env, SimulatorCEMAgent(env=env, settings=settings), pairs, max_steps=40)
    rnd = run_episodes(env, PolicyAgent(policy="random"), pairs, max_steps=40)
    noop = run_episodes(env, PolicyAgent(policy="noop"), pairs, max_steps=40)
    assert sim.success_rate >= 5 / 6
    assert rnd.success_rate <= 1 / 6 and noop.success_rate == 0.0
    assert sim.final_distance.mean() < 0.25 * noop.final_distance.mean()
    assert sim.num_plans == 20  # 40 steps / replan every 2


class _Poisoned(TwoRoomsEnv):
    """Raises if the simulator or renderer is used while the agent is acting."""

    inside_agent = False

    def _guard(self, name):
        if self.inside_agent:
            raise AssertionError(f"the learned agent called env.{name}")

    def transition(self, state, action):
        self._guard("transition")
        return super().transition(state, action)

    def step(self, action):
        self._guard("step")
        return super().step(action)

    def reset(self, **kwargs):
        self._guard("reset")
        return super().reset(**kwargs)

    def render_state(self, xy, scene=None):
        self._guard("render_state")
        return super().render_state(xy, scene)

    def advance_scene(self, scene, rng):
        self._guard("advance_scene")
        return super().advance_scene(scene, rng)


def guard_agent(env: _Poisoned, agent) -> list[tuple[Observation, np.ndarray]]:
    """Make `env` raise on any simulator or renderer call while `agent` acts; returns the (obs, actions) it saw."""
    act, seen = agent.act, []

    def guarded_act(obs: Observation) -> np.ndarray:
        env.inside_agent = True
        try:
            a = act(obs)
        finally:
            env.inside_agent = False
        seen.append((obs, a))
        return a

    agent.act = guarded_act
    return seen


def test_learned_agent_never_queries_the_simulator_and_acts_inside_the_action_space():
    env = _Poisoned(image_size=32)
    agent = WorldModelAgent(
        model=_tiny_model(), settings=PlannerSettings(samples=16, elites=4, iterations=2, horizon=4, replan_every=2)
    )
    seen = guard_agent(env, agent)
    stats = run_episodes(env, agent, eval_pairs(env, 3, seed=1), max_steps=6)
    assert len(seen) == 6 and all(o.state is None and o.goal_state is None for o, _ in seen)  # pixels only
    assert all(o.pixels.shape == (3, 32, 32, 3) and o.goal_pixels.shape == (3, 32, 32, 3) for o, _ in seen)
    a = np.stack([a for _, a in seen])  # [T, E, 2]
    assert a.shape == (6, 3, 2) and a.dtype == np.float32
    assert np.all(np.abs(a) <= MAX_ACTION_NORM) and np.all(np.linalg.norm(a, axis=-1) <= MAX_ACTION_NORM + 1e-5)
    assert stats.num_plans == 3
    # The same poisoned env really does raise when the guard is on.
    env.inside_agent = True
    with pytest.raises(AssertionError, match="transition"):
        env.transition(np.zeros(2) + 10, np.zeros(2))


def test_compiled_agent_plans_as_the_eager_one_and_only_for_cem():
    torch.manual_seed(0)
    predictor = create_model("dynamics_mlp", embed_dim=16, action_dim=2, hidden_dim=16)
    with torch.no_grad():
        for p in predictor.parameters():
            p.normal_(0.0, 0.3)
    encoder = PooledEncoder(img_size=32, hidden_dim=32, embed_dim=16)
    model = WorldModel(encoder=encoder, predictor=predictor, pool=True, freeze_encoder=True).eval()
    env = make_env("two_rooms", image_size=32)
    pairs = eval_pairs(env, 2, seed=0)
    settings = PlannerSettings(samples=16, elites=4, iterations=2, horizon=4, replan_every=2)
    paths = []
    for compiled in (False, True):
        agent = WorldModelAgent(model=model, settings=settings, compiled=compiled)
        paths.append(run_episodes(env, agent, pairs, max_steps=4).paths)
    np.testing.assert_allclose(paths[1], paths[0], atol=1e-3)  # the same plans up to rounding
    # plan.compile reaches the agent (what `jepa-world plan plan.compile=true` runs)
    over = [
        "plan.episodes=2",
        "plan.max_steps=2",
        "plan.horizon=4",
        "plan.samples=16",
        "plan.elites=4",
        "plan.iterations=2",
        "plan.baselines=false",
        "plan.ceiling=false",
        "plan.gif_episodes=0",
        "plan.compile=true",
    ]
    result = plan_from_config(model, load_config([], over, command="plan"), log=None)
    assert result["settings"]["compile"] and result["results"][0]["name"] == "world model + CEM (compiled)"
    with pytest.raises(ValueError, match="plan.compile compiles the rollout of the cem / mppi agents"):
        run_plan_benchmark(model, plan=PlanConfig(agent="policy", compile=True, episodes=1), log=None)


def test_stop_rule_gives_zero_actions_at_the_goal():
    env = make_env("two_rooms", image_size=32)
    agent = WorldModelAgent(
        model=_tiny_model(),
        settings=PlannerSettings(samples=8, elites=2, iterations=1, horizon=2, replan_every=1),
        stop_threshold=1e-3,
    )
    pairs = eval_pairs(env, 2, seed=0)
    pairs[0, 0] = pairs[0, 1]  # episode 0 starts on its goal: identical images, latent distance 0
    stats = run_episodes(env, agent, pairs, max_steps=3)
    np.testing.assert_array_equal(stats.paths[0], np.repeat(pairs[0, 1][None].astype(np.float64), 4, axis=0))
    assert agent.last_distance[0] == 0.0 and agent.last_distance[1] > 0.0


def test_load_world_model_round_trips_a_trained_checkpoint(tiny_run):
    from jepa_world.training.tasks import world_model_task

    run, cfg = tiny_run
    loaded = checkpoints.load_world_model(run)
    state = checkpoints.load_checkpoint(checkpoints.list_checkpoints(run / "checkpoints")[-1])
    # An independent in-memory model: the task's own model with the checkpoint's tensors.
    task = world_model_task(cfg)
    fresh = task.model.eval()
    x = torch.rand(3, 1, 3, 32, 32)
    a = torch.rand(3, 5, 6, 2) * 2 - 1
    differs = not torch.allclose(
        fresh.rollout(fresh.encode(x)[:, None], a), loaded.rollout(loaded.encode(x)[:, None], a)
    )
    for name, module in task.components.items():
        module.load_state_dict(state[name])
    assert set(task.components) == {"encoder", "predictor", "inverse_dynamics"}
    assert differs  # the loaded weights are the trained ones, not a fresh init
    z_ref = fresh.rollout(fresh.encode(x)[:, None], a)
    z = loaded.rollout(loaded.encode(x)[:, None], a)
    assert z.shape == (3, 5, 6, 1, cfg.wm.encoder.embed_dim)  # pooled latents of the width the run was trained with
    torch.testing.assert_close(z, z_ref, rtol=0, atol=0)
    assert not loaded.training


def test_load_world_model_refuses_a_pretraining_checkpoint(tmp_path):
    path = tmp_path / "step_00000001.pt"
    checkpoints.save_checkpoint(
        path, {"task": "pretrain", "target_encoder": {"w": torch.zeros(1)}, "config": "seed: 0\n"}
    )
    with pytest.raises(checkpoints.CheckpointError, match="not a world-model checkpoint"):
        checkpoints.load_world_model(path)


@pytest.mark.parametrize("env", ["two_rooms", "two_rooms_clutter"])
def test_plan_cli_end_to_end(tiny_run, tmp_path, env):
    run, _ = tiny_run
    out = tmp_path / "plan"
    cmd = [sys.executable, "-m", "jepa_world.cli", "plan", "--env", env, "--checkpoint", str(run),
           "--episodes", "2", "--max-steps", "6", "--horizon", "3", "--samples", "8", "--elites", "2",
           "--iterations", "1", "--replan-every", "1", "--gif-episodes", "2", "--output", str(out), "-q"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    for row in ("world model + CEM", "random", "no-op", "straight line", "CEM + true sim"):
        assert f"| {row} |" in res.stdout
    result = json.loads((out / "results.json").read_text())
    assert result["results"][0]["name"] == "world model + CEM"
    assert all(len(r["success"]) == 2 for r in result["results"])
    assert result["protocol"]["max_steps"] == 6 and result["protocol"]["success_threshold_px"] == 4.5
    assert result["protocol"]["env"] == env
    from PIL import Image

    with Image.open(out / "episodes.gif") as gif:
        assert gif.n_frames > 1
    with Image.open(out / "landscape.png") as png:
        assert png.width > png.height > 0


def test_evaluate_policy_matches_an_explicit_transition_loop():
    # The protocol runner against the loop it replaced: the true state stepped by env.transition, a policy call a step.
    env = make_env("two_rooms")
    for name in ("straight_line", "door_waypoint", "random"):
        result = evaluate_policy(env, make_policy(name), num_episodes=6, seed=5)
        policy, rng = make_policy(name), np.random.default_rng((5, 1))
        states, goals = result["pairs"][:, 0].astype(np.float64), result["pairs"][:, 1].astype(np.float64)
        for _ in range(env.max_steps):
            states = env.transition(states, np.asarray(policy(states, goals, rng), dtype=np.float32))
        np.testing.assert_allclose(result["final_state"], states, atol=1e-9)
        np.testing.assert_array_equal(result["successes"], np.linalg.norm(states - goals, axis=-1) < 4.5)


def test_plan_cli_takes_config_files_and_checked_key_value(tiny_run, tmp_path, capsys):
    from jepa_world.cli import main

    run, _ = tiny_run
    recipe = tmp_path / "plan.yaml"
    recipe.write_text(
        "plan:\n  episodes: 2\n  max_steps: 4\n  horizon: 3\n  samples: 8\n  elites: 2\n  iterations: 1\n"
        "  replan_every: 1\n  gif_episodes: 0\n  ceiling: false\n  baselines: false\n"
    )
    out = tmp_path / "plan"
    argv = ["plan", "--checkpoint", str(run), "--config", str(recipe), f"plan.output={out}", "plan.samples=9", "-q"]
    assert main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in result["results"]] == ["world model + CEM"]  # no baselines, no ceiling
    assert result["protocol"]["episodes"] == 2 and result["protocol"]["max_steps"] == 4
    assert (result["settings"]["horizon"], result["settings"]["samples"]) == (3, 9)  # key=value after the file
    # A flag alias is the same key: --horizon 2 == plan.horizon=2.
    assert main([*argv, "--horizon", "2", "--replan-every", "1"]) == 0
    assert json.loads((out / "results.json").read_text())["settings"]["horizon"] == 2
    capsys.readouterr()
    assert main(["plan", "--checkpoint", str(run), "plan.horizonn=3"]) == 2
    assert "did you mean 'plan.horizon'" in capsys.readouterr().err
    assert main(["plan", "--checkpoint", str(run), "--planner", "ccem"]) == 2
    assert "expected one of cem, mppi" in capsys.readouterr().err
