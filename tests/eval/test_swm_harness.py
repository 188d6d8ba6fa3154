"""Their harness, our model: stable-worldmodel's evaluation (World, WorldModelPolicy, CEMSolver) runs a jepa_world
world model; its cost is our planners' cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("stable_worldmodel")

from jepa_world.checkpoints import load_world_model
from jepa_world.config import load_config
from jepa_world.envs.collect import collect_episodes
from jepa_world.eval.agents import encode_pixels
from jepa_world.eval.swm_harness import SwmCostModel, SwmEpisodes, evaluate_with_swm
from jepa_world.planning.costs import rollout_cost
from jepa_world.training import train_world_model

ENV = "swm/TwoRoom-v1"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two short swm TwoRoom episodes and a world model trained on them for two steps, as train-wm saves it."""
    root = tmp_path_factory.mktemp("swm")
    episodes = collect_episodes(env_name=ENV, num_episodes=3, steps=10, output_dir=root / "eps", image_size=32,
                                policy="random", progress=False)  # fmt: skip
    over = {"train.output_dir": root / "run", "train.max_steps": 2, "train.batch_size": 4, "train.log_every": 2,
            "train.ckpt_every": 2, "train.progress": False, "train.tensorboard": False, "wm.episodes": episodes,
            "wm.window": 3, "data.image_size": 32}  # fmt: skip
    train_world_model(load_config([], [f"{k}={v}" for k, v in over.items()], command="train-wm"))
    return episodes, load_world_model(root / "run")


def test_the_adapter_cost_is_our_planning_cost(tiny):
    episodes, model = tiny
    data = SwmEpisodes(episodes)
    rows = data.load_chunk(np.array([0, 1]), np.array([0, 2]), np.array([6, 8]))
    now = np.stack([r["pixels"][0].permute(1, 2, 0).numpy() for r in rows])  # [B, H, W, 3] uint8
    goal = np.stack([r["pixels"][-1].permute(1, 2, 0).numpy() for r in rows])
    b, s, h = 2, 5, 3
    candidates = torch.randn(b, s, h, model.predictor.action_dim, generator=torch.Generator().manual_seed(0))
    # swm's CEM hands every candidate the env's frames: [B, S, T=1, H, W, 3]
    info = {"pixels": torch.from_numpy(now)[:, None, None].expand(b, s, 1, *now.shape[1:]),
            "goal": torch.from_numpy(goal)[:, None, None].expand(b, s, 1, *goal.shape[1:])}  # fmt: skip
    for p, reduce in ((1, "last"), (2, "last+mean")):
        theirs = SwmCostModel(model, p=p, reduce=reduce).get_cost(dict(info), candidates)
        ours = rollout_cost(model, encode_pixels(model, now), encode_pixels(model, goal), p=p, reduce=reduce)(
            candidates
        )
        assert theirs.shape == (b, s)
        torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-6)
        assert theirs.std() > 0  # the candidates are told apart
    shifted = SwmCostModel(model).get_cost(dict(info, goal=info["pixels"]), candidates)
    assert not torch.allclose(shifted, SwmCostModel(model).get_cost(dict(info), candidates))  # the goal is read


def test_swm_evaluation_runs_a_jepa_world_model(tiny):
    episodes, model = tiny
    data = SwmEpisodes(episodes)
    tiny_solver = {"num_samples": 6, "n_steps": 2, "topk": 2, "horizon": 2, "receding_horizon": 1}
    result = evaluate_with_swm(model, env_id=ENV, dataset=data, episodes_idx=[0, 1], start_steps=[0, 1],
                               goal_offset=4, eval_budget=3, solver=tiny_solver)  # fmt: skip
    assert 0.0 <= result["success_rate"] <= 1.0
    assert result["successes"].shape == (2,)
    assert result["success_rate"] == pytest.approx(result["successes"].mean())
    assert result["cost_calls"] >= tiny_solver["n_steps"]  # their solver planned with our cost (2 per solve)
    assert result["cost_calls"] % tiny_solver["n_steps"] == 0
    # Each env is put in its dataset row's state with that row as its goal: one step (at most 10.5 px per axis) stays
    # within the env's success radius (16 px), so the env's own criterion says every pair succeeds.
    solved = evaluate_with_swm(model, env_id=ENV, dataset=data, episodes_idx=[0, 1], start_steps=[3, 5],
                               goal_offset=0, eval_budget=2, solver=tiny_solver)  # fmt: skip
    assert solved["success_rate"] == 1.0 and solved["successes"].all()
