"""Config: defaults, recipes, overrides, and the errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from jepa_world.config import ConfigError, load_config, to_yaml

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").rglob("*.yaml"))


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
        (["wm.readout=points"], r"'wm.readout' = 'points': expected one of mlp, keypoints"),
        (["wm.readout=keypoints"], r"'wm.readout' = 'keypoints': keypoints needs an even wm.readout_dim > 0.*got 0"),
        (["wm.readout=keypoints", "wm.readout_dim=5"], r"even wm.readout_dim > 0 \(2 per keypoint\), got 5"),
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


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["plan.horizonn=3"], r"unknown config key 'plan.horizonn'.*did you mean 'plan.horizon'"),
        (["plan.planner=ccem"], r"'plan.planner' = 'ccem': expected one of cem, mppi"),
        (["plan.reduce=median"], r"'plan.reduce' = 'median': expected one of last, sum, last\+mean, mean"),
        (["plan.elites=500"], r"'plan.elites' = 500: must be in \[1, plan.samples=100\]"),
        (["plan.replan_every=50"], r"'plan.replan_every' = 50: exceeds plan.horizon=40"),
        (["plan.stop_radius=0"], r"'plan.stop_radius' = 0.0: must be > 0, or null"),
        (["plan.samples=abc"], r"bad value for config key 'plan.samples'"),
        (["probe.epoch=3"], r"unknown config key 'probe.epoch'.*did you mean 'probe.epochs'"),
        (["probe.kind=both2"], r"'probe.kind' = 'both2': expected one of linear, attentive, both"),
        (["probe.lrs=[]"], r"'probe.lrs' = \[\]: needs at least one value"),
        (["probe.val_data=x"], r"'probe.val_data' = 'x': val_data / test_data go with a data path"),
        (["probe.data=p", "probe.test_data=t"], r"'probe.test_data' = 't': needs probe.val_data too"),
    ],
)
def test_plan_and_probe_sections_are_checked_like_the_others(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config([], overrides)


def test_plan_and_probe_sections_from_files_overrides_and_flag_values(tmp_path):
    recipe = tmp_path / "plan.yaml"
    recipe.write_text("plan:\n  horizon: 12\n  samples: 30\n  agent: mppi\nprobe:\n  epochs: 7\n")
    cfg = load_config([recipe], ["plan.samples=31"], command="plan", values={"plan.episodes": ("flag --episodes", 3)})
    assert (cfg.plan.horizon, cfg.plan.samples, cfg.plan.episodes, cfg.probe.epochs) == (12, 31, 3, 7)
    assert cfg.plan.agent == "mppi" and f"{cfg.plan.agent}" == "mppi" and "agent: mppi" in to_yaml(cfg)
    # The planner is chosen by plan.agent: the older key alone would be ignored, so it is refused, naming the new one.
    with pytest.raises(ConfigError, match=r"'plan.planner' = 'mppi'.*plan.agent=mppi"):
        load_config([], ["plan.planner=mppi"], command="plan")
    assert load_config([], ["plan.planner=mppi", "plan.agent=mppi"], command="plan").plan.agent == "mppi"
    with pytest.raises(ConfigError, match=r"flag --episodes.*plan.episodes|plan.episodes.*flag --episodes"):
        load_config([], [], command="plan", values={"plan.episodes": ("flag --episodes", "many")})


def test_wm_var_time_weight_builds_the_temporal_variance_term_and_rejects_negatives():
    from jepa_world.factory import build_world_model_terms
    from jepa_world.objectives.losses import TemporalVarianceTerm

    def kinds(overrides):
        cfg = load_config([], overrides, command="train-wm")
        return [type(t) for t in build_world_model_terms(cfg, embed_dim=8, action_dim=2)]

    assert TemporalVarianceTerm not in kinds([])  # off by default: the recipes' numerics are unchanged
    assert kinds(["wm.var_time_weight=5"]).count(TemporalVarianceTerm) == 1
    with pytest.raises(ConfigError, match="wm.var_time_weight"):
        load_config([], ["wm.var_time_weight=-1"], command="train-wm")


def test_config_choices_are_the_modules_own_lists():
    from jepa_world.config.schema import ReadoutHead
    from jepa_world.models.small import READOUT_HEADS

    assert tuple(h.value for h in ReadoutHead) == READOUT_HEADS
