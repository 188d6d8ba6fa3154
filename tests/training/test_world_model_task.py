"""World-model training through the shared loop: collection, checkpoints with the data's dims, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from jepa_world import checkpoints
from jepa_world.config import load_config
from jepa_world.envs.collect import collect_episodes
from jepa_world.training import train_world_model
from tests.conftest import ROOT


def _over(tmp_path, **extra) -> list[str]:
    base = {"train.output_dir": tmp_path / "run", "train.max_steps": 4, "train.batch_size": 8, "train.log_every": 1,
            "train.ckpt_every": 2, "train.progress": False, "train.tensorboard": False, "wm.num_episodes": 12,
            "wm.episode_steps": 8, "wm.window": 4, "data.image_size": 32}  # fmt: skip
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def test_train_wm_collects_trains_and_checkpoints(tmp_path):
    summary = train_world_model(load_config([], _over(tmp_path), command="train-wm"))
    run = tmp_path / "run"
    assert (run / "episodes" / "metadata.json").exists()
    state = checkpoints.load_checkpoint(checkpoints.list_checkpoints(run / "checkpoints")[-1])
    assert state["task"] == "world_model" and state["step"] == 4
    assert state["meta"]["action_dim"] == 2 and state["meta"]["state_dim"] == 0
    assert {"encoder", "predictor", "inverse_dynamics"} <= set(state)
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(k in records[-1] for k in ("loss_tf", "loss_rollout", "loss_var", "loss_idm", "latent_std"))
    assert summary["step"] == 4


def test_frozen_pretrained_encoder_is_not_trained(tmp_path):
    from jepa_world.training import pretrain
    from tests.conftest import tiny_overrides

    pretrain(load_config([], tiny_overrides(tmp_path / "pre", **{"data.num_frames": 1, "train.max_steps": 1})))
    encoder_run = tmp_path / "pre" / "run"
    over = _over(tmp_path, **{"wm.encoder_checkpoint": encoder_run, "train.max_steps": 2})
    train_world_model(load_config([], over, command="train-wm"))
    pre = checkpoints.load_checkpoint(checkpoints.list_checkpoints(encoder_run / "checkpoints")[-1])["target_encoder"]
    wm = checkpoints.load_checkpoint(checkpoints.list_checkpoints(tmp_path / "run" / "checkpoints")[-1])
    assert "inverse_dynamics" not in wm  # frozen encoder: no anti-collapse heads
    for key, value in pre.items():
        assert torch.equal(value, wm["encoder"][key]), key


def test_cli_collect_then_train_wm_on_it(tmp_path):
    out = subprocess.run([sys.executable, "-m", "jepa_world.cli", "collect", "--episodes", "6", "--steps", "6",
                          "--output", str(tmp_path / "eps"), "--image-size", "32"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "wrote 6 episodes" in out.stdout
    cmd = [sys.executable, "-m", "jepa_world.cli", "train-wm", *_over(tmp_path, **{"wm.episodes": tmp_path / "eps"})]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "done: 4 steps" in out.stdout
    assert not (tmp_path / "run" / "episodes").exists()


def test_collect_is_deterministic(tmp_path):
    a = collect_episodes(env_name="two_rooms", num_episodes=2, steps=4, output_dir=tmp_path / "a", progress=False)
    b = collect_episodes(env_name="two_rooms", num_episodes=2, steps=4, output_dir=tmp_path / "b", progress=False)
    import numpy as np

    for name in ("episode_000000.npz", "episode_000001.npz"):
        x, y = np.load(a / name), np.load(b / name)
        assert np.array_equal(x["frames"], y["frames"]) and np.array_equal(x["actions"], y["actions"])
