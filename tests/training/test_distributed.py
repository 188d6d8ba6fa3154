"""Two CPU processes through `accelerate launch` compute what one process computes, and only rank 0 writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from jepa_world import checkpoints
from jepa_world.config import load_config
from jepa_world.training import pretrain
from tests.conftest import ROOT, tiny_overrides


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(tmp_path, over: dict, *, timeout: int = 600) -> subprocess.CompletedProcess:
    """`jepa-world pretrain` in 2 CPU processes into tmp_path/two; fails the test unless it ran as 2 processes."""
    # The exact command that really starts 2 CPU processes (`--cpu --num_processes 2` silently starts one).
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()), "-m", "jepa_world.cli", "pretrain",
        *tiny_overrides(tmp_path / "two", **over),
    ]  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    state = checkpoints.load_checkpoint(checkpoints.list_checkpoints(tmp_path / "two" / "run" / "checkpoints")[-1])
    assert state["world_size"] == 2, "accelerate started one process: the test would prove nothing"
    return out


def _logged(tmp_path, run: str) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / run / "run" / "metrics.jsonl").read_text().splitlines()]


def _assert_same_losses(one: list[dict], two: list[dict]) -> None:
    for a, b in zip(one, two, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-4, (a["step"], a["loss"], b["loss"])


def test_two_processes_match_one(tmp_path):
    over = {"train.max_steps": 10, "train.batch_size": 4, "train.ckpt_every": 10, "optim.warmup_steps": 2}
    pretrain(load_config([], tiny_overrides(tmp_path / "one", **over)))
    out = _run_two_processes(tmp_path, over)
    one, two = _logged(tmp_path, "one"), _logged(tmp_path, "two")
    # Only the main process logs: one line per step, not two.
    assert [r["step"] for r in two] == list(range(1, 11))
    _assert_same_losses(one, two)
    assert out.stdout.count("done: 10 steps") == 1

    # Resume the 2-process run with ONE process: it continues (same global batches, so the same data) and matches
    # the 1-process run continued the same way.
    more = {**over, "train.max_steps": 12}
    for run in ("one", "two"):
        pretrain(load_config([], tiny_overrides(tmp_path / run, **more)))
    one, two = _logged(tmp_path, "one"), _logged(tmp_path, "two")
    assert [r["step"] for r in two] == list(range(1, 13))
    _assert_same_losses(one[10:], two[10:])


@pytest.mark.slow  # two processes compiling take minutes on 2 cores
def test_two_compiled_processes_match_one(tmp_path):
    """`train.compile=true` keeps the 2-process = 1-process equivalence (each process compiles its own forward)."""
    over = {"train.max_steps": 4, "train.batch_size": 4, "train.ckpt_every": 4, "optim.warmup_steps": 2,
            "train.compile": True}  # fmt: skip
    pretrain(load_config([], tiny_overrides(tmp_path / "one", **over)))
    _run_two_processes(tmp_path, over, timeout=1500)  # each process compiles
    two = _logged(tmp_path, "two")
    assert [r["step"] for r in two] == list(range(1, 5))
    _assert_same_losses(_logged(tmp_path, "one"), two)
