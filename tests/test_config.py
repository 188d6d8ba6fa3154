"""Config: defaults, recipes, overrides, and the errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from jepa_world.config import ConfigError, load_config, to_yaml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))


def test_defaults_and_overrides():
    cfg = load_config(
        [],
        [
            "train.max_steps=7",
            "seed=3",
            "model.name=vit_nano",
            "masks.num_blocks=[4]",
            "masks.spatial_scale=[0.2]",
            "masks.temporal_scale=[1.0]",
        ],
    )
    assert cfg.train.max_steps == 7 and cfg.seed == 3 and cfg.model.name == "vit_nano"
    assert list(cfg.masks.num_blocks) == [4]
    assert "max_steps: 7" in to_yaml(cfg)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_recipe_loads(path):
    cfg = load_config([path])
    assert cfg.train.max_steps >= 1


def test_recipe_then_override_precedence(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  max_steps: 11\n  batch_size: 8\n")
    cfg = load_config([recipe], ["train.max_steps=12"])
    assert cfg.train.max_steps == 12 and cfg.train.batch_size == 8


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["train.max_step=3"], r"unknown config key 'train.max_step'.*did you mean 'train.max_steps'"),
        (["trian.max_steps=3"], r"unknown config key 'trian"),
        (["train.max_steps=abc"], r"bad value for config key 'train.max_steps'"),
        (["train.batch_size=1.5"], r"train.batch_size"),
        (["train.max_steps"], r"not of the form key=value"),
        (["train.batch_size=-2"], r"'train.batch_size' = -2: must be >= 1"),
        (["data.image_size=60"], r"'model.patch_size' = 8: does not divide data.image_size=60"),
        (["data.num_frames=5"], r"model.tubelet_size.*num_frames=5"),
        (["loss=l3"], r"'loss' = 'l3': expected one of"),
        (["train.grad_accum=3"], r"train.grad_accum.*batch_size=16"),
        (["optim.ema=[0.9,1.2]"], r"optim.ema"),
        (["cov_weight=-1"], r"'cov_weight' = -1.0: must be >= 0"),
        (["train.max_minutes=-1"], r"'train.max_minutes' = -1.0: must be >= 0"),
    ],
)
def test_bad_overrides_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config([], overrides)


def test_unknown_key_in_file_names_file(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("model:\n  nmae: vit_small\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'model.nmae' in .*bad.yaml.*did you mean 'model.name'"):
        load_config([recipe])


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        load_config(["nope.yaml"])
