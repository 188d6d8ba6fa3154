"""The readout fit to labelled states (`wm.readout.fit.type=labels`): the fit, the frames it draws, and train-wm
around it."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from jepa_world import checkpoints
from jepa_world.config import ConfigError, load_config
from jepa_world.data.episode_formats import open_episodes
from jepa_world.data.feature_cache import FeatureWindows
from jepa_world.data.transforms import uint8_to_float
from jepa_world.envs.collect import collect_episodes
from jepa_world.eval.learned_agents import model_image_size
from jepa_world.models.readout_keypoints import KeypointReadout
from jepa_world.models.readout_mlp import MlpReadout
from jepa_world.models.vit import VisionTransformer
from jepa_world.training import train_world_model
from jepa_world.training.readout_fit import MISS_RATIO, draw_frames, fit_readout, fit_readout_to_states
from jepa_world.training.tasks import world_model_task
from tests.training.test_world_model_task import _over, _pretrained


def _vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2)


def test_fit_readout_finds_the_token_that_carries_the_target_and_restores_what_trained():
    # A token grid of noise where one random token per frame carries a marker: its centre is the target.
    readout = KeypointReadout(backbone=_vit(), keypoints=1)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(400, 16, 16, generator=g)
    where = torch.randint(0, 16, (400,), generator=g)
    tokens[torch.arange(400), where, :4] += 4.0
    targets = readout.centres[where]  # [400, 2] in [-1, 1]
    before = {k: v.clone() for k, v in readout.state_dict().items()}
    grads = {n: p.requires_grad for n, p in readout.named_parameters()}
    loss = fit_readout(readout, tokens[:300], targets[:300], steps=400, seed=0)["loss"]
    with torch.no_grad():
        err = (readout(tokens[300:])[:, 0] - targets[300:]).norm(dim=1).mean()
        chance = (targets[300:] - targets[:300].mean(0)).norm(dim=1).mean()
    assert loss < 0.02 and err < 0.15 * chance, (loss, float(err), float(chance))
    assert {n: p.requires_grad for n, p in readout.named_parameters()} == grads and not readout.training
    moved = {k for k, v in readout.state_dict().items() if not torch.equal(v, before[k])}
    assert moved and not any(k.startswith("backbone.") for k in moved)  # the frozen backbone never moves


class _MarkerWindows:
    """Windows of 6 frames of a 4 x 4 token grid whose marker token moves one cell per step as the action says."""

    def __init__(self, n: int):
        g = torch.Generator().manual_seed(2)
        moves = torch.tensor([[1, 0], [-1, 0], [0, 1], [0, -1]])
        self.items = []
        for _ in range(n):
            cell, tokens, actions = torch.randint(0, 4, (2,), generator=g), torch.randn(6, 16, 16, generator=g), []
            for t in range(6):
                tokens[t, cell[1] * 4 + cell[0], :4] += 4.0
                a = moves[torch.randint(0, 4, (1,), generator=g)][0]
                actions.append(((cell + a).clamp(0, 3) - cell).float())  # what the step does (0 at the edge)
                cell = (cell + a).clamp(0, 3)
            self.items.append({"tokens": tokens, "actions": torch.stack(actions[:-1])})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key):
        return self.items[key[0]]


def test_fit_readout_with_windows_learns_a_forward_model_of_its_own_states():
    windows = _MarkerWindows(40)
    tokens = torch.cat([w["tokens"] for w in windows.items[:20]])  # 120 labelled frames
    readout = KeypointReadout(backbone=_vit(), keypoints=1)
    targets = torch.stack([readout.centres[int(t[:, :4].sum(1).argmax())] for t in tokens])  # [120, 2]
    plain = fit_readout(readout, tokens, targets, steps=300, seed=0)
    assert "dynamics_loss" not in plain
    readout = KeypointReadout(backbone=_vit(), keypoints=1)
    fit = fit_readout(readout, tokens, targets, steps=300, seed=0, windows=windows, dynamics_weight=1.0,
                      windows_per_step=8)  # fmt: skip
    # One cell is 0.5 in the readout's units: a step moves it by 0.25 on average, (0.25^2)/2 per coordinate
    # is the MSE of predicting no move; the forward model of the fit states does well below it.
    assert fit["loss"] < 0.02 and fit["dynamics_loss"] < 0.3 * 0.25**2 / 2, fit
    with pytest.raises(ValueError, match="dynamics_weight=1.0"):
        fit_readout(readout, tokens, targets, steps=1, dynamics_weight=1.0)


def test_fit_readout_refuses_a_training_backbone_and_mismatched_shapes():
    with pytest.raises(ValueError, match="frozen backbone"):
        fit_readout(MlpReadout(backbone=_vit(), freeze_backbone=False), torch.zeros(4, 16, 16), torch.zeros(4, 2),
                    steps=1)  # fmt: skip
    readout = KeypointReadout(backbone=_vit(), keypoints=1)
    with pytest.raises(ValueError, match=r"\(4, 16, 16\) and \(3, 2\)"):
        fit_readout(readout, torch.zeros(4, 16, 16), torch.zeros(3, 2), steps=1)
    with pytest.raises(ValueError, match="steps=0"):
        fit_readout(readout, torch.zeros(4, 16, 16), torch.zeros(4, 2), steps=0)


def test_draw_frames_pairs_each_frame_with_its_own_state_without_repeats(tmp_path):
    collect_episodes(env_name="two_rooms", num_episodes=5, steps=6, output_dir=tmp_path, seed=0, image_size=32,
                     progress=False)  # fmt: skip
    windows = open_episodes(root=tmp_path, window=2, image_size=32, uint8=True)
    cache = FeatureWindows(windows, lambda f: torch.from_numpy(f.reshape(len(f), -1)[:, :8].astype(np.float32)))
    table = {}  # every frame of the first 4 episodes: its cached features -> its state
    for e in range(4):
        for f, s in zip(cache.features[e], windows.episode_states(e), strict=True):
            table.setdefault(tuple(f.tolist()), []).append(tuple(s.tolist()))
    tokens, states = draw_frames(cache, 4, 20, seed=3)
    assert tokens.shape == (20, 8) and states.shape == (20, 2)
    assert len({tuple(t.tolist()) + tuple(s.tolist()) for t, s in zip(tokens, states, strict=True)}) == 20
    for t, s in zip(tokens, states, strict=True):
        assert tuple(s.tolist()) in table[tuple(t.tolist())]
    more, _ = draw_frames(cache, 4, 28, seed=3)
    assert torch.equal(more[:20], tokens)  # a prefix of one permutation: more labels keep the first ones
    with pytest.raises(ValueError, match="29 labelled frames asked for; the 4 training episodes hold 28"):
        draw_frames(cache, 4, 29, seed=3)


def test_a_fit_to_tokens_that_do_not_hold_the_state_warns_that_it_found_something_else(tmp_path):
    collect_episodes(env_name="two_rooms", num_episodes=6, steps=8, output_dir=tmp_path, seed=0, image_size=32,
                     progress=False)  # fmt: skip
    windows = open_episodes(root=tmp_path, window=2, image_size=32, uint8=True)
    g = torch.Generator().manual_seed(0)
    cache = FeatureWindows(windows, lambda f: torch.randn(len(f), 16, 16, generator=g))  # noise: no state in it
    readout = KeypointReadout(backbone=_vit(), keypoints=1)
    with pytest.warns(UserWarning, match=r"readout fit to 20 labelled frames did not find the state: RMSE [\d.]+ on"):
        out = fit_readout_to_states(readout, cache, episodes=6, num_labels=20, steps=100, seed=0)
    states = torch.cat([torch.from_numpy(windows.episode_states(e)) for e in range(6)]).float()
    assert out["readout_rmse_other"] > MISS_RATIO * out["readout_chance_other"]
    assert 0.5 < out["readout_chance_other"] / float(states.var(0).sum().sqrt()) < 1.5  # the other frames' spread


def _labelled(tmp_path, **extra) -> list[str]:
    keys = {"wm.encoder.checkpoint": _pretrained(tmp_path),
            "wm.readout": "{type: mlp, dim: 8, fit: {type: labels, labels: 60, steps: 300}}", **extra}  # fmt: skip
    return _over(tmp_path, **keys)


def test_train_wm_fits_the_readout_to_states_then_keeps_it_frozen(tmp_path):
    more = {"wm.collect.episodes": 24, "wm.readout.fit.labels": 120}  # 216 frames: 120 labelled, 96 others
    cfg = load_config([], _labelled(tmp_path, **more, **{"train.max_steps": 2}), command="train-wm")
    fresh = world_model_task(cfg).model.encoder.state_dict()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*did not find the state")  # a fit that found it stays quiet
        train_world_model(cfg)
    run = tmp_path / "run"
    fit = json.loads((run / "setup.json").read_text())
    chance = float(np.sqrt(np.var(_all_states(run), axis=0).sum()))  # RMSE of the mean position
    # Tiny ViT-nano (1 pretraining step), 120 labels: well below predicting the mean position on frames not fit on
    # (measured 6.9 px against 21.0).
    assert fit["readout_rmse_other"] < MISS_RATIO * chance, (fit, chance)
    assert 0.5 < fit["readout_chance_other"] / chance < 1.5  # the same spread, on the 96 other frames only
    assert 0 < fit["readout_median_other"] < fit["readout_p90_other"]  # the error's shape, for the same frames
    first = checkpoints.load_checkpoint(checkpoints.list_checkpoints(run / "checkpoints")[-1])["encoder"]
    assert any(not torch.equal(first[k], v) for k, v in fresh.items() if not k.startswith("readout.backbone."))  # fit
    stamp = (run / "setup.json").stat().st_mtime_ns
    train_world_model(load_config([], _labelled(tmp_path, **more, **{"train.max_steps": 4}), command="train-wm"))
    assert (run / "setup.json").stat().st_mtime_ns == stamp  # a resumed run does not fit again
    last = checkpoints.load_checkpoint(checkpoints.list_checkpoints(run / "checkpoints")[-1])
    assert last["step"] == 4 and "inverse_dynamics" not in last  # no loss terms under a frozen readout
    for key, value in first.items():  # frozen after the fit: bit-identical through training and the resume
        assert torch.equal(value, last["encoder"][key]), key
    second = _labelled(tmp_path, **more, **{"train.max_steps": 1, "wm.init_from": run,
                                            "train.output_dir": tmp_path / "second"})  # fmt: skip
    train_world_model(load_config([], second, command="train-wm"))
    assert not (tmp_path / "second" / "setup.json").exists()  # a second stage keeps the first stage's fit
    again = checkpoints.load_checkpoint(checkpoints.list_checkpoints(tmp_path / "second" / "checkpoints")[-1])
    assert all(torch.equal(v, again["encoder"][k]) for k, v in first.items())
    wm = checkpoints.load_world_model(run)
    assert wm.freeze_encoder and not wm.latent_norm
    z = wm.encode(torch.rand(2, 3, 3, 32, 32))
    assert z.shape == (2, 3, 1, 8) and z.std(dim=-1).min() > 0  # raw latents: not layer-normed to unit std
    assert not torch.allclose(z.std(dim=-1), torch.ones(()), atol=1e-3)


@pytest.mark.filterwarnings("ignore:the readout fit to 60 labelled frames did not find the state")  # a tiny ViT
def test_a_lift_trains_on_the_fit_readouts_cached_outputs_and_resumes_exactly(tmp_path, capsys):
    lift = {"wm.readout": "{type: keypoints, keypoints: 1, fit: {type: labels, labels: 60, steps: 300, "
                          "dynamics_weight: 1.0}, lift: 8}", "wm.collect.episodes": 24}  # fmt: skip
    cfg = load_config([], _labelled(tmp_path, **lift, **{"train.max_steps": 4}), command="train-wm")
    task = world_model_task(cfg)
    fit = task.setup(True)
    assert fit["readout_rmse_other"] > 0 and fit["readout_dynamics_loss"] > 0  # the fit read unlabelled windows
    assert {tuple(f.shape[1:]) for f in task.dataset.features} == {(1, 2)}  # the readout's (x, y) per frame, cached
    item = task.dataset[(0, 0)]
    batch = {"tokens": item["tokens"][None], "actions": item["actions"][None]}
    frames = uint8_to_float(task.dataset.windows[(0, 0)]["x"][None])  # the same window's pixels, as train-wm reads
    task.model.eval()
    torch.testing.assert_close(task.model.encode(batch["tokens"], tokens=True), task.model.encode(frames))

    straight, crashed = tmp_path / "straight", tmp_path / "crashed"  # ckpt_every=2: steps 2 and 4
    train_world_model(load_config([], _labelled(tmp_path, **lift, **{"train.max_steps": 4,
                                                                      "train.output_dir": straight}),
                                  command="train-wm"))  # fmt: skip
    shutil.copytree(straight, crashed)
    (crashed / "checkpoints" / "step_00000004.pt").unlink()  # a crash after step 2: the resume maps the cache again
    capsys.readouterr()
    train_world_model(load_config([], _labelled(tmp_path, **lift, **{"train.max_steps": 4,
                                                                      "train.output_dir": crashed}),
                                  command="train-wm"))  # fmt: skip
    assert "step_00000002.pt at step 2" in capsys.readouterr().out
    a = checkpoints.load_checkpoint(checkpoints.list_checkpoints(straight / "checkpoints")[-1])
    b = checkpoints.load_checkpoint(checkpoints.list_checkpoints(crashed / "checkpoints")[-1])
    assert a["step"] == b["step"] == 4 and "inverse_dynamics" in a  # the lift trains with the loss terms
    for part in ("encoder", "predictor", "inverse_dynamics"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)  # resume is exact through the cached outputs
    first = checkpoints.load_checkpoint(checkpoints.list_checkpoints(straight / "checkpoints")[0])["encoder"]
    moved = {k for k, v in first.items() if not torch.equal(v, a["encoder"][k])}
    assert moved and all(k.startswith("lift.") for k in moved)  # the fit readout stays frozen; the lift trains
    wm = checkpoints.load_world_model(straight)
    assert not wm.freeze_encoder and wm.encoder.embed_dim == 8 and wm.encode(torch.rand(2, 3, 32, 32)).shape == (
        2, 1, 1, 8)  # fmt: skip
    assert model_image_size(wm) == 32  # the planner reads frames at the ViT's input size, through lift and readout


def _all_states(run) -> np.ndarray:
    """Every state `[N * F, 2]` of the run's episodes."""
    windows = open_episodes(root=run / "episodes", window=2, image_size=32)
    return np.concatenate([windows.episode_states(e) for e in range(len(windows.episodes))])


