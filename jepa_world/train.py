"""The training loop: one loop for a laptop CPU, one GPU, or many GPUs and nodes through Hugging Face Accelerate.

Launch with `jepa-world pretrain ...` (one process) or `accelerate launch -m jepa_world.cli pretrain ...` (several).
This is the only module that knows about Accelerate and distributed training; what is trained comes from a `Task`
(`jepa_world.tasks`): JEPA pretraining or world-model training.

Determinism and resumption: every source of randomness is a function of (seed, step): the data stream
(`StepSampler`), the masks (seeded by the micro-step), and the torch RNG, which is re-seeded from (seed, step, rank)
at every optimizer step (drop-path). The LR / WD / EMA schedules are pure functions of the step. A checkpoint is
taken at an optimizer-step boundary (never mid-accumulation) and with the weights, the optimizer and the step a
resumed run continues exactly; RNG states are saved and restored too, for anything else that draws from them.

Nothing is lost on a crash: checkpoints are written atomically (the previous one survives a crash mid-write), a
corrupt latest checkpoint makes resume fall back to the one before, metrics lines are flushed as written, a
non-finite loss or gradient stops the run (or skips the step) before the weights are touched, and SIGTERM / SIGINT
save a checkpoint at the next step boundary before exiting (preemption).
"""

from __future__ import annotations

import json
import math
import random
import signal
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from jepa_world import hub
from jepa_world.config import to_yaml
from jepa_world.data.build import build_dataset
from jepa_world.data.sampler import StepSampler, derive_seed
from jepa_world.schedules import build_schedule, cosine
from jepa_world.tasks import build_jepa, build_masks, param_groups, pretrain_task, world_model_task

__all__ = ["build_jepa", "build_masks", "check_batch_split", "fit", "param_groups", "pretrain", "train_world_model"]


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------
def build_schedules(cfg: DictConfig):
    """(lr, weight decay) schedules over optimizer steps; warmup / cooldown capped at max_steps."""
    o, total = cfg.optim, cfg.train.max_steps
    warmup = min(o.warmup_steps, total)
    lr_kwargs = dict(warmup_steps=warmup, peak=o.lr, start=o.start_lr)
    if o.lr_schedule == "warmup_cosine":
        lr_kwargs.update(total_steps=total, final=o.final_lr)
    elif o.lr_schedule == "warmup_stable_decay":
        lr_kwargs.update(total_steps=total, decay_steps=min(o.decay_steps, total - warmup), final=o.final_lr)
    return build_schedule(o.lr_schedule, **lr_kwargs), cosine(
        start=o.weight_decay, end=o.final_weight_decay, total_steps=total
    )


def check_batch_split(batch_size: int, world_size: int, grad_accum: int) -> None:
    """The global batch must split evenly over processes and accumulation micro-steps."""
    if batch_size < world_size:
        raise ValueError(f"train.batch_size={batch_size} is smaller than the number of processes ({world_size})")
    if batch_size % (world_size * grad_accum):
        raise ValueError(
            f"train.batch_size={batch_size} is not divisible by processes x grad_accum = {world_size} x {grad_accum}"
        )


def _check_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise PermissionError(f"train.output_dir={str(path)!r} is not writable: {err.strerror or err}") from None


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: dict) -> None:
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])


def _mixed_precision(cfg: DictConfig) -> str:
    if cfg.train.precision == "fp32":
        return "no"
    if cfg.train.precision == "bf16":
        return "bf16"
    # bf16 matmuls are ~100x slower than fp32 on CPUs without AMX: only use them on accelerators.
    return "bf16" if torch.cuda.is_available() else "no"


def _to_device(batch, device: torch.device):
    if hasattr(batch, "to"):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _load_resume_state(cfg: DictConfig, ckpt_dir: Path, is_main: bool) -> tuple[dict | None, Path | None]:
    """The checkpoint to resume from: an explicit path, or the newest readable one in the run (auto)."""
    if cfg.train.resume == "never":
        return None, None
    if cfg.train.resume != "auto":
        path = Path(cfg.train.resume)
        return hub.load_checkpoint(path), path
    for path in reversed(hub.list_checkpoints(ckpt_dir)):
        try:
            return hub.load_checkpoint(path), path
        except hub.CheckpointError as err:
            if is_main:
                warnings.warn(f"skipping unreadable checkpoint, falling back to the previous one: {err}", stacklevel=2)
    return None, None


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut by a crash mid-write
        return 1 << 62


