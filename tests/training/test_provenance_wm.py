"""A world model is tied by content to the weights it started from (issue 41): a train-wm run records the digest of
its pretrained encoder (`wm.encoder.checkpoint`, which its readout is fit on) and of its first stage (`wm.init_from`);
resuming it after either was retrained into the same folder (another seed) is refused naming both, and changes
nothing in the run folder."""

from __future__ import annotations

import shutil
import warnings

import pytest

pytest.importorskip("gymnasium")

from jepa_world.checkpoints import list_checkpoints, load_checkpoint, load_encoder
from jepa_world.checkpoints.digest import SOURCES_KEY, weights_digest
from jepa_world.checkpoints.world_model import load_world_model, world_model_components
from jepa_world.cli import main
from jepa_world.config import load_config
from jepa_world.envs.collect import collect_episodes
from jepa_world.policies.provenance import world_model_digest
from jepa_world.training import pretrain, train_world_model
from tests.conftest import tiny_overrides

QUIET = ["train.progress=false", "train.tensorboard=false"]
FIT = "{type: mlp, dim: 8, fit: {type: labels, labels: 20, steps: 5}}"  # a readout fit on the encoder's tokens


def _pretrain(out, seed: int):
    over = tiny_overrides(out.parent, **{"train.output_dir": out, "data.num_frames": 1, "train.max_steps": 1,
                                         "train.ckpt_every": 1, "seed": seed})  # fmt: skip
    pretrain(load_config([], over))
    return out


def _wm_args(out, episodes, steps: int, seed: int = 0, **extra) -> list[str]:
    over = {"train.output_dir": out, "train.max_steps": steps, "train.batch_size": 8, "train.log_every": 1,
            "train.ckpt_every": 2, "wm.episodes": episodes, "wm.window": 4, "data.image_size": 32, "seed": seed,
            **extra}  # fmt: skip
    return [f"{k}={v}" for k, v in over.items()] + QUIET


def _train_wm(args):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*did not find the state")  # 5 fit steps on a 1-step ViT
        return train_world_model(load_config([], args, command="train-wm"))


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _sources(run):
    return load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["meta"][SOURCES_KEY]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Pretraining run `pre` (seed 0); world model `wm` on it with a fit readout; second stage `second` from `wm`."""
    tmp = tmp_path_factory.mktemp("wm_provenance")
    episodes = collect_episodes(env_name="two_rooms", num_episodes=8, steps=6, output_dir=tmp / "episodes", seed=0,
                                image_size=32, progress=False)  # fmt: skip
    pre = _pretrain(tmp / "pre", seed=0)
    _train_wm(_wm_args(tmp / "wm", episodes, 2, **{"wm.encoder.checkpoint": pre, "wm.readout": FIT}))
    _train_wm(_wm_args(tmp / "second", episodes, 2, **{"wm.encoder.checkpoint": pre, "wm.readout": FIT,
                                                        "wm.init_from": tmp / "wm"}))  # fmt: skip
    return tmp, episodes, pre


def test_a_world_model_records_the_digests_of_the_weights_it_started_from(runs):
    tmp, _, pre = runs
    encoder = weights_digest(load_encoder(pre))
    recorded = _sources(tmp / "wm")
    assert set(recorded) == {"wm.encoder.checkpoint"}
    assert recorded["wm.encoder.checkpoint"]["digest"] == encoder and len(encoder) == 64
    assert recorded["wm.encoder.checkpoint"]["path"] == str(list_checkpoints(pre / "checkpoints")[-1])
    second = _sources(tmp / "second")
    first_stage = load_world_model(tmp / "wm")
    assert second["wm.init_from"]["digest"] == weights_digest(world_model_components(first_stage))
    assert second["wm.init_from"]["step"] == 2 and second["wm.encoder.checkpoint"]["digest"] == encoder
    assert weights_digest(first_stage) == world_model_digest(first_stage)  # the policies' digest: the same function


def test_resuming_in_the_same_weights_trains_on(runs, tmp_path):
    tmp, episodes, pre = runs
    run = tmp_path / "wm"
    shutil.copytree(tmp / "wm", run)
    assert _train_wm(_wm_args(run, episodes, 4, **{"wm.encoder.checkpoint": pre, "wm.readout": FIT}))["step"] == 4


def test_resuming_after_the_encoder_or_first_stage_was_retrained_is_refused_naming_both(runs, capsys):
    tmp, episodes, pre = runs
    old_encoder = _sources(tmp / "wm")["wm.encoder.checkpoint"]["digest"]
    old_stage = _sources(tmp / "second")["wm.init_from"]["digest"]
    shutil.rmtree(pre)
    _pretrain(pre, seed=1)  # retrained into the same folder: same path, same step, other weights
    new_encoder = weights_digest(load_encoder(pre))
    assert new_encoder != old_encoder

    before = _files(tmp / "wm")
    args = ["train-wm", *_wm_args(tmp / "wm", episodes, 4, **{"wm.encoder.checkpoint": pre, "wm.readout": FIT})]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "retrained or replaced" in err and "wm.encoder.checkpoint was " in err, err
    assert f"digest {old_encoder[:12]}" in err and f"digest {new_encoder[:12]}" in err, err
    assert str(list_checkpoints(pre / "checkpoints")[-1]) in err, err
    assert _files(tmp / "wm") == before  # byte-identical, .lock included

    shutil.rmtree(tmp / "wm")  # the first stage retrained too (on the new encoder, another seed)
    _train_wm(_wm_args(tmp / "wm", episodes, 2, seed=1, **{"wm.encoder.checkpoint": pre, "wm.readout": FIT}))
    before = _files(tmp / "second")
    args = ["train-wm", *_wm_args(tmp / "second", episodes, 4, **{"wm.encoder.checkpoint": pre, "wm.readout": FIT,
                                                                   "wm.init_from": tmp / "wm"})]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "wm.init_from was " in err and f"digest {old_stage[:12]}" in err, err
    assert f"{list_checkpoints(tmp / 'wm' / 'checkpoints')[-1]} (step 2, digest" in err, err
    assert _files(tmp / "second") == before


def test_resuming_a_run_written_before_sources_were_recorded_says_it_cannot_check(tmp_path):
    import warnings as _warnings

    import torch

    from jepa_world import checkpoints
    from jepa_world.config import load_config
    from jepa_world.training import train_world_model
    from tests.training.test_world_model_task import _over, _pretrained

    over = _over(tmp_path, **{"wm.encoder.checkpoint": _pretrained(tmp_path), "train.max_steps": 2})
    train_world_model(load_config([], over, command="train-wm"))
    last = checkpoints.list_checkpoints(tmp_path / "run" / "checkpoints")[-1]
    state = torch.load(last, weights_only=True)
    state["meta"].pop("sources")  # as a run written before 2026-12-07 saved it
    torch.save(state, last)
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        train_world_model(load_config([], [*over, "train.max_steps=4"], command="train-wm"))
    assert any("cannot check that they are the ones it was trained on" in str(w.message) for w in caught)
