"""A run folder is safe: nothing of an earlier run is lost, mixed or shadowed, and refusals leave it as it was."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

from jepa_world import checkpoints
from jepa_world.config import load_config
from jepa_world.training import pretrain
from jepa_world.training.run_state import RunLock
from tests.conftest import ROOT, tiny_overrides


def _snapshot(folder) -> dict:
    """Every file below `folder` (but the lock) with its bytes."""
    return {
        p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"
    }


@pytest.fixture
def finished(tmp_path):
    pretrain(load_config([], tiny_overrides(tmp_path)))
    return tmp_path / "run"


def test_resume_never_over_an_earlier_run_is_refused_and_changes_nothing(finished, tmp_path):
    before = _snapshot(finished)
    with pytest.raises(RuntimeError, match=r"train.resume=never, but .* already holds 2 checkpoint"):
        pretrain(load_config([], tiny_overrides(tmp_path, **{"train.resume": "never"})))
    assert _snapshot(finished) == before


@pytest.mark.parametrize(
    ("override", "named"),
    [({"model.depth": 3}, "model.depth: 2 in the checkpoint, 3 now"), ({"data.image_size": 64}, "data.image_size")],
)
def test_resume_with_another_architecture_is_refused_naming_the_keys(finished, tmp_path, override, named):
    before = _snapshot(finished)
    with pytest.raises(RuntimeError, match=rf"cannot resume .*{named}"):
        pretrain(load_config([], tiny_overrides(tmp_path, **{"train.max_steps": 8, **override})))
    assert _snapshot(finished) == before  # config.yaml too: it is written only after the checks


def test_a_world_model_command_on_a_pretraining_folder_is_refused(finished, tmp_path):
    from jepa_world.training import train_world_model

    before = _snapshot(finished)
    over = [f"train.output_dir={finished}", "train.max_steps=2", "train.batch_size=4", "wm.collect.episodes=4",
            "wm.collect.steps=4", "wm.window=3", "data.image_size=32", "train.progress=false",
            "train.tensorboard=false"]  # fmt: skip
    with pytest.raises(RuntimeError, match=r"is a 'pretrain' run; this command trains 'world_model'"):
        train_world_model(load_config([], over, command="train-wm"))
    episodes = finished / "episodes"  # collected first (its own folder); the run's files are untouched
    assert {k: v for k, v in _snapshot(finished).items() if episodes not in (finished / k).parents} == before


def test_a_second_run_in_the_same_folder_is_refused_naming_the_first(tmp_path):
    held = rf"in use by another run \(pid {os.getpid()} on .*started"
    with RunLock(tmp_path / "run"), pytest.raises(RuntimeError, match=held):
        pretrain(load_config([], tiny_overrides(tmp_path)))
    assert not (tmp_path / "run" / "checkpoints").exists()
    pretrain(load_config([], tiny_overrides(tmp_path)))  # the lock is gone with its holder


def test_two_processes_started_together_do_not_interleave(tmp_path):
    # A resubmitted job: the same command twice at once. One trains; the other is refused before writing anything.
    # Long enough (a few seconds) that the second process reaches the lock while the first still trains.
    over = tiny_overrides(tmp_path, **{"train.max_steps": 120, "train.ckpt_every": 40, "train.log_every": 4})
    cmd = [sys.executable, "-m", "jepa_world.cli", "pretrain", *over]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    results = [(*p.communicate(timeout=300), p.returncode) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], [r[1][-500:] for r in results]
    refused = next(r for r in results if r[2] == 2)
    assert "jepa-world pretrain: error:" in refused[1] and "in use by another run" in refused[1]
    assert "Traceback" not in refused[1]
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert steps == list(range(4, 121, 4))  # one run's lines, each logged step once


def test_stale_temporaries_are_removed_and_files_honour_the_umask(finished, tmp_path):
    stale = finished / "checkpoints" / ".step_00000004.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")  # a save that was killed mid-write
    old = os.umask(0o027)
    try:
        pretrain(load_config([], tiny_overrides(tmp_path, **{"train.max_steps": 6})))
    finally:
        os.umask(old)
    assert not stale.exists()
    newest = checkpoints.list_checkpoints(finished / "checkpoints")[-1]
    assert newest.name == "step_00000006.pt" and stat.S_IMODE(newest.stat().st_mode) == 0o640


def test_a_finished_run_started_again_says_so_with_its_last_loss(finished, tmp_path, capsys):
    from jepa_world.cli import main

    capsys.readouterr()
    assert main(["pretrain", *tiny_overrides(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "already finished: 4 of train.max_steps=4" in out and "loss nan" not in out
    assert "done: 4 steps, loss " in out and "(already finished: nothing trained)" in out


def test_a_batch_larger_than_the_dataset_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"train.batch_size=8 is larger than the dataset \(6 items\)"):
        pretrain(load_config([], tiny_overrides(tmp_path, **{"data.num_samples": 6, "train.batch_size": 8})))


def _signal_script(body: str) -> list[str]:
    header = "import os, signal, time\nfrom jepa_world.training.run_state import stop_on_signals\n"
    return [sys.executable, "-c", header + body]


def test_a_second_signal_stops_at_once():
    body = """
with stop_on_signals(grace_s=0) as flag:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("first", flag["signal"], flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("still running", flush=True)
"""
    res = subprocess.run(_signal_script(body), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == -signal.SIGTERM and "first 15" in res.stdout and "still running" not in res.stdout


def test_a_step_stuck_after_the_signal_ends_after_the_grace_period():
    body = """
with stop_on_signals(grace_s=0.5) as flag:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # a step stuck on I/O: never reaches its boundary
"""
    res = subprocess.run(_signal_script(body), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 128 + signal.SIGTERM and "train.stop_grace_s=0.5" in res.stdout


def test_the_writable_check_of_concurrent_starts_does_not_trip_over_the_other(tmp_path):
    # Two jobs checking the same run folder at once used to share one probe file: one deleted the other's, which
    # then reported the folder "not writable: No such file or directory" instead of reaching the run lock.
    import threading

    from jepa_world.training.run_state import check_writable

    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(300):
                check_writable(tmp_path / "run")
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list((tmp_path / "run").iterdir()) == []  # every probe is gone
