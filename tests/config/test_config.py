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
        (["wm.readout=keypoints"], r"'wm.readout' is a section now: wm.readout.type=keypoints"),
        (["wm.readout_dim=5"], r"'wm.readout_dim' is now wm.readout.dim"),
        (["wm.encoder=pooled_encoder"], r"'wm.encoder' is a section now: set 'wm.encoder.name'"),
        (["wm.smooth_weight=2"], r"'wm.smooth_weight' is now 'wm.terms.smooth'"),
        (["wm.var_time_weight=5"], r"'wm.var_time_weight' was retired"),
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


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ("{type: points}", r"'wm.readout.type' = 'points': expected one of none, attentive, keypoints, mlp"),
        ("{type: keypoints, keypoints: 0}", r"'wm.readout.keypoints' = 0: must be >= 1"),
        ("{type: keypoints, dim: 2}", r"unknown config key 'wm.readout.dim' \(a keypoints readout has"),
        ("{type: mlp, dimm: 2}", r"unknown config key 'wm.readout.dimm'; did you mean 'wm.readout.dim'"),
        ("{type: mlp, dim: two}", r"bad value for config key 'wm.readout.dim'"),
        ("{type: mlp, lift: 8}", r"'wm.readout.lift' = 8: lifts a fit readout"),
    ],
)
def test_a_readout_section_is_checked_by_its_own_config(section, match):
    import jepa_world.models  # noqa: F401  (registers the readouts)
    from jepa_world.config.parts import resolve_part

    cfg = load_config([], [f"wm.readout={section}"], command="train-wm")
    with pytest.raises(ConfigError, match=match):
        resolve_part("readout", cfg.wm.readout, key="wm.readout")


def test_a_readout_section_resolves_to_its_typed_config_with_defaults():
    import jepa_world.models  # noqa: F401
    from jepa_world.config.parts import complete_part, resolve_part
    from jepa_world.models.readout_keypoints import KeypointReadout

    cfg = load_config([], ["wm.readout={type: keypoints}", "wm.readout.keypoints=3"], command="train-wm")
    config = resolve_part("readout", cfg.wm.readout, key="wm.readout")
    assert isinstance(config, KeypointReadout.Config) and config.keypoints == 3 and config.lift == 0
    assert complete_part("readout", {"type": "mlp"}, key="wm.readout")["dim"] == 32
    assert resolve_part("readout", {"type": "none"}, key="wm.readout") is None


def test_a_later_recipe_that_changes_a_sections_type_starts_it_afresh(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("wm:\n  readout: {type: mlp, dim: 32, fit: {type: labels, labels: 9, dynamics_weight: 1.0}}\n")
    second.write_text("wm:\n  readout: {type: keypoints, keypoints: 2}\n")
    assert load_config([first, second], [], command="train-wm").wm.readout == {"type": "keypoints", "keypoints": 2}
    cfg = load_config([first], ["wm.readout.fit.type=actions"], command="train-wm")
    assert cfg.wm.readout.fit == {"type": "actions"} and cfg.wm.readout.dim == 32  # only the fit started afresh
    same = load_config([first], ["wm.readout.type=mlp", "wm.readout.dim=8"], command="train-wm")
    assert same.wm.readout.dim == 8 and same.wm.readout.fit.labels == 9  # the same type merges as usual
