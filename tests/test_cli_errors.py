"""Every bad input gets one clear line: `jepa-world <command>: error: <message naming the value>`, exit 2, no traceback.

The corpus is built by the tests (no committed binaries). Each case names the command, its arguments and what the
message must say.
"""

from __future__ import annotations

import os

import pytest

from jepa_world.cli import main
from tests.conftest import tiny_overrides


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "tab.yaml").write_text("train:\n\tmax_steps: 3\n")
    (tmp_path / "dup.yaml").write_text("train:\n  max_steps: 3\n  max_steps: 4\n")
    (tmp_path / "random.pt").write_bytes(os.urandom(4096))
    (tmp_path / "empty").mkdir()
    return tmp_path


CASES = [
    ("pretrain", ["model.name=vit_tiy"], r"'model.name' = 'vit_tiy': not a registered model; did you mean 'vit_tiny'"),
    ("pretrain", ["predictor.name=predictor_nan"], r"did you mean 'predictor_nano'"),
    ("pretrain", ["model.depth=-2"], r"'model.depth' = -2: must be >= 1"),
    ("pretrain", ["data.index="], r"'data.index' = '': is empty \(an unset shell variable\?\)"),
    ("pretrain", ["train.resume=atuo"], r"'train.resume' = 'atuo': expected auto, never .*did you mean 'auto'"),
    ("pretrain", ["--config", "{tmp}/tab.yaml"], r"tab.yaml is not valid YAML: .*line 2.*tabs"),
    ("pretrain", ["--config", "{tmp}/dup.yaml"], r"dup.yaml is not valid YAML: found duplicate key max_steps"),
    ("pretrain", ["optim.betas=[0.9,"], r"override 'optim.betas=\[0.9,': the value is not valid YAML"),
    ("pretrain", ["optim.betas=[0.9,1.5]"], r"'optim.betas' = \[0.9, 1.5\]: expected \[beta1, beta2\] in \[0, 1\)"),
    ("pretrain", ["data.index={tmp}/empty"], r"no images found under .*empty"),
    ("pretrain", ["data.index={tmp}/nothing"], r"data.index=.*nothing.* does not exist"),
    ("pretrain", ["train.output_dir=/proc/jepa_world_run"], r"train.output_dir='/proc/jepa_world_run' is not writable"),
    ("pretrain", ["optim.lr=1e30", "optim.start_lr=1e30"], r"non-finite loss or gradient at step"),
    ("pretrain", ["data.source=index"], r"data.source=index needs data.index=PATH"),
    ("train-wm", ["wm.episodes="], r"'wm.episodes' = '': is empty"),
    ("train-wm", ["wm.episodes={tmp}/nothing"], r"wm.episodes=.*nothing.* does not exist"),
    ("export", ["{tmp}/random.pt", "--output", "{tmp}/out"], r"not a readable checkpoint \(corrupt, truncated, or not"),
    ("export", ["{tmp}/missing.pt", "--output", "{tmp}/out"], r"checkpoint not found: .*missing.pt"),
    ("plan", ["--checkpoint", "{tmp}/missing"], r"checkpoint not found: .*missing"),
    (
        "plan",
        ["--checkpoint", "{tmp}/missing", "plan.output={tmp}/tab.yaml/p"],
        r"plan.output .*tab.yaml/p: .*tab.yaml is a file, not a folder",
    ),
    ("export", ["{tmp}/random.pt", "--output", "{tmp}/tab.yaml/out"], r"--output .*tab.yaml is a file, not a folder"),
    ("plan", ["--checkpoint", "{tmp}/random.pt", "plan.env=two_room"], r"expected one of two_rooms, point_arena"),
    ("probe", ["--checkpoint", "random", "probe.kind=xx"], r"'probe.kind' = 'xx': expected one of linear"),
    ("index", ["{tmp}/empty", "--output", "{tmp}/index.csv"], r"no videos found under"),
    ("collect", ["--env", "nope", "--episodes", "1", "--output", "{tmp}/ep"], r"nope"),
]


@pytest.mark.parametrize(("command", "args", "match"), CASES, ids=[f"{c[0]}:{' '.join(c[1])[:40]}" for c in CASES])
def test_bad_input_gets_one_clear_line(corpus, capsys, command, args, match):
    import re

    args = [a.replace("{tmp}", str(corpus)) for a in args]
    extra = tiny_overrides(corpus) if command in ("pretrain", "train-wm") else []
    extra = [e for e in extra if not any(a.startswith(e.split("=")[0] + "=") for a in args)]
    if command == "train-wm":
        extra = [e for e in extra if e.startswith("train.")]
    code = main([command, *args, *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith(f"jepa-world {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(match, lines[0]), lines[0]


def test_debug_mode_reraises_for_the_traceback(corpus, monkeypatch):
    monkeypatch.setenv("JEPA_WORLD_DEBUG", "1")
    with pytest.raises(RuntimeError, match="not a readable checkpoint"):
        main(["export", str(corpus / "random.pt"), "--output", str(corpus / "out")])
