"""Reliability: kill -9 and resume exactly, SIGTERM saves and stops, corrupt / failed checkpoint writes lose nothing,
non-finite losses stop or skip loudly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from jepa_world import checkpoints
from jepa_world.config import load_config
from jepa_world.data.build import build_dataset
from jepa_world.training import fit, pretrain
from jepa_world.training.tasks import pretrain_task
from tests.conftest import ROOT, tiny_overrides

KILL_RUN = {"train.max_steps": 12, "train.ckpt_every": 2, "train.batch_size": 8}


def _lines(run: Path) -> list[dict]:
    """Complete metrics lines (a line being written while we poll is not counted yet)."""
    path = run / "metrics.jsonl"
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def _final(run: Path) -> dict:
    return checkpoints.load_checkpoint(checkpoints.list_checkpoints(run / "checkpoints")[-1])


def _assert_same_weights(a: dict, b: dict) -> None:
    for part in ("encoder", "target_encoder", "predictor"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key} differs"


def _cli(tmp_path: Path, **over) -> list[str]:
    return [sys.executable, "-m", "jepa_world.cli", "pretrain", *tiny_overrides(tmp_path, **over)]


def test_kill_9_at_random_steps_then_resume_is_exact(tmp_path):
    # The uninterrupted run is a subprocess too: bit-exactness holds for the same BLAS thread count, and other tests
    # change this process's torch thread count.
    straight = subprocess.run(_cli(tmp_path / "straight", **KILL_RUN), cwd=ROOT, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-2000:]
    run = tmp_path / "killed" / "run"
    cmd = _cli(tmp_path / "killed", **KILL_RUN)
    kill_after = sorted(np.random.default_rng(0).choice(np.arange(1, 12), size=5, replace=False).tolist())
    killed_at = []
    for target in kill_after:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while proc.poll() is None and len(_lines(run)) < target and time.time() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at.append(len(_lines(run)))
    assert len(killed_at) >= 3, f"runs finished before the kill points: {killed_at}"
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_weights(_final(tmp_path / "straight" / "run"), _final(run))
    # Metrics of recomputed steps are not duplicated: one line per step, equal to the uninterrupted run's.
    straight = _lines(tmp_path / "straight" / "run")
    assert [r["step"] for r in _lines(run)] == list(range(1, 13))
    assert [r["loss"] for r in _lines(run)] == [r["loss"] for r in straight]


def test_sigterm_saves_and_stops_then_resumes(tmp_path):
    run = tmp_path / "run"
    cmd = _cli(tmp_path, **{**KILL_RUN, "train.max_steps": 400, "train.ckpt_every": 1000})
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while len(_lines(run)) < 3 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped by signal" in out
    state = _final(run)
    assert 3 <= state["step"] < 400
    assert len(_lines(run)) == state["step"]


def test_max_minutes_stops_with_a_checkpoint_then_resumes(tmp_path, capsys):
    over = {"train.max_steps": 6, "train.ckpt_every": 100}
    # A budget that every step exceeds: the loop stops after its first step, saving what it did.
    summary = pretrain(load_config([], tiny_overrides(tmp_path, **over, **{"train.max_minutes": 1e-9})))
    assert summary["stopped_by_time"] and not summary["stopped_by_signal"]
    assert summary["step"] == 1 and _final(tmp_path / "run")["step"] == 1
    assert "stopped by train.max_minutes=1e-09 at step 1" in capsys.readouterr().out
    summary = pretrain(load_config([], tiny_overrides(tmp_path, **over)))  # no budget: resumes and finishes
    assert summary["step"] == 6 and not summary["stopped_by_time"]
    assert [r["step"] for r in _lines(tmp_path / "run")] == list(range(1, 7))
    # A budget the run fits in does not cut it.
    summary = pretrain(load_config([], tiny_overrides(tmp_path / "b", **over, **{"train.max_minutes": 60})))
    assert summary["step"] == 6 and not summary["stopped_by_time"]


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path):
    over = {"train.max_steps": 6, "train.ckpt_every": 2, "train.keep_last": 3}
    pretrain(load_config([], tiny_overrides(tmp_path / "a", **over)))
    run = tmp_path / "a" / "run"
    reference = _final(run)
    latest = checkpoints.list_checkpoints(run / "checkpoints")[-1]
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 3])  # truncated, as by a full disk
    with pytest.raises(checkpoints.CheckpointError, match="not a readable checkpoint"):
        checkpoints.load_checkpoint(latest)
    with pytest.warns(UserWarning, match="falling back to the previous one"):
        pretrain(load_config([], tiny_overrides(tmp_path / "a", **over)))
    _assert_same_weights(reference, _final(run))


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    over = {"train.max_steps": 4, "train.ckpt_every": 2}
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        if obj["step"] == 4:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoints.io.torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        pretrain(load_config([], tiny_overrides(tmp_path, **over)))
    ckpt_dir = tmp_path / "run" / "checkpoints"
    assert [p.name for p in ckpt_dir.iterdir()] == ["step_00000002.pt"]  # no half-written file left behind
    assert checkpoints.load_checkpoint(ckpt_dir / "step_00000002.pt")["step"] == 2


class _PoisonedData(torch.utils.data.Dataset):
    """Wraps a dataset; every item from the listed indices has NaN pixels."""

    def __init__(self, base, poisoned: set[int]):
        self.base, self.poisoned = base, poisoned

    def __len__(self):
        return len(self.base)

    def __getitem__(self, key):
        item = dict(self.base[key])
        if key[0] in self.poisoned:
            item["x"] = torch.full_like(item["x"], float("nan"))
        return item


def test_nonfinite_loss_stops_naming_the_step_or_is_skipped(tmp_path):
    cfg = load_config([], tiny_overrides(tmp_path, **{"train.max_steps": 4, "train.ckpt_every": 1}))
    data = _PoisonedData(build_dataset(cfg.data, seed=cfg.seed), poisoned=set(range(64)))
    with pytest.raises(FloatingPointError, match="non-finite loss or gradient at step 0"):
        fit(cfg, lambda: pretrain_task(cfg, dataset=data))
    assert not (tmp_path / "run" / "checkpoints").exists() or not checkpoints.list_checkpoints(
        tmp_path / "run" / "checkpoints"
    )

    cfg = load_config([], tiny_overrides(tmp_path / "skip", **{"train.max_steps": 4, "train.skip_nonfinite": True}))
    half = _PoisonedData(build_dataset(cfg.data, seed=cfg.seed), poisoned=set(range(0, 64, 2)))
    summary = fit(cfg, lambda: pretrain_task(cfg, dataset=half))
    assert summary["metrics"]["steps_skipped"] >= 1
    assert all(torch.isfinite(v).all() for v in _final(tmp_path / "skip" / "run")["encoder"].values())


def test_untrusted_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"encoder": Evil()}, path)
    with pytest.raises(checkpoints.CheckpointError, match="arbitrary pickle code"):
        checkpoints.load_checkpoint(path)
    assert not marker.exists()
