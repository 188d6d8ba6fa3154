"""The four commands end to end, tiny: collect, JEPA pretraining on the episodes, train-wm on the frozen ViT, plan.

On the point arena (no wall) a world model on a frozen I-JEPA ViT with a token readout must beat random actions by a
wide margin under the strict protocol (pixels only, final distance < 4.5 px). Measured when written (seed 0 pairs,
training seed 0): 9/10 episodes against 0/10 for random actions, in about 40 s on 2 cores.
"""

from __future__ import annotations

import pytest

pytest.importorskip("gymnasium")

from jepa_world.config import load_config
from jepa_world.envs.collect import collect_episodes
from jepa_world.eval.plan_benchmark import plan_from_config
from jepa_world.training import pretrain, train_world_model
from tests.conftest import ROOT

QUIET = ["train.progress=false", "train.tensorboard=false"]


def test_jepa_pretrain_then_world_model_then_plan_beats_random(tmp_path):
    episodes = collect_episodes(env_name="point_arena", num_episodes=300, steps=16, output_dir=tmp_path / "eps",
                                image_size=32, progress=False)  # fmt: skip
    pre = tmp_path / "pre"
    pretrain(load_config([ROOT / "configs" / "pretrain" / "two_rooms_ijepa.yaml"],
                         [f"data.episodes={episodes}", "data.image_size=32", f"train.output_dir={pre}",
                          "train.max_steps=30", "train.batch_size=16", "train.log_every=10", *QUIET]))  # fmt: skip
    wm = tmp_path / "wm"
    recipes = [
        ROOT / "configs" / "world_model" / "two_rooms.yaml",
        ROOT / "configs" / "world_model" / "two_rooms_jepa.yaml",
    ]
    cfg = load_config(recipes, [f"wm.episodes={episodes}", f"wm.encoder.checkpoint={pre}", "data.image_size=32",
                                "wm.readout={type: mlp, dim: 16}", "wm.window=9", "wm.predictor.rollout_steps=8",
                                "train.max_steps=300",
                                f"train.output_dir={wm}", *QUIET], command="train-wm")  # fmt: skip
    train_world_model(cfg)
    plan = load_config([], ["plan.env=point_arena", "plan.episodes=10", "plan.max_steps=100", "plan.horizon=20",
                            "plan.samples=64", "plan.iterations=3", "plan.ceiling=false"], command="plan")  # fmt: skip
    rows = {r["name"]: r for r in plan_from_config(wm, plan, log=None)["results"]}
    learned, random = rows["world model + CEM"], rows["random"]
    assert random["success_rate"] == 0.0
    assert learned["success_rate"] >= 0.6, learned["success"]
    assert learned["mean_final_distance"] < 0.3 * random["mean_final_distance"]
