"""What a run folder holds between invocations, and what a run shares with its processes.

A run folder: `config.yaml` (the resolved config), `checkpoints/step_*.pt` (atomic, newest `train.keep_last` kept),
`metrics.jsonl` (one line per logging step, flushed as written), TensorBoard events and `.lock`. This module reads and
writes the pieces the loop needs to resume exactly (the checkpoint to resume from, the RNG states, the metrics file
trimmed to the resumed step), keeps the folder safe (one run at a time holds `.lock`; a run that would mix with or
shadow the one already there is refused before anything is written), and turns SIGTERM / SIGINT into a stop at the
next step boundary (a second signal, or a step stuck past `train.stop_grace_s`, ends the process at once; the last
checkpoint is intact either way because every write is atomic).
"""

from __future__ import annotations

import datetime
import json
import os
import random
import signal
import socket
import threading
import warnings
from contextlib import contextmanager, suppress
from enum import Enum
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from jepa_world.atomic import atomic_write_text
from jepa_world.checkpoints.digest import SOURCES_KEY, changed_sources
from jepa_world.checkpoints.io import CheckpointError, list_checkpoints, load_checkpoint
from jepa_world.checkpoints.tree import diff_trees
from jepa_world.config.legacy import upgrade_saved
from jepa_world.config.parts import complete_part
from jepa_world.config.schema import ConfigError


