"""Bad input to the config doors (issue 41): each case gets a clear error naming the value or file, no traceback."""

from __future__ import annotations

import pytest

from jepa_world.cli import main
from jepa_world.config.load import load_config
from jepa_world.config.schema import ConfigError


@pytest.mark.parametrize(("text", "kind"), [("- train\n- data\n", "list"), ("5\n", "int"), ("hello\n", "str")])
def test_a_yaml_file_whose_top_level_is_not_a_mapping_is_named(tmp_path, text, kind):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"recipe.yaml: expected a mapping of sections .*got a {kind}"):
        load_config([path])


def test_a_list_config_file_gets_one_line_from_the_cli(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text("- train\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["pretrain", "--config", str(path), f"train.output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "recipe.yaml: expected a mapping of sections" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_empty_config_file_still_loads(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config([path]).train.max_steps == load_config().train.max_steps


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"img_size": -32}, r"img_size=-32: must be an integer >= 1"),
        ({"img_size": (32, 0)}, r"img_size=\(32, 0\): must be an integer >= 1"),
        ({"patch_size": 0}, r"patch_size=0: must be an integer >= 1"),
        ({"img_size": 30, "patch_size": 16}, r"patch_size=16 does not divide img_size=30"),
        ({"num_frames": 0}, r"num_frames=0: must be an integer >= 1"),
        ({"num_frames": 4, "tubelet_size": 0}, r"tubelet_size=0: must be an integer >= 1"),
        ({"num_frames": 3, "tubelet_size": 2}, r"num_frames=3 must be 1 \(image\) or a multiple of tubelet_size=2"),
        ({"embed_dim": 0}, r"embed_dim=0: must be an integer >= 1"),
        ({"depth": -1}, r"depth=-1: must be an integer >= 1"),
        ({"num_heads": 0}, r"num_heads=0: must be an integer >= 1"),
        ({"embed_dim": 30, "num_heads": 4}, r"embed_dim=30 is not divisible by num_heads=4"),
        ({"mlp_ratio": float("nan")}, r"mlp_ratio=nan: must be a finite number > 0"),
    ],
)
def test_create_model_names_the_bad_encoder_argument(kwargs, match):
    from jepa_world import create_model

    with pytest.raises(ValueError, match=match):
        create_model("vit_nano", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grid_size": (4, 0)}, r"grid_size=\(4, 0\): expected 2 or 3 integers >= 1"),
        ({"embed_dim": 0}, r"embed_dim=0: must be an integer >= 1"),
        ({"predictor_embed_dim": -8}, r"predictor_embed_dim=-8: must be an integer >= 1"),
        ({"depth": 0}, r"depth=0: must be an integer >= 1"),
        ({"num_heads": 0}, r"num_heads=0: must be an integer >= 1"),
    ],
)
def test_create_model_names_the_bad_predictor_argument(kwargs, match):
    from jepa_world import create_model

    with pytest.raises(ValueError, match=match):
        create_model("predictor_nano", **{"grid_size": (4, 4), "embed_dim": 64, **kwargs})


def test_valid_odd_shapes_still_build():
    from jepa_world import create_model

    assert create_model("vit_nano", img_size=(32, 64), patch_size=16).grid_size == (2, 4)
    assert create_model("predictor_nano", grid_size=(2, 4), embed_dim=64).grid_size == (2, 4)


@pytest.mark.parametrize(
    ("command", "override", "key"),
    [
        ("train-policy", "policy.entropy_weight=nan", "policy.entropy_weight"),
        ("train-policy", "policy.discount=.inf", "policy.discount"),
        ("pretrain", "optim.lr=nan", "optim.lr"),
        ("pretrain", "optim.betas=[0.9,.nan]", "optim.betas"),
        ("plan", "plan.temperature=-.inf", "plan.temperature"),
        ("probe", "probe.lrs=[0.001,.inf]", "probe.lrs"),
    ],
)
def test_a_non_finite_setting_is_refused_at_load_naming_the_key(command, override, key):
    with pytest.raises(ConfigError, match=rf"config key '{key}' = .*(finite|must be|expected)"):
        load_config(overrides=[override], command=command)


def test_a_negative_entropy_weight_is_refused():
    with pytest.raises(ConfigError, match=r"'policy.entropy_weight' = -0.1: must be >= 0"):
        load_config(overrides=["policy.entropy_weight=-0.1"], command="train-policy")


def test_train_policy_with_a_nan_setting_says_so_before_touching_the_folder(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train-policy", "--checkpoint", str(tmp_path / "wm"), "policy.entropy_weight=nan",
                 f"train.output_dir={run}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert "'policy.entropy_weight' = nan: must be a finite number" in err, err
    assert not run.exists()


def _folder_state(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("source", [["data.source=episodes"], []])
def test_episodes_too_short_for_the_clip_name_the_keys_the_user_set(tmp_path, capsys, source):
    import numpy as np

    from jepa_world.data.episodes import episode_filename, write_episode
    from tests.conftest import tiny_overrides

    root = tmp_path / "ep"
    for i in range(2):  # 17 frames each; 8 frames 4 steps apart span (8 - 1) * 4 + 1 = 29
        write_episode(root / episode_filename(i), frames=np.zeros((17, 8, 8, 3), np.uint8), actions=np.zeros((16, 2)))
    before = _folder_state(root)
    args = tiny_overrides(tmp_path, **{"data.num_frames": 8, "data.frame_step": 4, "data.episodes": str(root)})
    assert main(["pretrain", *source, *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "frameskip" not in err, err
    assert "has the 29 frames that data.num_frames=8 frames taken data.frame_step=4 steps apart need" in err, err
    assert "the longest has 17" in err, err
    assert _folder_state(root) == before  # the episodes are untouched; the run folder holds no checkpoint or config
    assert not [p for p in (tmp_path / "run").rglob("*") if p.name != ".lock"]
