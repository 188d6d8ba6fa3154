"""Recorded episodes as a pretraining source: clip shapes, the frames a clip holds, determinism, resume, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from jepa_world.config import load_config
from jepa_world.data.build import build_dataset
from jepa_world.data.episode_clips import EpisodeClips
from jepa_world.data.episodes import episode_filename, write_episode
from jepa_world.data.transforms import denormalize
from tests.conftest import tiny_overrides


def _episodes(root, n: int = 3, steps: int = 9, size: int = 16, seed: int = 0):
    """Episodes whose frame t is a flat grey of value 20 * t + episode: a clip's pixels name its frames."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        frames = np.stack([np.full((size, size, 3), 20 * t + i, np.uint8) for t in range(steps + 1)])
        write_episode(root / episode_filename(i), frames=frames, actions=rng.normal(size=(steps, 2)))
    return root


def test_clips_hold_the_frames_of_their_window(tmp_path):
    root = _episodes(tmp_path / "ep")
    ds = EpisodeClips(root=root, num_frames=4, frame_step=2, image_size=16, train=False)
    assert len(ds) == 3 * (10 - 7 + 1)  # span (4 - 1) * 2 + 1 = 7 frames: starts 0..3 in each 10-frame episode
    item = ds[5]  # episode 1, start 1
    assert item["x"].shape == (3, 4, 16, 16) and item["skipped"] == 0
    grey = (denormalize(item["x"]) * 255).round()[0, :, 0, 0]  # channel 0, one pixel per frame
    assert grey.tolist() == [20 * t + 1 for t in (1, 3, 5, 7)]


def test_frames_for_an_image_model_and_seeded_augmentation(tmp_path):
    root = _episodes(tmp_path / "ep")
    ds = EpisodeClips(root=root, num_frames=1, image_size=8)
    assert len(ds) == 30 and ds[0]["x"].shape == (3, 8, 8)
    assert torch.equal(ds[(4, 7)]["x"], ds[(4, 7)]["x"])  # a key is a pure function of (index, aug_seed)
    clips = EpisodeClips(root=root, num_frames=3, image_size=8)
    a, b = clips[(2, 1)]["x"], clips[(2, 2)]["x"]
    assert a.shape == b.shape == (3, 3, 8, 8)


def test_build_dataset_reads_episodes_and_refuses_bad_ones(tmp_path):
    root = _episodes(tmp_path / "ep")
    cfg = load_config([], tiny_overrides(tmp_path, **{"data.episodes": str(root), "data.frame_step": 1}))
    ds = build_dataset(cfg.data, seed=0)
    assert isinstance(ds, EpisodeClips) and ds[0]["x"].shape == (3, 4, 32, 32)
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match=r"holds no episode_\*\.npz files"):
        build_dataset(
            load_config([], tiny_overrides(tmp_path, **{"data.episodes": str(tmp_path / "none")})).data, seed=0
        )
    mixed = _episodes(tmp_path / "mixed", n=1)
    write_episode(mixed / episode_filename(1), frames=np.zeros((10, 12, 12, 3), np.uint8), actions=np.zeros((9, 2)))
    with pytest.raises(ValueError, match="12x12|12, 12|frame size|differ"):
        EpisodeClips(root=mixed, num_frames=2, image_size=16)
    with pytest.raises(ValueError, match="data.source=episodes needs data.episodes"):
        build_dataset(load_config([], tiny_overrides(tmp_path, **{"data.source": "episodes"})).data, seed=0)


def test_pretraining_on_episodes_resumes_exactly(tmp_path):
    from jepa_world.checkpoints import list_checkpoints, load_checkpoint
    from jepa_world.training import pretrain

    root = _episodes(tmp_path / "ep", n=4)
    over = {"data.episodes": str(root), "data.frame_step": 1, "train.max_steps": 4, "train.ckpt_every": 2}
    pretrain(load_config([], tiny_overrides(tmp_path / "a", **over)))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "run" / "checkpoints" / "step_00000004.pt").unlink()  # the crash: steps 3-4 are lost
    pretrain(load_config([], tiny_overrides(tmp_path / "b", **over)))  # resumes at step 2
    a, b = (load_checkpoint(list_checkpoints(tmp_path / r / "run" / "checkpoints")[-1]) for r in "ab")
    for key, value in a["target_encoder"].items():
        assert torch.equal(value, b["target_encoder"][key]), key
