"""Fault drill: kill training at random points and check resumption is exact; run the bad-input corpus.

    python scripts/fault_drill.py --trials 5           # kill -9 at 5 random steps (one run, killed 5 times)
    python scripts/fault_drill.py --trials 0           # bad-input corpus only

Prints how many killed-and-resumed runs ended bit-exact on the uninterrupted run's weights, and the outcome of every
bad-input case next to the expected one. Exit status 1 if anything did not behave as promised (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from jepa_world import checkpoints
from jepa_world.config import ConfigError, load_config
from jepa_world.training import check_batch_split, pretrain

ROOT = Path(__file__).resolve().parents[1]


def tiny(out: Path, **extra) -> list[str]:
    base = {"train.output_dir": out, "train.max_steps": 12, "train.batch_size": 8, "train.log_every": 1,
            "train.ckpt_every": 2, "train.progress": False, "train.tensorboard": False, "model.name": "vit_nano",
            "model.depth": 2, "predictor.depth": 1, "data.image_size": 32, "data.num_frames": 4,
            "data.num_samples": 64, "optim.warmup_steps": 1}  # fmt: skip
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _steps_logged(run: Path) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _same(a: Path, b: Path) -> bool:
    sa = checkpoints.load_checkpoint(checkpoints.list_checkpoints(a / "checkpoints")[-1])
    sb = checkpoints.load_checkpoint(checkpoints.list_checkpoints(b / "checkpoints")[-1])
    return all(torch.equal(v, sb[part][k]) for part in ("encoder", "target_encoder", "predictor")
               for k, v in sa[part].items())  # fmt: skip


def kill_trials(work: Path, trials: int, seed: int) -> tuple[int, int]:
    """One uninterrupted run, then for each trial a run killed at a random logged step and resumed to the end."""
    pretrain(load_config([], tiny(work / "straight")))
    rng = np.random.default_rng(seed)
    matched = 0
    for i in range(trials):
        run = work / f"trial{i}"
        cmd = [sys.executable, "-m", "jepa_world.cli", "pretrain", *tiny(run)]
        target = int(rng.integers(1, 12))
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and _steps_logged(run) < target:
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        at = _steps_logged(run)
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        ok = done.returncode == 0 and _same(work / "straight", run)
        matched += ok
        print(f"trial {i}: killed after {at} logged steps (target {target}) -> {'exact' if ok else 'MISMATCH'}")
    return matched, trials


# --------------------------------------------------------------------------------------------------------------------
# Bad-input corpus: (name, expected outcome, function returning the observed outcome)
# --------------------------------------------------------------------------------------------------------------------
def _raises(fn: Callable[[], object], exc: type[BaseException], needle: str) -> str:
    try:
        fn()
    except exc as err:
        return f"error: {err}" if needle in str(err) else f"WRONG MESSAGE: {err}"
    except Exception as err:
        return f"WRONG ERROR {type(err).__name__}: {err}"
    return "NO ERROR"


def _skipped(work: Path, name: str, break_one: Callable[[Path], None]) -> str:
    from PIL import Image

    folder = work / name
    folder.mkdir()
    for i in range(6):
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(folder / f"img{i}.png")
    break_one(folder)
    out = work / f"{name}_run"
    pretrain(load_config([], tiny(out, **{"data.index": folder, "train.max_steps": 2, "data.num_frames": 1})))
    rec = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][-1]
    return f"skipped and counted (data_skipped={rec['data_skipped']})" if rec["data_skipped"] > 0 else "NOT COUNTED"


def corpus(work: Path) -> list[tuple[str, str, str]]:
    cases: list[tuple[str, str, str]] = []

    def case(name: str, expected: str, observed: str) -> None:
        cases.append((name, expected, observed))

    case(
        "unknown config key",
        "error naming the key",
        _raises(lambda: load_config([], ["train.max_step=3"]), ConfigError, "train.max_step"),
    )
    case(
        "wrong type",
        "error naming the key",
        _raises(lambda: load_config([], ["train.batch_size=abc"]), ConfigError, "train.batch_size"),
    )
    case(
        "negative size",
        "error naming the key",
        _raises(lambda: load_config([], ["data.image_size=-64"]), ConfigError, "data.image_size"),
    )
    case(
        "patch size does not divide input",
        "error naming the key",
        _raises(lambda: load_config([], ["data.image_size=60"]), ConfigError, "model.patch_size"),
    )
    case(
        "batch smaller than processes",
        "error",
        _raises(lambda: check_batch_split(1, 2, 1), ValueError, "smaller than the number of processes"),
    )
    case(
        "data.index points nowhere",
        "error naming the path",
        _raises(
            lambda: pretrain(load_config([], tiny(work / "r1", **{"data.index": work / "nowhere"}))),
            FileNotFoundError,
            "nowhere",
        ),
    )
    (work / "empty").mkdir()
    case(
        "empty data folder",
        "error naming the path",
        _raises(
            lambda: pretrain(load_config([], tiny(work / "r2", **{"data.index": work / "empty"}))),
            ValueError,
            "no images",
        ),
    )
    case(
        "image that does not decode",
        "skip and count",
        _skipped(work, "corrupt", lambda f: (f / "img2.png").write_bytes(b"not a png")),
    )
    case("zero-byte image", "skip and count", _skipped(work, "zero", lambda f: (f / "img3.png").write_bytes(b"")))

    def other_arch() -> None:
        run = work / "arch"
        pretrain(load_config([], tiny(run, **{"train.max_steps": 2})))
        pretrain(load_config([], tiny(run, **{"train.max_steps": 4, "model.depth": 3})))

    case(
        "checkpoint from another architecture",
        "error naming keys",
        _raises(other_arch, checkpoints.CheckpointError, "missing keys"),
    )

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {work / 'pwned'}",))

    torch.save({"encoder": Evil()}, work / "evil.pt")
    observed = _raises(
        lambda: checkpoints.load_checkpoint(work / "evil.pt"), checkpoints.CheckpointError, "arbitrary pickle"
    )
    case(
        "pickle that would run code",
        "refused, not run",
        observed + (" | CODE RAN" if (work / "pwned").exists() else " | code not run"),
    )

    from jepa_world.data.episodes import write_episode

    frames = np.zeros((5, 8, 8, 3), np.uint8)
    bad_actions = np.zeros((4, 2), np.float32)
    bad_actions[2, 1] = np.nan
    case(
        "episode with NaN actions",
        "error naming the episode",
        _raises(
            lambda: write_episode(work / "episode_000000.npz", frames=frames, actions=bad_actions), ValueError, "NaN"
        ),
    )
    case(
        "episode with mismatched lengths",
        "error naming the episode",
        _raises(
            lambda: write_episode(work / "episode_000001.npz", frames=frames, actions=np.zeros((5, 2), np.float32)),
            ValueError,
            "episode_000001",
        ),
    )
    return cases  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.trials:
            matched, total = kill_trials(work / "kill", args.trials, args.seed)
            print(f"\nkill -9 and resume: {matched}/{total} resumed runs matched the uninterrupted run bit-exactly\n")
            failures += total - matched
        (work / "corpus").mkdir()
        print("| case | expected | observed |\n|---|---|---|")
        for name, expected, observed in corpus(work / "corpus"):
            bad = observed.startswith(("NO ERROR", "WRONG", "NOT")) or "CODE RAN" in observed
            failures += bad
            print(f"| {name} | {expected} | {observed.splitlines()[0][:110]} |")
    print(f"\n{'ALL OK' if failures == 0 else f'{failures} FAILURES'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
