"""Collection loses nothing: a full disk leaves no truncated episode, and the rerun resumes to the same dataset."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from jepa_world.data.episodes import EpisodeDataset, episode_filename
from jepa_world.envs.collect import collect_episodes

SETTINGS = dict(env_name="two_rooms", num_episodes=6, steps=5, image_size=16, seed=3, progress=False)


def _arrays(root):
    return {p.name: dict(np.load(p)) for p in sorted(root.glob("episode_*.npz"))}


def test_a_full_disk_mid_collection_then_a_rerun_resumes_to_the_same_episodes(tmp_path, monkeypatch):
    reference = collect_episodes(output_dir=tmp_path / "ref", **SETTINGS)
    real = np.savez_compressed
    calls = {"n": 0}

    def fills_up(file, **arrays):
        calls["n"] += 1
        if calls["n"] == 4:
            file.write(b"half an episode")  # what a full disk leaves, before the write fails
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(file, **arrays)

    monkeypatch.setattr(np, "savez_compressed", fills_up)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        collect_episodes(output_dir=out, **SETTINGS)
    monkeypatch.undo()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        episode_filename(i) for i in range(3)
    ]
    assert not (out / "metadata.json").exists() and not list(out.glob(".*.tmp"))
    with pytest.raises(ValueError, match="interrupted collection"):  # not trained on as fewer episodes
        EpisodeDataset(root=out, window=2)

    collect_episodes(output_dir=out, **SETTINGS)  # the same command again: resumes
    got, want = _arrays(out), _arrays(reference)
    assert list(got) == list(want)
    for name in want:
        for key in want[name]:
            np.testing.assert_array_equal(got[name][key], want[name][key])
    assert (out / "metadata.json").read_text() == (reference / "metadata.json").read_text()


def test_a_finished_or_different_collection_is_not_overwritten(tmp_path):
    out = collect_episodes(output_dir=tmp_path / "run", **SETTINGS)
    with pytest.raises(ValueError, match="already holds 6 episodes; pass overwrite=True"):
        collect_episodes(output_dir=out, **SETTINGS)
    (out / "metadata.json").unlink()  # an interrupted collection ...
    with pytest.raises(ValueError, match=r"interrupted collection with other settings \(seed\)"):
        collect_episodes(output_dir=out, **{**SETTINGS, "seed": 4})  # ... is resumed only with its own settings
    collect_episodes(output_dir=out, **{**SETTINGS, "seed": 4}, overwrite=True)
    assert len(list(out.glob("episode_*.npz"))) == 6


def test_an_unreadable_episode_left_by_an_old_writer_is_named_and_rewritten(tmp_path):
    out = collect_episodes(output_dir=tmp_path / "run", **SETTINGS)
    good = (out / episode_filename(2)).read_bytes()
    (out / "metadata.json").unlink()
    (out / episode_filename(2)).write_bytes(good[:100])
    with pytest.warns(UserWarning, match=r"rewriting unreadable episode_000002\.npz"):
        collect_episodes(output_dir=out, **SETTINGS)
    assert (out / episode_filename(2)).read_bytes() == good


def test_a_lerobot_collection_holds_the_same_episodes_and_refuses_a_full_folder(tmp_path):
    from jepa_world.data.lerobot import LeRobotEpisodes

    ours = EpisodeDataset(root=collect_episodes(output_dir=tmp_path / "ours", **SETTINGS), window=2)
    out = collect_episodes(output_dir=tmp_path / "lerobot", format="lerobot", fps=5, **SETTINGS)
    lerobot = LeRobotEpisodes(root=out, window=2)
    assert lerobot.fps == 5 and len(lerobot) == len(ours) and lerobot.state_dim == ours.state_dim == 2
    for i in range(0, len(ours), 7):  # the same rollouts: actions and states exact, frames within video rounding
        a, b = ours[i], lerobot[i]
        assert torch.equal(a["actions"], b["actions"]) and torch.equal(a["states"], b["states"])
        assert (a["x"] - b["x"]).abs().max() < 0.1  # ImageNet-normalised: 2 grey levels / 255 / std
    with pytest.raises(ValueError, match="not empty; pass overwrite=True"):
        collect_episodes(output_dir=out, format="lerobot", **SETTINGS)
    collect_episodes(output_dir=out, format="lerobot", overwrite=True, **{**SETTINGS, "num_episodes": 2})
    assert len(LeRobotEpisodes(root=out, window=2).episodes) == 2
