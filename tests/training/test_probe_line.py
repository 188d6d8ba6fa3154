"""The state probe that ends a train-wm run on episodes with states: how well a linear map reads each state dim."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from jepa_world.config import load_config
from jepa_world.data.episode_formats import open_episodes
from jepa_world.data.episodes import episode_filename, read_metadata, write_episode, write_metadata
from jepa_world.envs.collect import collect_episodes
from jepa_world.training import train_world_model
from jepa_world.training.latent_probe import linear_probe_r2, probe_frames, state_names

LINE = re.compile(r"probe \(linear, ([^)]*)\): R\^2 per state dim \[([^\]]*)\]")


def _over(run, episodes, **extra) -> list[str]:
    base = {"train.output_dir": run, "train.max_steps": 3, "train.batch_size": 8, "train.log_every": 3,
            "train.ckpt_every": 3, "train.progress": False, "train.tensorboard": False, "wm.episodes": episodes,
            "wm.window": 3, "data.image_size": 32}  # fmt: skip
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _cells(text: str) -> tuple[str, dict[str, float]]:
    lines = [m for m in LINE.finditer(text)]
    assert len(lines) == 1, text[-3000:]
    where, cells = lines[0].groups()
    return where, {name: float(value) for name, value in (c.rsplit(" ", 1) for c in cells.split(", "))}


@pytest.fixture(scope="module")
def two_rooms(tmp_path_factory):
    root = tmp_path_factory.mktemp("eps") / "two_rooms"
    collect_episodes(env_name="two_rooms", num_episodes=10, steps=12, output_dir=root, seed=1, image_size=32,
                     progress=False)  # fmt: skip
    return root


def test_ridge_probe_reads_a_linear_state_and_not_noise():
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(600, 24))
    held = latents @ rng.normal(size=(24, 2)) + 0.05 * rng.normal(size=(600, 2))  # read linearly from the latent
    noise = rng.normal(size=(600, 1))  # independent of the latent
    r2 = linear_probe_r2(latents, np.concatenate([held, noise], axis=1))
    assert r2.shape == (3,)
    assert r2[0] > 0.95 and r2[1] > 0.95, r2
    assert r2[2] < 0.1, r2
    constant = linear_probe_r2(latents, np.ones((600, 1)))
    assert np.isnan(constant[0])


def test_frames_are_drawn_from_the_named_episodes_only(two_rooms):
    windows = open_episodes(root=two_rooms, window=1)
    picks = probe_frames(windows, [7, 8, 9], max_frames=20)
    assert {e for e, _ in picks} <= {7, 8, 9}
    assert sum(len(rows) for _, rows in picks) == 20
    assert all(rows.max() < windows.episodes[e].num_frames for e, rows in picks)
    again = probe_frames(windows, [7, 8, 9], max_frames=20)  # a fixed seed: the same frames every run
    assert all(e == f and np.array_equal(r, s) for (e, r), (f, s) in zip(picks, again, strict=True))


def test_train_wm_ends_with_the_probe_line_on_held_out_frames(two_rooms, tmp_path, capsys):
    run = tmp_path / "run"
    train_world_model(load_config([], _over(run, two_rooms, **{"wm.val_episodes": 2}), command="train-wm"))
    where, r2 = _cells(capsys.readouterr().out)
    assert where == "held-out frames"
    assert list(r2) == ["s0", "s1"]  # the agent's position; Two-Rooms' metadata names no state dims
    record = json.loads((run / "probe.json").read_text())
    assert record["source"] == where and record["frames"] == 2 * 13  # the 2 held-out episodes' frames, all of them
    assert set(record["episodes"]) == {8, 9}
    assert {k: round(v, 2) for k, v in record["r2"].items()} == r2


def test_a_state_dim_the_frames_do_not_show_gets_a_warning(two_rooms, tmp_path, capsys):
    # The same episodes with a third state dim drawn independently of the frames: no latent can hold it.
    root, rng = tmp_path / "noisy", np.random.default_rng(5)
    for i in range(10):
        with np.load(two_rooms / episode_filename(i)) as data:
            states = np.concatenate([data["states"], rng.normal(size=(len(data["states"]), 1))], axis=1)
            write_episode(root / episode_filename(i), frames=data["frames"], actions=data["actions"], states=states)
    meta = read_metadata(two_rooms)
    write_metadata(root, {**meta, "state_dim": 3, "state_names": ["agent_x", "agent_y", "coin"]})
    assert state_names(open_episodes(root=root, window=1), root, 3) == ["agent_x", "agent_y", "coin"]
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="the latent hardly holds .*coin"):
        summary = train_world_model(load_config([], _over(run, root), command="train-wm"))
    out = capsys.readouterr().out
    where, r2 = _cells(out)
    assert where == "frames of the last 20% of the training episodes"
    assert list(r2) == ["agent_x", "agent_y", "coin"]
    assert r2["coin"] < 0.5
    assert "warning: the latent hardly holds" in out and "planning toward goals that differ in" in out
    assert summary["health"] == ""  # no held-out episodes: the health summary itself has nothing to say
    assert json.loads((run / "probe.json").read_text())["r2"]["coin"] < 0.5
