"""The training loop: checkpoints, exact resumption, accumulation gating, logs, and the errors users hit first."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jepa_world import checkpoints
from jepa_world.config import load_config
from jepa_world.objectives.ema import EMA
from jepa_world.training import check_batch_split, pretrain
from tests.conftest import ROOT, tiny_overrides


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(run: Path) -> dict:
    return checkpoints.load_checkpoint(checkpoints.list_checkpoints(run / "checkpoints")[-1])


def test_run_writes_config_checkpoint_and_logs(tmp_path):
    cfg = load_config([], tiny_overrides(tmp_path))
    summary = pretrain(cfg)
    run = tmp_path / "run"
    assert (run / "config.yaml").read_text().count("max_steps: 4") == 1
    ckpts = checkpoints.list_checkpoints(run / "checkpoints")
    assert [p.name for p in ckpts] == ["step_00000002.pt", "step_00000004.pt"]
    state = checkpoints.load_checkpoint(ckpts[-1])
    assert {"encoder", "target_encoder", "predictor", "opt", "step", "rng", "config"} <= set(state)
    assert state["step"] == 4
    records = _metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and "target_std" in r and "lr" in r for r in records)
    assert "target_eff_rank" in records[-1]
    assert summary["step"] == 4


@pytest.mark.parametrize(
    "option",
    [
        {},
        {"predictor.single_pass": True},
        {"optim.fused": True},
        {"train.compile": True},  # about a minute of compiling on 2 cores; the resumed half reuses it
    ],
    ids=["default", "single_pass", "fused_adamw", "compile"],
)
def test_resume_is_exact(tmp_path, option):
    """A run that dies after its step-3 checkpoint and resumes ends bit-exact where the uninterrupted run ends."""
    over = {"train.max_steps": 6, "train.ckpt_every": 3, **option}
    pretrain(load_config([], tiny_overrides(tmp_path / "a", **over)))
    straight, crashed = tmp_path / "a" / "run", tmp_path / "b" / "run"
    shutil.copytree(straight, crashed)
    # The crash: everything after step 3 is lost.
    (crashed / "checkpoints" / "step_00000006.pt").unlink()
    lines = (crashed / "metrics.jsonl").read_text().splitlines()[:3]
    (crashed / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    pretrain(load_config([], tiny_overrides(tmp_path / "b", **over)))
    a, b = _weights(straight), _weights(crashed)
    assert b["step"] == 6
    for part in ("encoder", "target_encoder", "predictor"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs after resume"
    assert [r["loss"] for r in _metrics(straight)] == [r["loss"] for r in _metrics(crashed)]


@pytest.mark.slow  # compiling takes minutes on 2 cores
def test_compiled_run_is_compiled_and_matches_eager(tmp_path):
    """`train.compile=true` really compiles, stops compiling once the mask sizes vary (dynamic shapes: no graph per
    step), and trains what eager trains."""
    from torch._dynamo.utils import counters

    def compiled_graphs(run: str, steps: int) -> int:
        torch._dynamo.reset()
        counters.clear()
        over = {"train.max_steps": steps, "train.ckpt_every": steps, "train.compile": True}
        pretrain(load_config([], tiny_overrides(tmp_path / run, **over)))
        assert counters["frames"]["ok"] > 0, "nothing was compiled"
        return counters["stats"]["unique_graphs"]

    pretrain(load_config([], tiny_overrides(tmp_path / "eager", **{"train.max_steps": 5, "train.ckpt_every": 5})))
    short, long = compiled_graphs("compiled", 5), compiled_graphs("longer", 10)
    # At most one more: two mask configs whose token counts happened to be equal share a size symbol until they differ.
    assert long - short <= 1, f"steps 6-10 compiled {long - short} more graphs: a shape or value recompiles per step"
    eager, compiled = _metrics(tmp_path / "eager" / "run"), _metrics(tmp_path / "compiled" / "run")
    for a, b in zip(eager, compiled, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-4 * max(1.0, abs(a["loss"])), (a["step"], a["loss"], b["loss"])
    a, b = _weights(tmp_path / "eager" / "run"), _weights(tmp_path / "compiled" / "run")
    for key, value in a["encoder"].items():
        torch.testing.assert_close(b["encoder"][key], value, rtol=1e-3, atol=1e-5, msg=f"encoder.{key}")


def test_ema_steps_once_per_optimizer_step(tmp_path, monkeypatch):
    calls = []
    original = EMA.update

    def counting(self, step):
        calls.append(step)
        return original(self, step)

    monkeypatch.setattr(EMA, "update", counting)
    pretrain(load_config([], tiny_overrides(tmp_path, **{"train.grad_accum": 2, "train.max_steps": 3})))
    assert calls == [0, 1, 2]


def test_grad_accumulation_matches_big_batch_gradient(tmp_path):
    """With accumulation the optimizer sees the mean gradient of the micro-batches (loss scaled by 1 / accum)."""
    from jepa_world.factory import build_jepa, build_masks

    cfg = load_config([], tiny_overrides(tmp_path))
    torch.manual_seed(0)
    model = build_jepa(cfg)
    masks = build_masks(cfg, model.encoder.grid_size)
    x = torch.randn(4, 3, 4, 32, 32)
    ms = masks(4, step=0)
    model({"x": x, "masks": ms})[0].backward()
    full = model.encoder.patch_embed.proj.weight.grad.clone()
    model.zero_grad()
    for half in (slice(0, 2), slice(2, 4)):
        (model({"x": x[half], "masks": [m.select(half) for m in ms]})[0] / 2).backward()
    torch.testing.assert_close(model.encoder.patch_embed.proj.weight.grad, full, rtol=1e-4, atol=1e-6)


def test_loss_goes_down_without_collapse(tmp_path):
    over = tiny_overrides(
        tmp_path,
        **{
            "train.max_steps": 40,
            "train.batch_size": 8,
            "optim.warmup_steps": 5,
            "optim.lr": 2e-3,
            "train.ckpt_every": 100,
        },
    )
    pretrain(load_config([], over))
    records = _metrics(tmp_path / "run")
    first = sum(r["loss"] for r in records[:5]) / 5
    last = sum(r["loss"] for r in records[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    # Layer-normed targets of a collapsed encoder have per-dimension std -> 0.
    assert records[-1]["target_std"] > 0.5 * records[0]["target_std"]
    assert records[-1]["target_eff_rank"] > 2.0


@pytest.mark.parametrize(
    ("batch", "world", "accum", "match"),
    [
        (1, 2, 1, "smaller than the number of processes"),
        (6, 4, 1, "not divisible by processes x grad_accum = 4 x 1"),
        (8, 2, 3, "not divisible"),
    ],
)
def test_batch_split_errors(batch, world, accum, match):
    with pytest.raises(ValueError, match=match):
        check_batch_split(batch, world, accum)


def test_bad_index_and_unwritable_output(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.index=.*does not exist"):
        pretrain(load_config([], tiny_overrides(tmp_path, **{"data.index": str(tmp_path / "nothing")})))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        pretrain(load_config([], tiny_overrides(tmp_path, **{"data.index": str(empty)})))
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="is not writable"):
        pretrain(load_config([], tiny_overrides(tmp_path, **{"train.output_dir": str(blocker / "run")})))


def test_undecodable_images_are_skipped_and_counted_in_the_run(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(torch.full((40, 40, 3), 30 * i, dtype=torch.uint8).numpy()).save(folder / f"{i}.png")
    (folder / "3.png").write_bytes(b"\x89PNG garbage")
    over = tiny_overrides(tmp_path, **{"data.index": folder, "data.num_frames": 1, "train.max_steps": 2})
    pretrain(load_config([], over))
    records = _metrics(tmp_path / "run")
    assert records[-1]["data_skipped"] >= 1


def test_cli_smoke_run_then_resume(tmp_path):
    """`jepa-world pretrain` as a user runs it: a subprocess, then a second call that resumes."""
    cmd = [sys.executable, "-m", "jepa_world.cli", "pretrain", *tiny_overrides(tmp_path, **{"train.max_steps": 2})]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "done: 2 steps" in first.stdout
    cmd[-len(tiny_overrides(tmp_path)) :] = tiny_overrides(tmp_path, **{"train.max_steps": 4})
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout and "step_00000002.pt at step 2" in second.stdout
    assert _weights(tmp_path / "run")["step"] == 4


def test_cli_reports_config_errors(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "jepa_world.cli", "pretrain", "train.max_step=3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 2
    assert "did you mean 'train.max_steps'" in out.stderr


def test_cli_help_and_info():
    out = subprocess.run(
        [sys.executable, "-m", "jepa_world.cli", "pretrain", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0
    for key in ("train.output_dir", "train.max_steps", "train.batch_size", "seed", "model.name"):
        assert key in out.stdout
    info = subprocess.run(
        [sys.executable, "-m", "jepa_world.cli", "info"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert info.returncode == 0 and "vit_small" in info.stdout and "torch" in info.stdout


def test_pretraining_ends_with_a_health_summary(tmp_path, capsys):
    summary = pretrain(load_config([], tiny_overrides(tmp_path)))
    out = capsys.readouterr().out
    assert "health: target std" in out and "(steps 1 -> 4)" in out
    assert summary["health"].startswith("target std")
