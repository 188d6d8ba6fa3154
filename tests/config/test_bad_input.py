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
