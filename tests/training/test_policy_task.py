"""`jepa-world train-policy`: policies learned inside a world model through the one loop, resumed exactly, and the
`plan --agent policy | policy+cem | mcts` agents that act with them (pixels only, no simulator)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from jepa_world.checkpoints import load_checkpoint
from jepa_world.checkpoints.io import list_checkpoints
from jepa_world.checkpoints.policy import load_policy
from jepa_world.cli import main
from jepa_world.config import PlannerSettings, load_config
from jepa_world.envs.geometry import discrete_action_table
from jepa_world.eval.agents import Observation
from jepa_world.eval.plan_benchmark import plan_from_config
from jepa_world.eval.policy_agents import LearnedPolicyAgent, MCTSAgent, PolicyCEMAgent
from jepa_world.eval.protocol import eval_pairs, run_episodes
from jepa_world.training import pretrain, train_policy, train_world_model
from tests.conftest import tiny_overrides
from tests.eval.test_plan import _Poisoned, guard_agent

QUIET = ["train.progress=false", "train.tensorboard=false"]


def _wm(tmp, name="wm", embed_dim=16):
    over = {"train.output_dir": tmp / name, "train.max_steps": 3, "train.batch_size": 8, "train.log_every": 1,
            "train.ckpt_every": 3, "wm.collect.episodes": 8, "wm.collect.steps": 6, "wm.window": 4,
            "data.image_size": 32, "wm.encoder.embed_dim": embed_dim}  # fmt: skip
    train_world_model(load_config([], [f"{k}={v}" for k, v in over.items()] + QUIET, command="train-wm"))
    return tmp / name


@pytest.fixture(scope="module")
def wm_run(tmp_path_factory):
    return _wm(tmp_path_factory.mktemp("policy"))


def _policy_cfg(wm, out, method="actor_critic", *extra):
    over = [f"policy.world_model={wm}", f"policy.method={method}", f"train.output_dir={out}", "train.max_steps=4",
            "train.batch_size=8", "train.log_every=1", "train.ckpt_every=2", "policy.num_latents=32",
            "policy.hidden_dim=32", "policy.horizon=4", *QUIET, *extra]  # fmt: skip
    return load_config([], over, command="train-policy")


@pytest.mark.parametrize("method", ["actor_critic", "evolution"])
def test_train_policy_records_its_world_model_and_resumes_exactly(wm_run, tmp_path, method):
    full = train_policy(_policy_cfg(wm_run, tmp_path / "full", method))
    assert full["step"] == 4
    half = tmp_path / "half"
    step2 = list_checkpoints(tmp_path / "full" / "checkpoints")[0]
    assert step2.name == "step_00000002.pt"
    resumed = train_policy(_policy_cfg(wm_run, half, method, f"train.resume={step2}"))  # steps 3 and 4 again
    assert resumed["step"] == 4
    a, b = (
        load_checkpoint(list_checkpoints(tmp_path / "full" / "checkpoints")[-1]),
        load_checkpoint(list_checkpoints(half / "checkpoints")[-1]),
    )
    parts = ("actor", "critic", "slow_critic", "normalizer") if method == "actor_critic" else ("controller", "cma")
    for part in parts:
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs after resume"
    policy = load_policy(tmp_path / "full")
    assert policy.method == method and (policy.critic is None) == (method == "evolution")
    assert policy.world_model.endswith("step_00000003.pt") and str(wm_run) in policy.world_model
    assert policy.meta["latent_shape"] == [1, 16] and policy.meta["action_dim"] == 2
    if method == "evolution":  # the deployed controller is the CMA-ES mean, which moved
        assert (
            torch.equal(a["controller"]["theta"], a["cma"]["mean"].float()) and a["controller"]["theta"].abs().sum() > 0
        )


def test_train_policy_cli_and_its_errors(wm_run, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train-policy", "--checkpoint", str(wm_run), f"train.output_dir={out}", "train.max_steps=2",
            "train.batch_size=8", "policy.num_latents=16", "policy.hidden_dim=16", "policy.horizon=2",
            *QUIET]  # fmt: skip
    assert main(args) == 0 and "done: 2 steps" in capsys.readouterr().out
    # A pretraining run is not a world model: the error names the key and what the file is.
    pre = tmp_path / "pre"
    pretrain(load_config([], tiny_overrides(pre, **{"train.max_steps": 1})))
    assert main(["train-policy", "--checkpoint", str(pre / "run"), f"train.output_dir={tmp_path / 'x'}", *QUIET]) == 2
    err = capsys.readouterr().err
    assert "policy.world_model=" in err and "not a world-model checkpoint" in err and "pretraining" in err
    # plan --agent policy on a world-model run (not a policy run) is refused, naming what is needed.
    assert main(["plan", "--checkpoint", str(wm_run), "--agent", "policy", "plan.episodes=1"]) == 2
    assert "needs a train-policy run" in capsys.readouterr().err
    # tree search on a continuous env, and the discrete env without tree search
    assert main(["plan", "--checkpoint", str(out), "--agent", "mcts"]) == 2
    assert "two_rooms_discrete" in capsys.readouterr().err
    assert main(["plan", "--checkpoint", str(out), "plan.env=two_rooms_discrete"]) == 2
    assert "plan.agent=mcts" in capsys.readouterr().err


def test_a_policy_from_another_world_model_is_refused_naming_both(wm_run, tmp_path):
    train_policy(_policy_cfg(wm_run, tmp_path / "pol"))
    other = _wm(tmp_path, "other", embed_dim=8)
    cfg = load_config([], ["plan.agent=policy", "plan.episodes=1", "plan.max_steps=2", "plan.baselines=false",
                           "plan.ceiling=false"], command="plan")  # fmt: skip
    policy_ckpt = list_checkpoints(tmp_path / "pol" / "checkpoints")[-1]
    state = load_checkpoint(policy_ckpt)
    state["meta"]["world_model"] = str(
        list_checkpoints(other / "checkpoints")[-1]
    )  # the policy now points at a model of width 8
    torch.save(state, policy_ckpt)
    with pytest.raises(ValueError, match=r"latents \[1, 16\].*this world model has latents \[1, 8\]"):
        plan_from_config(tmp_path / "pol", cfg, log=None)


def test_policy_agents_act_from_pixels_only_and_never_touch_the_simulator(wm_run, tmp_path):
    train_policy(_policy_cfg(wm_run, tmp_path / "pol"))
    policy = load_policy(tmp_path / "pol")
    from jepa_world.checkpoints.world_model import load_world_model

    model = load_world_model(policy.world_model)
    env = _Poisoned(image_size=32)
    settings = PlannerSettings(samples=16, elites=4, iterations=2, horizon=4, replan_every=2)
    agents = [
        LearnedPolicyAgent(policy=policy, model=model),
        PolicyCEMAgent(policy=policy, model=model, settings=settings, policy_fraction=0.25),
        MCTSAgent(policy=policy, model=model, actions=discrete_action_table(), simulations=6, max_depth=3),
    ]
    table = discrete_action_table()
    for agent in agents:
        seen = guard_agent(env, agent)
        stats = run_episodes(env, agent, eval_pairs(env, 3, seed=1), max_steps=4)
        assert all(o.state is None and o.goal_state is None for o, _ in seen)  # pixels only
        a = np.stack([a for _, a in seen])
        assert a.shape == (4, 3, 2) and np.isfinite(a).all() and len(stats.success) == 3
        if isinstance(agent, MCTSAgent):  # one of the nine discrete actions at every step
            assert all(np.abs(table - row).sum(1).min() < 1e-6 for row in a.reshape(-1, 2))
    # The policy's proposals are evaluated among CEM's samples: its first plan starts from the policy's own rollout.
    assert agents[1].num_proposals == 4


def test_goal_images_of_another_size_are_refused(wm_run, tmp_path):
    train_policy(_policy_cfg(wm_run, tmp_path / "pol"))
    policy = load_policy(tmp_path / "pol")
    from jepa_world.checkpoints.world_model import load_world_model

    agent = LearnedPolicyAgent(policy=policy, model=load_world_model(policy.world_model))
    agent.reset(1)
    obs = Observation(pixels=np.zeros((1, 32, 32, 3), np.uint8), goal_pixels=np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"goal images are \[1, 64, 64, 3\] but the observations are \[1, 32, 32, 3\]"):
        agent.act(obs)


def test_policy_cem_is_reproducible(wm_run, tmp_path):
    # The policy's sampled proposals draw from the agent's seeded generator, like the planner's samples.
    train_policy(_policy_cfg(wm_run, tmp_path / "pol"))
    policy = load_policy(tmp_path / "pol")
    from jepa_world.checkpoints.world_model import load_world_model

    model = load_world_model(policy.world_model)
    env = _Poisoned(image_size=32)
    settings = PlannerSettings(samples=16, elites=4, iterations=2, horizon=4, replan_every=2)
    agent = PolicyCEMAgent(policy=policy, model=model, settings=settings, policy_fraction=0.25)
    pairs = eval_pairs(env, 3, seed=1)
    first = run_episodes(env, agent, pairs, max_steps=6).paths
    torch.randn(100)  # the global RNG moves; the agent's runs must not
    np.testing.assert_array_equal(run_episodes(env, agent, pairs, max_steps=6).paths, first)