def check_writable(path: Path) -> None:
    """Create the run folder and prove it takes a file; PermissionError naming `train.output_dir` otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A name of its own: two processes started on one folder must not delete each other's probe.
        probe = path / f".write_test.{os.getpid()}.{threading.get_ident()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"train.output_dir={str(path)!r} is not writable: {err.strerror or err}") from None


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as tensors and lists (what `weights_only=True` loads back)."""
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved."""
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])


try:
    import fcntl
except ImportError:  # not POSIX: no advisory locks (the run folder is then not protected against a second run)
    fcntl = None

# Keys that fix the architecture or what is trained: a resume that changes one of them cannot be exact (or loads
# wrong-shaped weights), so it is refused naming them. Optimiser, schedule and logging keys may change on resume.
# A world model's architecture is compared as its tree of parts (`meta["tree"]`, `checkpoints.tree.diff_trees`); the
# wm keys here are what the tree does not show: which weights train, how the readout is fit, the data.
RESUME_KEYS = (
    "model.name", "model.patch_size", "model.tubelet_size", "model.depth", "model.pos_embed", "predictor.name",
    "predictor.embed_dim", "predictor.depth", "predictor.num_heads", "predictor.single_pass", "data.image_size",
    "data.num_frames",
    "masks.num_blocks", "wm.encoder.checkpoint", "wm.encoder.finetune", "wm.encoder.finetune_blocks", "wm.readout",
    "wm.frameskip", "wm.val_episodes",
    "policy.method", "policy.world_model", "policy.num_latents", "policy.hidden_dim", "policy.depth",
    "policy.population",
)  # fmt: skip


class RunLock:
    """An exclusive advisory lock on `directory/.lock` for a whole run; a second run in the folder is refused.

    The lock file records the holder's pid, host and start time, which the refusal names. The kernel releases the
    lock when the holder dies (kill -9 included), so a crashed run never leaves the folder locked. A run that ends in
    an error (a refused resume, bad data) leaves `.lock` as it found it: removed when it created it, its earlier
    bytes put back otherwise, so a refused run changes nothing in the folder.
    """

    def __init__(self, directory: Path, *, enabled: bool = True, what: str = "train.output_dir"):
        self.path, self.enabled, self.fd = Path(directory) / ".lock", enabled and fcntl is not None, None
        self.what, self.before = what, None  # before: the file's bytes when this run took it (None: it created it)

    def __enter__(self) -> RunLock:
        if not self.enabled:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:  # O_EXCL tells whether this run creates the file (then removes it on an error)
                fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), True
            except FileExistsError:
                try:
                    fd, created = os.open(self.path, os.O_RDWR), False
                except FileNotFoundError:  # removed by a refused run between the two opens: try again
                    continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
                os.close(fd)
                raise RuntimeError(
                    f"{self.what}={str(self.path.parent)!r} is in use by another run ({holder}); wait for it to "
                    f"finish, or choose another {self.what}"
                ) from None
            try:  # a file removed (by a run that created it and failed) while this one waited on it: not the lock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.before = None if created else _read_all(fd)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self.fd is None:
            return
        if exc_type is not None:  # leave the file as it was found (still holding the lock: no one sees it half-way)
            if self.before is None:
                self.path.unlink(missing_ok=True)
            else:
                os.ftruncate(self.fd, 0)
                os.pwrite(self.fd, self.before, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


def check_resumable(
    cfg: DictConfig, task_name: str, state: dict, source: Path, *, tree: dict | None = None, meta: dict | None = None
) -> None:
    """Refuse a resume whose task, tree of parts (`tree`: the model this run built), architecture keys or the weights
    it started from (`meta["sources"]` of this run's task: `checkpoints.digest`) differ from the checkpoint's, naming
    them."""
    saved_task = state.get("task", "pretrain")
    if saved_task != task_name:
        raise RuntimeError(
            f"{source} is a {saved_task!r} run; this command trains {task_name!r}: choose another train.output_dir"
        )
    saved_sources, sources = (state.get("meta") or {}).get(SOURCES_KEY), (meta or {}).get(SOURCES_KEY)
    if sources and saved_sources is None:
        warnings.warn(f"{source} was written before runs recorded the weights they start from "
                      f"({', '.join(sources)}): this resume cannot check that they are the ones it was trained on",
                      stacklevel=2)  # fmt: skip
    retrained = changed_sources(saved_sources, sources)
    if retrained:
        raise RuntimeError(
            f"cannot resume {source}: the weights it started from were retrained or replaced since "
            f"({'; '.join(retrained)}). Resume it with the weights it was trained on, or train a new run in another "
            "train.output_dir"
        )
    changed = []
    saved_tree = (state.get("meta") or {}).get("tree")
    if tree is not None and saved_tree is not None:
        changed += [f"model {d}" for d in diff_trees(saved_tree, tree)]
    saved = (
        None
        if "config" not in state
        else OmegaConf.create(upgrade_saved(OmegaConf.to_container(OmegaConf.create(state["config"]))))
    )
    missing = object()
    for key in RESUME_KEYS if saved is not None else ():
        old, new = OmegaConf.select(saved, key, default=missing), OmegaConf.select(cfg, key, default=missing)
        if old is missing or new is missing:
            continue
        plain = [OmegaConf.to_container(v) if isinstance(v, DictConfig | ListConfig) else v for v in (old, new)]
        if key == "wm.readout":  # compared with every default filled in (a saved section may spell out fewer keys)
            with suppress(ConfigError):
                plain = [complete_part("readout", v, key=key) for v in plain]
        if str(plain[0]) != str(plain[1]):
            changed.append(f"{key}: {plain[0]!r} in the checkpoint, {plain[1]!r} now")
    if changed:
        raise RuntimeError(
            f"cannot resume {source}: the run was made with other settings ({'; '.join(changed)}). Resume with the "
            "run's settings (its config.yaml), or choose another train.output_dir"
        )


def load_resume_state(cfg: DictConfig, ckpt_dir: Path, is_main: bool) -> tuple[dict | None, Path | None]:
    """The checkpoint to resume from: an explicit path, or the newest readable one in the run (auto).

    Raises:
        RuntimeError: `train.resume=never` in a folder that already holds checkpoints (the new run's checkpoints
            would mix with the old ones and be pruned or shadowed by them).
    """
    if cfg.train.resume == "never":
        found = list_checkpoints(ckpt_dir)
        if found:
            raise RuntimeError(
                f"train.resume=never, but {ckpt_dir} already holds {len(found)} checkpoint(s) of an earlier run (up "
                f"to {found[-1].name}); starting over there would mix the two runs. Choose another "
                "train.output_dir, move the old run away, or resume it (train.resume=auto)"
            )
        return None, None
    if cfg.train.resume != "auto":
        path = Path(cfg.train.resume)
        return load_checkpoint(path), path
    for path in reversed(list_checkpoints(ckpt_dir)):
        try:
            return load_checkpoint(path), path
        except CheckpointError as err:
            if is_main:
                warnings.warn(f"skipping unreadable checkpoint, falling back to the previous one: {err}", stacklevel=2)
    return None, None


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut by a crash mid-write
        return 1 << 62


class MetricsLog:
    """JSONL metrics on the main process (one line per logging step, flushed at once: nothing lost on a crash)."""

    def __init__(self, path: Path, enabled: bool, *, start_step: int):
        if enabled and path.exists():
            # Lines past the resumed checkpoint belong to steps that are about to be recomputed: drop them.
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= start_step]
            atomic_write_text(path, "".join(line + "\n" for line in kept))
        self.file = open(path, "a", buffering=1) if enabled else None  # noqa: SIM115

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@contextmanager
def stop_on_signals(*, grace_s: float = 0.0):
    """Turn SIGTERM / SIGINT into a flag the loop checks at step boundaries (main thread only).

    A second signal restores the default handler and re-sends itself: the process ends at once. With `grace_s` > 0,
    a step that has not reached its boundary `grace_s` seconds after the first signal (stuck on I/O, say) ends the
    process with status 128 + signal. Checkpoints are written atomically, so the last one is intact either way.
    """
    flag: dict = {"signal": None}
    timer: list[threading.Timer] = []

    def handler(signum, frame):
        if flag["signal"] is not None:  # the second one: stop now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        flag["signal"] = signum
        if grace_s > 0:
            timer.append(threading.Timer(grace_s, _exit_stuck, args=(signum, grace_s)))
            timer[-1].daemon = True
            timer[-1].start()

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no handlers, no graceful stop
        pass
    try:
        yield flag
    finally:
        for t in timer:
            t.cancel()
        for sig, old in previous.items():
            signal.signal(sig, old)


def _exit_stuck(signum: int, grace_s: float) -> None:
    print(f"no step boundary within train.stop_grace_s={grace_s:g} s of signal {signum}: exiting now; the last "
          "checkpoint is intact", flush=True)  # fmt: skip
    os._exit(128 + signum)


def logged_ends(path: Path) -> tuple[dict, dict]:
    """The first and the last complete lines of a metrics.jsonl (empty dicts if there are none)."""
    records = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut by a crash mid-write
            continue
    return (records[0], records[-1]) if records else ({}, {})


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested config as `{"train.max_steps": 200, ...}` of plain values (TensorBoard's hyper-parameters)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, Enum):
            out[f"{prefix}{k}"] = v.value
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return out