class _MetricsLog:
    """JSONL metrics on the main process (one line per logging step, flushed at once: nothing lost on a crash)."""

    def __init__(self, path: Path, enabled: bool, *, start_step: int):
        if enabled and path.exists():
            # Lines past the resumed checkpoint belong to steps that are about to be recomputed: drop them.
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= start_step]
            path.write_text("".join(line + "\n" for line in kept))
        self.file = open(path, "a", buffering=1) if enabled else None  # noqa: SIM115

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@contextmanager
def _stop_on_signals():
    """Turn SIGTERM / SIGINT into a flag the loop checks at step boundaries (main thread only)."""
    flag = {"signal": None}

    def handler(signum, frame):
        flag["signal"] = signum

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no handlers, no graceful stop
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, int | float | str | bool) else str(v)
    return out


# --------------------------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------------------------
def pretrain(cfg: DictConfig) -> dict:
    """I-JEPA / V-JEPA pretraining as configured (see `fit`)."""
    return fit(cfg, lambda: pretrain_task(cfg, dataset=build_dataset(cfg.data, seed=cfg.seed)))


def train_world_model(cfg: DictConfig) -> dict:
    """Action-conditioned world-model training as configured by `wm.*` (see `fit`)."""
    return fit(cfg, lambda: world_model_task(cfg))


