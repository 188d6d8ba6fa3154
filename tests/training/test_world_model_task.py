"""World-model training through the shared loop: collection, checkpoints with the data's dims, CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jepa_world import checkpoints
from jepa_world.config import load_config
from jepa_world.envs.collect import collect_episodes
from jepa_world.training import train_world_model
from tests.conftest import ROOT

MLP8 = "{type: mlp, dim: 8}"  # wm.readout: a per-position MLP readout of width 8


def _over(tmp_path, **extra) -> list[str]:
    base = {"train.output_dir": tmp_path / "run", "train.max_steps": 4, "train.batch_size": 8, "train.log_every": 1,
            "train.ckpt_every": 2, "train.progress": False, "train.tensorboard": False, "wm.collect.episodes": 12,
            "wm.collect.steps": 8, "wm.window": 4, "data.image_size": 32}  # fmt: skip
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
    over = _over(tmp_path, **{"wm.encoder.checkpoint": encoder_run, "train.max_steps": 2})
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


def _pretrained(tmp_path):
    from jepa_world.training import pretrain
    from tests.conftest import tiny_overrides

    pretrain(load_config([], tiny_overrides(tmp_path / "pre", **{"data.num_frames": 1, "train.max_steps": 1})))
    return tmp_path / "pre" / "run"


@pytest.mark.parametrize("head", ["mlp", "keypoints"])
def test_a_readout_trains_on_a_frozen_vit_and_the_world_model_loads_back(tmp_path, head):
    from jepa_world.models.readout_keypoints import KeypointReadout
    from jepa_world.models.readout_mlp import MlpReadout

    encoder_run = _pretrained(tmp_path)
    readout = "{type: mlp, dim: 8}" if head == "mlp" else "{type: keypoints, keypoints: 4}"
    over = _over(tmp_path, **{"wm.encoder.checkpoint": encoder_run, "wm.readout": readout, "train.max_steps": 3})
    train_world_model(load_config([], over, command="train-wm"))
    pre = checkpoints.load_checkpoint(checkpoints.list_checkpoints(encoder_run / "checkpoints")[-1])["target_encoder"]
    state = checkpoints.load_checkpoint(checkpoints.list_checkpoints(tmp_path / "run" / "checkpoints")[-1])
    for key, value in pre.items():  # the backbone is bit-identical: frozen under the readout
        assert torch.equal(value, state["encoder"][f"backbone.{key}"]), key
    assert "inverse_dynamics" in state  # joint training of the readout: the anti-collapse terms are on
    wm = checkpoints.load_world_model(tmp_path / "run")
    assert isinstance(wm.encoder, MlpReadout if head == "mlp" else KeypointReadout) and not wm.freeze_encoder
    x = torch.rand(2, 3, 3, 32, 32)
    z = wm.encode(x)
    assert z.shape == (2, 3, 1, 8) and torch.isfinite(z).all()
    if head == "keypoints":  # four (x, y) keypoints inside the frame
        assert z.abs().max() <= 1.0
    for key, value in state["encoder"].items():
        assert torch.equal(value, wm.encoder.state_dict()[key]), key


def test_a_video_encoder_reads_each_frame_as_one_tubelet_under_the_world_model(tmp_path):
    from jepa_world.training import pretrain
    from tests.conftest import tiny_overrides

    # V-JEPA clips of 4 frames, tubelet 2, the future half of each clip as the target (the two_rooms_vjepa recipe).
    pre = {"data.num_frames": 4, "train.max_steps": 1, "masks.num_blocks": "[1]", "masks.spatial_scale": "[1.0]",
           "masks.temporal_scale": "[0.5]", "masks.temporal_anchor": "end"}  # fmt: skip
    pretrain(load_config([], tiny_overrides(tmp_path / "pre", **pre)))
    encoder_run = tmp_path / "pre" / "run"
    over = _over(tmp_path, **{"wm.encoder.checkpoint": encoder_run, "wm.readout": MLP8, "train.max_steps": 2})
    train_world_model(load_config([], over, command="train-wm"))
    wm = checkpoints.load_world_model(tmp_path / "run")
    backbone = wm.encoder.backbone
    assert backbone.is_video and backbone.grid_size == (2, 4, 4)
    state = checkpoints.load_checkpoint(checkpoints.list_checkpoints(encoder_run / "checkpoints")[-1])
    for key, value in state["target_encoder"].items():  # frozen: bit-identical after train-wm
        assert torch.equal(value, wm.encoder.backbone.state_dict()[key]), key
    x = torch.rand(2, 3, 3, 32, 32)  # [B, T, C, H, W]: three frames per sample
    z = wm.encode(x)
    assert z.shape == (2, 3, 1, 8) and torch.isfinite(z).all()
    with torch.no_grad():  # one frame = one tubelet of that frame repeated: 16 tokens per frame
        tokens = backbone(x[0, 1][None])
        tubelet = backbone(x[0, 1][None, :, None].expand(-1, -1, 2, -1, -1))
    assert tokens.shape == (1, 16, backbone.embed_dim) and torch.equal(tokens, tubelet)


def test_a_finetuned_vit_moves_at_the_scaled_learning_rate(tmp_path):
    from jepa_world.training.tasks import world_model_task

    encoder_run = _pretrained(tmp_path)
    over = _over(tmp_path, **{"wm.encoder.checkpoint": encoder_run, "wm.readout": MLP8,
                              "wm.encoder.finetune": True,
                              "wm.encoder.lr_scale": 0.1})  # fmt: skip
    task = world_model_task(load_config([], over, command="train-wm"))
    backbone = {id(p) for p in task.model.encoder.backbone.parameters()}
    scales = {g["lr_scale"] for g in task.param_groups if {id(p) for p in g["params"]} & backbone}
    trainable = [n for n, p in task.model.encoder.backbone.named_parameters() if p.requires_grad]
    assert scales == {0.1} and len(trainable) > 10 and "pos_embed" not in trainable  # the sin-cos table stays fixed
    others = [g["lr_scale"] for g in task.param_groups if not ({id(p) for p in g["params"]} & backbone)]
    assert others and set(others) == {1.0}  # the readout, the predictor and the IDM head at the full LR


def test_finetuning_the_last_block_caches_the_frozen_ones_and_trains_only_it(tmp_path):
    from jepa_world.config import ConfigError
    from jepa_world.data.feature_cache import FeatureWindows
    from jepa_world.training.tasks import world_model_task

    encoder_run = _pretrained(tmp_path)  # ViT-nano, depth 2
    ft = {"wm.encoder.checkpoint": encoder_run, "wm.readout": MLP8,
                              "wm.encoder.finetune": True,
          "wm.encoder.finetune_blocks": 1, "train.max_steps": 3}  # fmt: skip
    cfg = load_config([], _over(tmp_path, **ft), command="train-wm")
    assert isinstance(world_model_task(cfg).dataset, FeatureWindows)  # block 0 encoded once per frame
    train_world_model(cfg)
    pre = checkpoints.load_checkpoint(checkpoints.list_checkpoints(encoder_run / "checkpoints")[-1])["target_encoder"]
    state = checkpoints.load_checkpoint(checkpoints.list_checkpoints(tmp_path / "run" / "checkpoints")[-1])["encoder"]
    moved = {k for k, v in pre.items() if not torch.equal(v, state[f"backbone.{k}"])}
    assert moved and all(k.startswith(("blocks.1.", "norm.")) for k in moved), sorted(moved)
    assert any(k.startswith("blocks.1.") for k in moved)
    wm = checkpoints.load_world_model(tmp_path / "run")
    assert wm.encoder.frozen_blocks == 1 and wm.encode(torch.rand(2, 3, 3, 32, 32)).shape == (2, 3, 1, 8)
    with pytest.raises(ValueError, match="wm.encoder.finetune_blocks=3 is more than the pretrained ViT's 2 blocks"):
        world_model_task(
            load_config([], _over(tmp_path / "b", **{**ft, "wm.encoder.finetune_blocks": 3}), command="train-wm")
        )
    with pytest.raises(ConfigError, match="wm.encoder.finetune_blocks.*needs wm.encoder.finetune=true"):
        load_config([], _over(tmp_path / "b", **{**ft, "wm.encoder.finetune": False}), command="train-wm")


def test_init_from_starts_a_second_stage_from_a_frozen_run_and_refuses_what_does_not_fit(tmp_path):
    from jepa_world.training.tasks import world_model_task

    encoder_run = _pretrained(tmp_path)  # ViT-nano, depth 2
    frozen = {"wm.encoder.checkpoint": encoder_run, "wm.readout": MLP8, "train.max_steps": 3}
    train_world_model(load_config([], _over(tmp_path / "lp", **frozen), command="train-wm"))
    first = checkpoints.load_checkpoint(checkpoints.list_checkpoints(tmp_path / "lp" / "run" / "checkpoints")[-1])
    ft = {
        **frozen,
        "wm.encoder.finetune": True,
        "wm.encoder.finetune_blocks": 1,
        "wm.init_from": tmp_path / "lp" / "run",
    }
    cfg = load_config([], _over(tmp_path / "ft", **ft), command="train-wm")
    task = world_model_task(cfg)
    for name, module in task.components.items():  # every weight of the frozen stage, none of a fresh init
        for key, value in module.state_dict().items():
            assert torch.equal(value, first[name][key]), (name, key)
    summary = train_world_model(cfg)
    assert summary["step"] == 3  # a fresh schedule: its own 3 steps, not 3 more after the first run's
    second = checkpoints.load_checkpoint(checkpoints.list_checkpoints(tmp_path / "ft" / "run" / "checkpoints")[-1])
    moved = {k for k, v in first["encoder"].items() if not torch.equal(v, second["encoder"][k])}
    assert any(k.startswith("backbone.blocks.1.") for k in moved)
    assert not any(k.startswith(("backbone.blocks.0.", "backbone.patch_embed.")) for k in moved), sorted(moved)
    with pytest.raises(ValueError, match=r"wm.init_from=.*is not a world-model checkpoint \(task='pretrain'\)"):
        world_model_task(load_config([], _over(tmp_path / "b", **{**ft, "wm.init_from": encoder_run}),
                                     command="train-wm"))  # fmt: skip
    wider = {**ft, "wm.readout.dim": 16}
    with pytest.raises(ValueError, match=r"wm.init_from=.*\[encoder\] does not match the model: shape mismatch"):
        world_model_task(load_config([], _over(tmp_path / "b", **wider), command="train-wm"))


def test_an_encoder_that_does_not_fit_is_refused_naming_both_sizes(tmp_path):
    import pytest

    from jepa_world.training.tasks import world_model_task

    encoder_run = _pretrained(tmp_path)  # 32 px frames
    over = _over(tmp_path, **{"wm.encoder.checkpoint": encoder_run, "data.image_size": 64})
    with pytest.raises(ValueError, match=r"built for 32 px frames, .* data.image_size=64: set data.image_size=32"):
        world_model_task(load_config([], over, command="train-wm"))
    train_world_model(load_config([], _over(tmp_path / "wm"), command="train-wm"))
    over = _over(tmp_path / "b", **{"wm.encoder.checkpoint": tmp_path / "wm" / "run"})
    with pytest.raises(ValueError, match="is a world-model run"):
        world_model_task(load_config([], over, command="train-wm"))


# ------------------------------------------------------------------------------------------------ held-out episodes
def _records(run) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_holding_out_episodes_trains_exactly_as_on_the_others_alone(tmp_path):
    # Collection is reproducible per episode: the 9-episode folder holds the first 9 of the 12-episode one. Training
    # on 12 with the last 3 held out (validated at every step) must equal training on the 9 (never validated).
    for n in (12, 9):
        collect_episodes(env_name="two_rooms", num_episodes=n, steps=8, output_dir=tmp_path / f"eps{n}", seed=3,
                         image_size=32, progress=False)  # fmt: skip
    held = _over(tmp_path / "held", **{"wm.episodes": tmp_path / "eps12", "wm.val_episodes": 3})
    alone = _over(tmp_path / "alone", **{"wm.episodes": tmp_path / "eps9", "train.log_every": 4})
    finals, healths = [], []
    for over in (held, alone):
        healths.append(train_world_model(load_config([], over, command="train-wm"))["health"])
        finals.append(checkpoints.load_checkpoint(checkpoints.list_checkpoints(Path(over[0].split("=")[1]) /
                                                                               "checkpoints")[-1]))  # fmt: skip
    records = _records(tmp_path / "held" / "run")
    assert len(records) == 4
    for r in records:
        assert {"val_loss", "val_loss_tf", "val_loss_rollout", "val_rollout_err_1"} <= set(r), sorted(r)
        assert all(math.isfinite(r[k]) for k in r if k.startswith("val_"))
    assert records[0]["val_loss_tf"] != records[-1]["val_loss_tf"]  # the model it evaluates is the one training
    assert not any(k.startswith("val_") for r in _records(tmp_path / "alone" / "run") for k in r)
    train, val = records[-1]["loss_rollout"], records[-1]["val_loss_rollout"]
    assert healths[0].startswith(f"rollout loss {train:.4g} on the training episodes, {val:.4g} on the held-out")
    assert healths[1] == ""  # no held-out episodes: nothing to say
    for component in ("encoder", "predictor", "inverse_dynamics"):
        for key, value in finals[0][component].items():
            assert torch.equal(value, finals[1][component][key]), (component, key)


def test_held_out_episodes_under_a_frozen_readout_and_too_many_held_out(tmp_path):
    encoder_run = _pretrained(tmp_path)
    over = _over(tmp_path, **{"wm.encoder.checkpoint": encoder_run, "wm.readout": MLP8,
                              "train.max_steps": 2,
                              "wm.val_episodes": 2})  # fmt: skip
    train_world_model(load_config([], over, command="train-wm"))
    assert "val_loss_rollout" in _records(tmp_path / "run")[-1]
    over = _over(tmp_path / "bad", **{"wm.val_episodes": 12})
    with pytest.raises(ValueError, match=r"wm.val_episodes=12 must be between 1 and 11: the dataset has 12 episodes"):
        train_world_model(load_config([], over, command="train-wm"))


def test_the_generalisation_health_warns_past_its_threshold_only():
    from jepa_world.training.validation import OVERFIT_RATIO, generalisation_health

    fits = {"loss_rollout": 0.1, "val_loss_rollout": 0.1 * OVERFIT_RATIO}
    summary, warning = generalisation_health({}, fits)
    assert summary == f"rollout loss 0.1 on the training episodes, {0.1 * OVERFIT_RATIO:.4g} on the held-out ones " \
                      f"({OVERFIT_RATIO:.1f}x)" and warning == ""  # fmt: skip
    summary, warning = generalisation_health({}, {"loss_rollout": 0.01, "val_loss_rollout": 0.65})
    assert "(65.0x)" in summary and "overfits its training episodes" in warning and f"{OVERFIT_RATIO:g}x" in warning
    assert generalisation_health({}, {"loss_rollout": 0.01}) == ("", "")


def test_a_frameskip_world_model_trains_on_action_blocks(tmp_path):
    # wm.frameskip=k: one model step is k env steps, its action the k actions concatenated (was a crash: the predictor
    # was built for one step's action width)
    train_world_model(load_config([], _over(tmp_path, **{"wm.frameskip": 2, "train.max_steps": 2}), command="train-wm"))
    state = checkpoints.load_checkpoint(checkpoints.list_checkpoints(tmp_path / "run" / "checkpoints")[-1])
    assert state["meta"]["action_dim"] == 4  # Two-Rooms actions are 2-d
    wm = checkpoints.load_world_model(tmp_path / "run")
    z = wm.encode(torch.rand(1, 1, 3, 32, 32))
    assert wm.rollout(z, torch.rand(1, 3, 4)).shape[1] == 3