def test_labelled_readout_errors_name_the_key(tmp_path):
    from jepa_world.config.parts import resolve_part
    from jepa_world.factory import check_before_run

    for bad, match in [
        ({"wm.encoder.finetune": True}, "wm.readout.fit.type.*set wm.encoder.finetune=false"),
        ({"wm.readout.fit.steps": 0}, "'wm.readout.fit.steps' = 0: must be >= 1"),
        ({"wm.readout.fit.labels": -1}, "'wm.readout.fit.labels' = -1"),
        (
            {"wm.readout.fit.label": 5},
            "unknown config key 'wm.readout.fit.label'; did you mean 'wm.readout.fit.labels'",
        ),
        ({"wm.readout.fit.type": "label"}, "'wm.readout.fit.type' = 'label': expected one of.*did you mean 'labels'"),
        ({"wm.readout.fit": "{type: none}", "wm.readout.lift": 8}, "wm.readout.lift.*set wm.readout.fit.type"),
        ({"wm.readout.lift": -1}, "wm.readout.lift"),
        ({"wm.readout.fit.dynamics_weight": -1.0}, "wm.readout.fit.dynamics_weight"),
    ]:
        with pytest.raises(ConfigError, match=match):
            check_before_run(load_config([], _labelled(tmp_path, **bad), command="train-wm"), world_model=True)
    with pytest.raises(ConfigError, match="'wm.readout.dim' is set, but wm.readout.type is none"):
        resolve_part("readout", {"type": "none", "dim": 8}, key="wm.readout")
    with pytest.raises(ConfigError, match="'wm.readout_labels' is now wm.readout.fit.type=labels"):
        load_config([], _labelled(tmp_path, **{"wm.readout_labels": 5}), command="train-wm")
    cfg = load_config([], _labelled(tmp_path, **{"wm.encoder.checkpoint": "null"}), command="train-wm")
    with pytest.raises(ConfigError, match=r"'wm.readout.type' = 'mlp': a readout reads a pretrained ViT's tokens; set "
                       "wm.encoder.checkpoint"):  # fmt: skip
        check_before_run(cfg, world_model=True)
    cfg = load_config([], _labelled(tmp_path, **{"wm.readout.fit.labels": 10_000}), command="train-wm")
    with pytest.raises(ValueError, match=r"wm.readout.fit.type=labels: 10000 labelled frames asked for; the 12 train"):
        world_model_task(cfg).setup(True)
    from tests.data.test_lerobot import _build

    stateless = _build(tmp_path / "stateless", lengths=(6, 6, 6), state=False)
    cfg = load_config([], _labelled(tmp_path, **{"wm.episodes": stateless}), command="train-wm")
    with pytest.raises(
        ValueError, match=r"wm.readout.fit.type=labels fits the readout to states; the episodes in .*less"
    ):
        world_model_task(cfg)
