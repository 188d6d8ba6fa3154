"""One collection per folder (issue 41): a second `collect` into a folder another one is writing is refused, naming
--output; a collection killed mid-way leaves whole episodes only (no metadata, no partial file) and no lock, and the
rerun with --overwrite gives the folder a clean run gives; a refused collect changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gymnasium")

from jepa_world.cli import main
from jepa_world.data.episodes import EpisodeDataset, episode_filename
from jepa_world.envs.collect import collect_episodes
from jepa_world.envs.policies import make_policy

ARGS = ["--episodes", "5", "--steps", "4", "--image-size", "16", "--seed", "2"]


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _arrays(root):
    return {p.name: dict(np.load(p)) for p in sorted(root.glob("episode_*.npz"))}


def _same_episodes(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name, arrays in want.items():
        assert sorted(got[name]) == sorted(arrays), name
        for key, value in arrays.items():
            np.testing.assert_array_equal(got[name][key], value)


def _collect(out, policy):
    policy.reset = policy.walk.reset  # the behaviour policy keeps a heading: reset every episode, as collect does
    return collect_episodes(env_name="two_rooms", num_episodes=5, steps=4, output_dir=out, policy=policy, seed=2,
                            image_size=16, progress=False)  # fmt: skip


def _plain(walk):
    def policy(state, goal, rng):
        return walk(state, goal, rng)

    policy.walk = walk
    return policy


def test_a_second_collect_into_a_folder_being_written_is_refused(tmp_path, capsys):
    out = tmp_path / "eps"
    walk = make_policy("von_mises")
    answers = []

    def policy(state, goal, rng):  # the first collection, mid-episode: the same folder asked for again
        if not answers:
            answers.append(main(["collect", "--output", str(out), *ARGS]))
        return walk(state, goal, rng)

    policy.walk = walk
    _collect(out, policy)
    err = capsys.readouterr().err
    assert answers == [2], err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"jepa-world collect: error: output_dir={str(out)!r} (--output on the command line) is in use" in err, err
    reference = _collect(tmp_path / "ref", _plain(walk))
    _same_episodes(_arrays(out), _arrays(reference))  # the first one ran as if alone
    assert json.loads((out / "metadata.json").read_text())["episode_lengths"] == [4] * 5
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())  # no lock file


def test_a_killed_collect_leaves_whole_episodes_and_reruns_with_overwrite_to_a_clean_folder(tmp_path, capsys):
    out, calls = tmp_path / "eps", {"n": 0}
    walk = make_policy("von_mises")

    def dies_in_episode_3(state, goal, rng):
        calls["n"] += 1
        if calls["n"] == 3 * 4 + 2:  # the second step of episode 3 (4 steps an episode)
            raise KeyboardInterrupt  # what Ctrl-C (or a crash) raises mid-collection
        return walk(state, goal, rng)

    dies_in_episode_3.walk = walk
    with pytest.raises(KeyboardInterrupt):
        _collect(out, dies_in_episode_3)
    names = sorted(p.name for p in out.iterdir())
    assert names == [".collect.json", *(episode_filename(i) for i in range(3))], names  # no metadata, temp or lock
    clean = _collect(tmp_path / "clean", _plain(walk))
    whole = _arrays(out)
    _same_episodes(whole, {k: v for k, v in _arrays(clean).items() if k in whole})  # whole episodes, as written
    with pytest.raises(ValueError, match=r"interrupted collection \(3 episodes, no metadata.json\): rerun"):
        EpisodeDataset(root=out, window=2)  # train-wm / pretrain refuse it instead of training on 3 of the episodes

    before = _files(out)
    assert main(["collect", "--output", str(out), *ARGS]) == 2  # other settings (a named policy): refused ...
    err = capsys.readouterr().err
    assert "interrupted collection with other settings" in err and "--overwrite" in err, err
    assert _files(out) == before  # ... and nothing changed
    assert main(["collect", "--output", str(out), *ARGS, "--overwrite"]) == 0
    assert main(["collect", "--output", str(tmp_path / "fresh"), *ARGS]) == 0
    assert _files(out) == _files(tmp_path / "fresh")  # byte for byte what a clean run writes


def test_a_refused_collect_changes_nothing_and_creates_no_folder(tmp_path, capsys):
    out = tmp_path / "eps"
    assert main(["collect", "--output", str(out), *ARGS]) == 0
    before = _files(out)
    assert main(["collect", "--output", str(out), *ARGS]) == 2
    err = capsys.readouterr().err
    assert "already holds 5 episodes" in err and "--overwrite" in err, err
    assert _files(out) == before
    with pytest.raises(ValueError, match="unknown policy"):
        collect_episodes(env_name="two_rooms", num_episodes=2, steps=2, output_dir=tmp_path / "new", policy="nope")
    assert not (tmp_path / "new").exists()
