"""The label-free readout fit (`wm.readout.fit.type=actions`): it finds the marker the actions move among
look-alikes."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from jepa_world import checkpoints
from jepa_world.config import ConfigError, load_config
from jepa_world.data.episode_formats import open_episodes
from jepa_world.data.episodes import episode_filename, write_episode, write_metadata
from jepa_world.data.feature_cache import FeatureWindows
from jepa_world.models.readout_keypoints import KeypointReadout
from jepa_world.models.readout_mlp import MlpReadout
from jepa_world.models.vit import VisionTransformer
from jepa_world.training import train_world_model
from jepa_world.training.readout_actions import ACTIONS_MIN_R2, fit_readout_to_actions
from jepa_world.training.tasks import world_model_task
from tests.training.test_world_model_task import _over, _pretrained

STEP = 0.3  # cells per step, each way at most


def _vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2)


def _marker_cache(root, *, episodes: int = 160, steps: int = 10, agent: bool = True, seed: int = 0) -> FeatureWindows:
    """A feature cache of a 4 x 4 token grid of noise with four markers of four colours, each in the token of its cell
    with its offset inside the cell (as a ViT token holds a dot's colour and place in its patch): one moves as the
    action says (states: its place in px of a 32 px frame), three move at random by as much. Nothing but the actions
    tells which colour is the agent's. With `agent=False` the one the actions move is left out of the tokens."""
    rng = np.random.default_rng(seed)
    tokens = []
    for e in range(episodes):
        places = rng.uniform(0, 4, (4, 2))  # [agent, distractor x 3] in cells
        actions, states, frame_tokens = [], [], []
        for _ in range(steps + 1):
            z = 0.3 * rng.standard_normal((16, 16)).astype(np.float32)
            for i, (px, py) in enumerate(places):
                if agent or i:
                    cx, cy = int(px), int(py)
                    z[cy * 4 + cx, :4] += 4.0
                    z[cy * 4 + cx, 4:6] += 4.0 * np.array([px - cx - 0.5, py - cy - 0.5])
                    z[cy * 4 + cx, 6 + i] += 4.0  # its colour
            frame_tokens.append(z)
            states.append(places[0] * 8.0)
            moves = rng.uniform(-STEP, STEP, (4, 2))  # the first is the action
            actions.append(moves[0] / STEP)
            places = np.clip(places + moves, 0, 3.999)
        write_episode(root / episode_filename(e), frames=np.zeros((steps + 1, 32, 32, 3), np.uint8),
                      actions=np.array(actions[:-1], np.float32), states=np.array(states, np.float32))  # fmt: skip
        tokens.append(torch.from_numpy(np.stack(frame_tokens)))
    write_metadata(root, {"env": "markers"})
    cache = FeatureWindows(open_episodes(root=root, window=6, image_size=32, uint8=True), lambda f: torch.zeros(0))
    cache.features = tokens  # [F, 16, 16] per episode: the markers' tokens in place of a ViT's
    return cache


def test_fit_to_the_actions_finds_the_marker_they_move_among_look_alikes(tmp_path):
    cache = _marker_cache(tmp_path)
    readout = KeypointReadout(backbone=_vit(), keypoints=1)
    grads = {n: p.requires_grad for n, p in readout.named_parameters()}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*did not find what they move")  # it found it: no warning
        out = fit_readout_to_actions(readout, cache, episodes=140, steps=600, seed=0, windows_per_step=16)
    assert out["readout_idm_r2"] > ACTIONS_MIN_R2 and out["readout_attention"] > 0.5, out
    assert 0 < out["readout_rmse_other"] < 0.3 * out["readout_chance_other"], out  # against states it never read
    assert {n: p.requires_grad for n, p in readout.named_parameters()} == grads and not readout.training
    # Held-out episodes: the keypoint sits in the agent's cell (half a cell is 0.25 in image units), not a distractor's.
    tokens = torch.cat(cache.features[140:])
    where = torch.cat([torch.from_numpy(cache.windows.episode_states(e)) for e in range(140, 160)]) / 16 - 1
    with torch.no_grad():
        err = (readout(tokens)[:, 0] - where).abs().max(dim=1).values
    assert (err < 0.25).float().mean() > 0.9, err


def test_fit_to_actions_that_move_nothing_in_the_tokens_warns(tmp_path):
    cache = _marker_cache(tmp_path, agent=False, episodes=20)
    readout = KeypointReadout(backbone=_vit(), keypoints=1)
    with pytest.warns(UserWarning, match=r"did not find what they move: its inverse dynamics explains -?[\d.]+ of"):
        out = fit_readout_to_actions(readout, cache, episodes=20, steps=150, seed=0, windows_per_step=8)
    assert out["readout_idm_r2"] < ACTIONS_MIN_R2


def test_fit_to_actions_refuses_what_it_cannot_fit(tmp_path):
    cache = _marker_cache(tmp_path, episodes=2, steps=6)
    for readout, match in [
        (KeypointReadout(backbone=_vit(), keypoints=2), "keypoints=2"),
        (MlpReadout(backbone=_vit(), embed_dim=2), "a MlpReadout with keypoints=None"),
        (KeypointReadout(backbone=_vit(), keypoints=1, freeze_backbone=False), "freeze_backbone=False"),
    ]:
        with pytest.raises(ValueError, match=match):
            fit_readout_to_actions(readout, cache, episodes=2, steps=1, seed=0)
    readout = KeypointReadout(backbone=_vit(), keypoints=1)
    with pytest.raises(ValueError, match="steps=0"):
        fit_readout_to_actions(readout, cache, episodes=2, steps=0, seed=0)
    with pytest.raises(ValueError, match="first 0 episodes"):
        fit_readout_to_actions(readout, cache, episodes=0, steps=1, seed=0)


def _from_actions(tmp_path, **extra) -> list[str]:
    keys = {"wm.encoder.checkpoint": _pretrained(tmp_path),
            "wm.readout": "{type: keypoints, keypoints: 1, fit: {type: actions, steps: 20}}", **extra}  # fmt: skip
    return _over(tmp_path, **keys)


@pytest.mark.filterwarnings("ignore:the readout fit to the actions did not find")  # 20 fit steps on a tiny ViT
def test_train_wm_fits_the_readout_to_the_actions_then_keeps_it_frozen(tmp_path):
    over = _from_actions(tmp_path, **{"train.max_steps": 2, "wm.readout.lift": 8})
    cfg = load_config([], over, command="train-wm")
    fresh = world_model_task(cfg).model.encoder.state_dict()
    train_world_model(cfg)
    run = tmp_path / "run"
    fit = json.loads((run / "setup.json").read_text())
    assert {"readout_idm_r2", "readout_motion_r2", "readout_rmse_other"} <= set(fit), fit
    first = checkpoints.load_checkpoint(checkpoints.list_checkpoints(run / "checkpoints")[-1])["encoder"]
    fit_keys = [k for k in fresh if k.startswith("readout.") and not k.startswith("readout.backbone.")]
    assert any(not torch.equal(first[k], fresh[k]) for k in fit_keys)  # the fit moved the readout
    assert all(torch.equal(first[k], fresh[k]) for k in fresh if k.startswith("readout.backbone."))  # not the ViT
    train_world_model(load_config([], _from_actions(tmp_path, **{"train.max_steps": 3, "wm.readout.lift": 8}),
                                  command="train-wm"))  # fmt: skip
    last = checkpoints.load_checkpoint(checkpoints.list_checkpoints(run / "checkpoints")[-1])["encoder"]
    assert all(torch.equal(first[k], last[k]) for k in fit_keys)  # frozen after the fit, through the resume
    assert checkpoints.load_world_model(run).encode(torch.rand(1, 2, 3, 32, 32)).shape == (1, 2, 1, 8)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"wm.readout.keypoints": 2}, "'wm.readout.fit.type' = 'actions': fits one keypoint: .*wm.readout.keypoints=1"),
        ({"wm.readout": "{type: mlp, dim: 2, fit: {type: actions}}"}, "needs wm.readout.type=keypoints"),
        ({"wm.readout.fit.steps": 0}, "'wm.readout.fit.steps' = 0: must be >= 1"),
        (
            {"wm.readout.fit.labels": 10},
            "unknown config key 'wm.readout.fit.labels' \\(a actions fit has type, steps\\)",
        ),
    ],
)
def test_readout_from_actions_config_errors_name_the_key(tmp_path, extra, match):
    from jepa_world.factory import check_before_run

    with pytest.raises(ConfigError, match=match):
        check_before_run(load_config([], _from_actions(tmp_path, **extra), command="train-wm"), world_model=True)