def fit(cfg: DictConfig, make_task) -> dict:
    """Train a task: the one loop behind every `jepa-world` training command.

    Args:
        cfg: resolved config (`train.*` and `optim.*` drive the loop).
        make_task: zero-argument callable building the `Task` (called after the run directory is checked, so bad
            data fails fast and nothing is built on an unwritable disk).

    Returns:
        Summary: final step, last logged metrics, run directory, whether this is the main process, and whether the
        run stopped early on a signal or on its `train.max_minutes` budget.

    Raises:
        ValueError: the batch does not split over processes and accumulation steps.
        PermissionError: the output directory is not writable.
        FloatingPointError: a non-finite loss / gradient (unless `train.skip_nonfinite`); the last checkpoint is intact.
    """
    kwargs = DistributedDataParallelKwargs(find_unused_parameters=False)
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(cfg),
        log_with="tensorboard" if cfg.train.tensorboard else None,
        project_dir=cfg.train.output_dir,
        kwargs_handlers=[kwargs],
    )
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    tc, o = cfg.train, cfg.optim
    check_batch_split(tc.batch_size, world, tc.grad_accum)
    micro_global = tc.batch_size // tc.grad_accum  # samples per micro-step, all processes
    micro_local = micro_global // world

    out = Path(tc.output_dir)
    ckpt_dir = out / "checkpoints"
    if main:
        _check_writable(out)
        (out / "config.yaml").write_text(to_yaml(cfg))
    accelerator.wait_for_everyone()

    torch.manual_seed(cfg.seed)  # identical init on every process (DDP also broadcasts rank 0's weights)
    task = make_task()
    lr_sched, wd_sched = build_schedules(cfg)
    optimizer = torch.optim.AdamW(task.param_groups, lr=lr_sched(0), betas=tuple(o.betas), weight_decay=0.0)

    start_step = 0
    state, resume_from = _load_resume_state(cfg, ckpt_dir, main)
    if state is not None:
        for name, module in task.components.items():
            hub.load_state_dict_strict(module, state[name], what=f"{resume_from} [{name}]")
        optimizer.load_state_dict(state["opt"])
        _set_rng_state(state["rng"])
        start_step = int(state["step"])
        if main:
            print(f"resumed from {resume_from} at step {start_step}")

    sampler = StepSampler(
        dataset_size=len(task.dataset),
        micro_batch_size=micro_global,
        rank=rank,
        world_size=world,
        seed=cfg.seed,
        start_micro_step=start_step * tc.grad_accum,
    )
    loader = DataLoader(
        task.dataset,
        batch_size=micro_local,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        persistent_workers=cfg.data.num_workers > 0,
        pin_memory=accelerator.device.type == "cuda",
        timeout=600 if cfg.data.num_workers > 0 else 0,  # a decoder hung inside a worker fails loudly, not forever
    )
    model, optimizer = accelerator.prepare(task.model, optimizer)
    if tc.tensorboard:
        accelerator.init_trackers("tensorboard", config=_flatten(OmegaConf.to_container(cfg)))

    def save(step: int) -> None:
        accelerator.wait_for_everyone()
        if main:
            payload = {name: m.state_dict() for name, m in task.components.items()}
            payload.update(
                task=task.name,
                meta=task.meta,
                opt=optimizer.state_dict(),
                step=step,
                world_size=world,
                rng=_rng_state(),
                config=to_yaml(cfg),
            )
            hub.save_checkpoint(hub.checkpoint_path(ckpt_dir, step), payload)
            hub.prune_checkpoints(ckpt_dir, tc.keep_last)
        accelerator.wait_for_everyone()

    log = _MetricsLog(out / "metrics.jsonl", enabled=main, start_step=start_step)
    bar = tqdm(total=tc.max_steps, initial=start_step, disable=not (main and tc.progress), desc=task.name)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    data_iter = iter(loader)
    last: dict[str, float] = {}
    counters = {"data_skipped": 0, "steps_skipped": 0}
    tic, samples_since = time.perf_counter(), 0
    deadline = tic + 60 * tc.max_minutes if tc.max_minutes > 0 else math.inf
    step, stopped_by = start_step, None
    rows = slice(rank * micro_local, (rank + 1) * micro_local)
    try:
        with _stop_on_signals() as stop:
            for step in range(start_step, tc.max_steps):
                torch.manual_seed(derive_seed(cfg.seed, step, rank))
                lr, wd = lr_sched(step), wd_sched(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                    group["weight_decay"] = wd if group.get("apply_wd", True) else 0.0
                log_now = (step + 1) % tc.log_every == 0 or step + 1 == tc.max_steps
                sums: dict[str, torch.Tensor] = {}
                for micro in range(tc.grad_accum):
                    item = next(data_iter)
                    counters["data_skipped"] += int(item["skipped"].sum()) if "skipped" in item else 0
                    batch = task.prepare(item, step * tc.grad_accum + micro, rows, micro_global)
                    batch = _to_device(batch, accelerator.device)
                    batch["diagnostics"] = log_now and micro == tc.grad_accum - 1
                    last_micro = micro == tc.grad_accum - 1
                    # Gradients are all-reduced only on the last micro-step of an optimizer step.
                    with nullcontext() if last_micro else accelerator.no_sync(model), accelerator.autocast():
                        loss, metrics = model(batch)
                    # Backward even through a non-finite loss: every process must reach the all-reduce; the
                    # global gradient norm below then tells every process the same thing.
                    accelerator.backward(loss / tc.grad_accum)
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + v.detach().float() / tc.grad_accum
                grad_norm = accelerator.clip_grad_norm_(params, o.grad_clip if o.grad_clip > 0 else math.inf)
                if not torch.isfinite(grad_norm):
                    optimizer.zero_grad(set_to_none=True)
                    if not tc.skip_nonfinite:
                        raise FloatingPointError(
                            f"non-finite loss or gradient at step {step} (loss={float(sums['loss']):.4g}, "
                            f"grad_norm={float(grad_norm):.4g}); the last checkpoint is intact. Lower optim.lr, "
                            "check the data, or set train.skip_nonfinite=true to skip such steps"
                        )
                    counters["steps_skipped"] += 1
                else:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    # EMA and other per-step hooks: once per optimizer step, never on accumulation micro-steps.
                    sums.update(
                        {k: torch.tensor(v, device=accelerator.device) for k, v in task.after_step(step).items()}
                    )
                samples_since += tc.batch_size
                bar.update(1)

                if log_now:
                    names = sorted(sums)
                    reduced = accelerator.reduce(torch.stack([sums[k] for k in names]), reduction="mean")
                    now = time.perf_counter()
                    last = {k: float(v) for k, v in zip(names, reduced.tolist())}
                    last.update(lr=lr, wd=wd, grad_norm=float(grad_norm), samples_per_s=samples_since / (now - tic))
                    last.update(counters)
                    tic, samples_since = now, 0
                    log.write({"step": step + 1, **last})
                    accelerator.log(last, step=step + 1)
                    bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{lr:.2e}", sps=f"{last['samples_per_s']:.1f}")

                # [signal, out of time]: summed over processes, so all of them stop at the same step.
                flags = torch.tensor(
                    [float(stop["signal"] is not None), float(time.perf_counter() >= deadline)],
                    device=accelerator.device,
                )
                if world > 1:
                    flags = accelerator.reduce(flags, reduction="sum")
                signalled, timed_out = bool(flags[0] > 0), bool(flags[1] > 0) and step + 1 < tc.max_steps
                if (step + 1) % tc.ckpt_every == 0 or step + 1 == tc.max_steps or signalled or timed_out:
                    save(step + 1)
                if signalled or timed_out:
                    stopped_by = (stop["signal"] or "peer") if signalled else "time"
                    if main:
                        why = "signal" if signalled else f"train.max_minutes={tc.max_minutes:g}"
                        print(f"stopped by {why} at step {step + 1}; checkpoint saved, rerun the command to resume")
                    break
    finally:
        bar.close()
        log.close()
        accelerator.end_training()
    return {
        "step": step + 1 if stopped_by else tc.max_steps,
        "metrics": last,
        "output_dir": str(out),
        "main_process": main,
        "stopped_by_signal": stopped_by not in (None, "time"),
        "stopped_by_time": stopped_by == "time",
    }
