"""The training loop: one loop for a laptop CPU, one GPU, or many GPUs and nodes through Hugging Face Accelerate.

Launch with `jepa-world pretrain ...` (one process) or `accelerate launch -m jepa_world.cli pretrain ...` (several).
This is the only module that knows about Accelerate and distributed training; what is trained comes from a `Task`
(`jepa_world.training.tasks`): JEPA pretraining or world-model training.

Determinism and resumption: every source of randomness is a function of (seed, step): the data stream
(`StepSampler`), the masks (seeded by the micro-step), and the torch RNG, which is re-seeded from (seed, step, rank)
at every optimizer step (drop-path). The LR / WD / EMA schedules are pure functions of the step. A checkpoint is
taken at an optimizer-step boundary (never mid-accumulation) and with the weights, the optimizer and the step a
resumed run continues exactly; RNG states are saved and restored too, for anything else that draws from them.

Nothing is lost on a crash: checkpoints are written atomically (the previous one survives a crash mid-write), a
corrupt latest checkpoint makes resume fall back to the one before, metrics lines are flushed as written, a
non-finite loss or gradient stops the run (or skips the step) before the weights are touched, and SIGTERM / SIGINT
save a checkpoint at the next step boundary before exiting (preemption). The run folder's pieces are in
`run_state.py`; checkpoint files go through `jepa_world.checkpoints.io`.

`fit` reads as its steps: set up the processes and the run folder, build the task and its optimizer, resume, then per
optimizer step: accumulate gradients over micro-steps, step (or skip / stop on a non-finite gradient), log, and save
or stop at a step boundary.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from jepa_world.atomic import atomic_write_text, remove_stale_temporaries
from jepa_world.checkpoints.io import checkpoint_path, prune_checkpoints, save_checkpoint
from jepa_world.checkpoints.state_dict import load_state_dict_strict
from jepa_world.config import to_yaml
from jepa_world.data.sampler import StepSampler, derive_seed
from jepa_world.factory import build_schedules, check_before_run
from jepa_world.training.policy_task import policy_task
from jepa_world.training.run_state import (
    MetricsLog,
    RunLock,
    check_resumable,
    check_writable,
    flatten,
    load_resume_state,
    logged_ends,
    rng_state,
    set_rng_state,
    stop_on_signals,
)
from jepa_world.training.tasks import Task, pretrain_task, world_model_task
from jepa_world.training.validation import evaluate

__all__ = ["check_batch_split", "fit", "pretrain", "train_policy", "train_world_model"]


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------
def check_batch_split(batch_size: int, world_size: int, grad_accum: int) -> None:
    """The global batch must split evenly over processes and accumulation micro-steps."""
    if batch_size < world_size:
        raise ValueError(f"train.batch_size={batch_size} is smaller than the number of processes ({world_size})")
    if batch_size % (world_size * grad_accum):
        raise ValueError(
            f"train.batch_size={batch_size} is not divisible by processes x grad_accum = {world_size} x {grad_accum}"
        )


def _mixed_precision(cfg: DictConfig) -> str:
    if cfg.train.precision == "fp32":
        return "no"
    if cfg.train.precision == "bf16":
        return "bf16"
    # bf16 matmuls are ~100x slower than fp32 on CPUs without AMX: only use them on accelerators.
    return "bf16" if torch.cuda.is_available() else "no"


def _to_device(batch, device: torch.device, *, copy: bool = False):
    """`batch` on `device`; `copy`: every tensor a fresh one, so no input is a view of another (a view makes
    torch.compile guard on the strides of the tensor it was sliced from, and recompile when they change)."""
    if hasattr(batch, "to"):
        return batch.to(device, copy=copy)  # a tensor or a MaskSet
    if isinstance(batch, dict):
        return {k: _to_device(v, device, copy=copy) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_to_device(v, device, copy=copy) for v in batch)
    return batch


def _make_accelerator(cfg: DictConfig) -> Accelerator:
    return Accelerator(
        mixed_precision=_mixed_precision(cfg),
        log_with="tensorboard" if cfg.train.tensorboard else None,
        project_dir=cfg.train.output_dir,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )


def _make_loader(task: Task, cfg: DictConfig, accelerator: Accelerator, *, start_step: int) -> DataLoader:
    """This process's rows of the global (seed, step)-determined data stream, starting at `start_step`."""
    tc, world = cfg.train, accelerator.num_processes
    micro_global = tc.batch_size // tc.grad_accum
    sampler = StepSampler(
        dataset_size=len(task.dataset),
        micro_batch_size=micro_global,
        rank=accelerator.process_index,
        world_size=world,
        seed=cfg.seed,
        start_micro_step=start_step * tc.grad_accum,
    )
    return DataLoader(
        task.dataset,
        batch_size=micro_global // world,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        persistent_workers=cfg.data.num_workers > 0,
        pin_memory=accelerator.device.type == "cuda",
        timeout=600 if cfg.data.num_workers > 0 else 0,  # a decoder hung inside a worker fails loudly, not forever
    )


class _Run:
    """One invocation of `fit`: the processes, the task and its optimizer, and the run folder."""

    def __init__(self, cfg: DictConfig, make_task: Callable[[], Task], accelerator: Accelerator):
        self.cfg, tc = cfg, cfg.train
        self.accelerator = acc = accelerator
        self.world, self.rank, self.main = acc.num_processes, acc.process_index, acc.is_main_process
        check_batch_split(tc.batch_size, self.world, tc.grad_accum)
        self.micro_global = tc.batch_size // tc.grad_accum  # samples per micro-step, all processes
        micro_local = self.micro_global // self.world
        self.rows = slice(self.rank * micro_local, (self.rank + 1) * micro_local)

        self.out = Path(tc.output_dir)
        self.ckpt_dir = self.out / "checkpoints"
        if self.main:
            remove_stale_temporaries(self.ckpt_dir)  # left by a save that was killed
        acc.wait_for_everyone()
        # Read (never write) what the folder holds first: a refused resume leaves the folder as it was.
        self.state, self.resume_from = load_resume_state(cfg, self.ckpt_dir, self.main)

        torch.manual_seed(cfg.seed)  # identical init on every process (DDP also broadcasts rank 0's weights)
        self.task = make_task()
        if len(self.task.dataset) < tc.batch_size:
            raise ValueError(
                f"train.batch_size={tc.batch_size} is larger than the dataset ({len(self.task.dataset)} items); "
                "lower train.batch_size or add data"
            )
        if not self.task.uses_gradients and self.world > 1:
            raise ValueError(
                f"the {self.task.name} task is gradient-free (CMA-ES): run it in one process, not {self.world}"
            )
        if self.state is not None:
            check_resumable(cfg, self.task.name, self.state, self.resume_from, tree=self.task.meta.get("tree"),
                            meta=self.task.meta)  # fmt: skip
        self.lr_sched, self.wd_sched = build_schedules(cfg)
        self.optimizer = torch.optim.AdamW(
            self.task.param_groups,
            lr=self.lr_sched(0),
            betas=tuple(cfg.optim.betas),
            weight_decay=0.0,
            fused=True if cfg.optim.fused else None,
        )
        self.counters = {"data_skipped": 0, "steps_skipped": 0}

    def resume(self) -> int:
        """Load the checkpoint to resume from (if any) into the task and the optimizer, then write config.yaml.

        Returns:
            The start step.
        """
        state, resume_from, step = self.state, self.resume_from, 0
        if state is not None:
            for name, module in self.task.components.items():
                load_state_dict_strict(module, state[name], what=f"{resume_from} [{name}]")
            self.optimizer.load_state_dict(state["opt"])
            set_rng_state(state["rng"])
            step = int(state["step"])
            if self.main:
                print(f"resumed from {resume_from} at step {step}")
        self.state = None  # the loaded tensors now live in the modules
        if self.main:  # only now: every check passed, so the folder's config describes its checkpoints
            atomic_write_text(self.out / "config.yaml", to_yaml(self.cfg))
        self.accelerator.wait_for_everyone()
        return step

    def save(self, step: int) -> None:
        """Checkpoint at an optimizer-step boundary (main process writes, every process waits)."""
        acc, task = self.accelerator, self.task
        acc.wait_for_everyone()
        if self.main:
            payload = {name: m.state_dict() for name, m in task.components.items()}
            payload.update(
                task=task.name,
                meta=task.meta,
                opt=self.optimizer.state_dict(),
                step=step,
                world_size=self.world,
                rng=rng_state(),
                config=to_yaml(self.cfg),
            )
            save_checkpoint(checkpoint_path(self.ckpt_dir, step), payload)
            prune_checkpoints(self.ckpt_dir, self.cfg.train.keep_last)
        acc.wait_for_everyone()

    def set_schedules(self, step: int) -> tuple[float, float]:
        lr, wd = self.lr_sched(step), self.wd_sched(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
            group["weight_decay"] = wd if group.get("apply_wd", True) else 0.0
        return lr, wd

    def accumulate(self, model, data_iter, step: int, *, diagnostics: bool) -> dict[str, torch.Tensor]:
        """Forward and backward over the micro-steps of one optimizer step; returns the metrics averaged over them."""
        acc, tc = self.accelerator, self.cfg.train
        sums: dict[str, torch.Tensor] = {}
        for micro in range(tc.grad_accum):
            item = next(data_iter)
            self.counters["data_skipped"] += int(item["skipped"].sum()) if "skipped" in item else 0
            batch = self.task.prepare(item, step * tc.grad_accum + micro, self.rows, self.micro_global)
            batch = _to_device(batch, acc.device, copy=tc.compile)
            last_micro = micro == tc.grad_accum - 1
            batch["diagnostics"] = diagnostics and last_micro
            # Gradients are all-reduced only on the last micro-step of an optimizer step.
            with nullcontext() if last_micro else acc.no_sync(model), acc.autocast():
                loss, metrics = model(batch)
            # Backward even through a non-finite loss: every process must reach the all-reduce; the global gradient
            # norm then tells every process the same thing.
            if self.task.uses_gradients:
                acc.backward(loss / tc.grad_accum)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float() / tc.grad_accum
        return sums

    def apply_update(self, params: list, sums: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        """Clip, then step the optimizer and the per-step hooks (EMA), or skip / stop on a non-finite gradient."""
        acc, tc, clip = self.accelerator, self.cfg.train, self.cfg.optim.grad_clip
        grad_norm = acc.clip_grad_norm_(params, clip if clip > 0 else math.inf)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            if not tc.skip_nonfinite:
                raise FloatingPointError(
                    f"non-finite loss or gradient at step {step} (loss={float(sums['loss']):.4g}, "
                    f"grad_norm={float(grad_norm):.4g}); the last checkpoint is intact. Lower optim.lr, "
                    "check the data, or set train.skip_nonfinite=true to skip such steps"
                )
            self.counters["steps_skipped"] += 1
        else:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            # EMA and other per-step hooks: once per optimizer step, never on accumulation micro-steps.
            sums.update({k: torch.tensor(v, device=acc.device) for k, v in self.task.after_step(step).items()})
        return grad_norm

    def validate(self) -> dict[str, float]:
        """`val_*` metrics of the task's model on its held-out data (main process only: no collective)."""
        device = self.accelerator.device
        return evaluate(self.task.model, self.task.val_dataset, self.task.prepare,
                        batch_size=self.micro_global, to_device=lambda b: _to_device(b, device),
                        autocast=self.accelerator.autocast)  # fmt: skip

    def stop_votes(self, signalled: bool, out_of_time: bool) -> tuple[bool, bool]:
        """[signal, out of time], summed over processes, so all of them stop at the same step."""
        flags = torch.tensor([float(signalled), float(out_of_time)], device=self.accelerator.device)
        if self.world > 1:
            flags = self.accelerator.reduce(flags, reduction="sum")
        return bool(flags[0] > 0), bool(flags[1] > 0)


# --------------------------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------------------------
def pretrain(cfg: DictConfig) -> dict:
    """I-JEPA / V-JEPA pretraining as configured (see `fit`)."""
    check_before_run(cfg)
    return fit(cfg, lambda: pretrain_task(cfg))


def train_world_model(cfg: DictConfig) -> dict:
    """Action-conditioned world-model training as configured by `wm.*` (see `fit`)."""
    check_before_run(cfg, world_model=True)
    return fit(cfg, lambda: world_model_task(cfg))


def train_policy(cfg: DictConfig) -> dict:
    """A goal-conditioned policy learned inside the world model `policy.world_model` (see `policy_task`)."""
    return fit(cfg, lambda: policy_task(cfg))


def fit(cfg: DictConfig, make_task: Callable[[], Task]) -> dict:
    """Train a task: the one loop behind every `jepa-world` training command.

    Args:
        cfg: resolved config (`train.*` and `optim.*` drive the loop).
        make_task: zero-argument callable building the `Task` (called after the run directory is checked, so bad
            data fails fast and nothing is built on an unwritable disk).

    Returns:
        Summary: final step, last logged metrics, run directory, whether this is the main process, and whether the
        run stopped early on a signal or on its `train.max_minutes` budget.

    Raises:
        ValueError: the batch does not split over processes and accumulation steps, or exceeds the dataset.
        PermissionError: the output directory is not writable.
        RuntimeError: another run holds the folder, or the resume is refused (`train.resume=never` over an earlier
            run; a checkpoint of another task or architecture): nothing in the folder has been changed.
        FloatingPointError: a non-finite loss / gradient (unless `train.skip_nonfinite`); the last checkpoint is intact.
    """
    acc = _make_accelerator(cfg)
    out = Path(cfg.train.output_dir)
    created = [p for p in (out, *out.parents) if not p.exists()] if acc.is_main_process else []  # deepest first
    if acc.is_main_process:
        check_writable(out)  # creates the folder the lock lives in
    try:
        with RunLock(out, enabled=acc.is_main_process):  # a run that fails leaves .lock as it found it
            return _fit(cfg, make_task, acc)
    except BaseException:
        for folder in created:  # a refused run leaves no folder it made
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
        raise


def _fit(cfg: DictConfig, make_task: Callable[[], Task], acc: Accelerator) -> dict:
    run = _Run(cfg, make_task, acc)
    tc, task = cfg.train, run.task
    start_step = run.resume()
    if start_step >= tc.max_steps:  # a finished run started again: nothing to train, say so with its last numbers
        acc.end_training()
        last = {k: v for k, v in logged_ends(run.out / "metrics.jsonl")[1].items() if k != "step"}
        if run.main:
            print(f"already finished: {start_step} of train.max_steps={tc.max_steps} steps done in {run.out}")
        return {"step": start_step, "metrics": last, "output_dir": str(run.out), "main_process": run.main,
                "stopped_by_signal": False, "stopped_by_time": False, "already_finished": True}  # fmt: skip
    if task.setup is not None:  # before DDP wraps the model: every process made the same weights
        setup_metrics = task.setup(start_step == 0)
        if run.main and start_step == 0 and setup_metrics:
            atomic_write_text(run.out / "setup.json", json.dumps(setup_metrics, indent=1) + "\n")
    loader = _make_loader(task, cfg, acc, start_step=start_step)
    model, run.optimizer = acc.prepare(task.model, run.optimizer)
    if tc.compile:  # around the DDP wrapper (as torch recommends); the task's modules and their keys stay as they are
        # One graph, not one per DDP bucket: the split graphs' backward fails on CPU (torch 2.14, gloo: "expected
        # Tensor() for op: input"); gradients are then all-reduced after the backward instead of during it.
        if run.world > 1:
            torch._dynamo.config.optimize_ddp = False
        model = torch.compile(model, dynamic=True)  # dynamic: one graph for the masks' changing token counts
    if tc.tensorboard:
        acc.init_trackers("tensorboard", config=flatten(OmegaConf.to_container(cfg)))

    log = MetricsLog(run.out / "metrics.jsonl", enabled=run.main, start_step=start_step)
    bar = tqdm(total=tc.max_steps, initial=start_step, disable=not (run.main and tc.progress), desc=task.name)
    params = [p for group in run.optimizer.param_groups for p in group["params"]]
    data_iter = iter(loader)
    last: dict[str, float] = {}
    tic, samples_since = time.perf_counter(), 0
    deadline = tic + 60 * tc.max_minutes if tc.max_minutes > 0 else math.inf
    step, stopped_by = start_step, None
    try:
        with stop_on_signals(grace_s=tc.stop_grace_s) as stop:
            for step in range(start_step, tc.max_steps):
                torch.manual_seed(derive_seed(cfg.seed, step, run.rank))
                lr, wd = run.set_schedules(step)
                log_now = (step + 1) % tc.log_every == 0 or step + 1 == tc.max_steps
                sums = run.accumulate(model, data_iter, step, diagnostics=log_now)
                grad_norm = run.apply_update(params, sums, step)
                samples_since += tc.batch_size
                bar.update(1)

                if log_now:
                    names = sorted(sums)
                    reduced = acc.reduce(torch.stack([sums[k] for k in names]), reduction="mean")
                    now = time.perf_counter()
                    last = {k: float(v) for k, v in zip(names, reduced.tolist())}
                    last.update(lr=lr, wd=wd, grad_norm=float(grad_norm), samples_per_s=samples_since / (now - tic))
                    last.update(run.counters)
                    if task.val_dataset is not None and run.main:  # held-out metrics; the training is untouched
                        last.update(run.validate())
                        now = time.perf_counter()  # samples_per_s leaves the evaluation out
                    tic, samples_since = now, 0
                    log.write({"step": step + 1, **last})
                    acc.log(last, step=step + 1)
                    bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{lr:.2e}", sps=f"{last['samples_per_s']:.1f}")

                signalled, timed_out = run.stop_votes(stop["signal"] is not None, time.perf_counter() >= deadline)
                timed_out = timed_out and step + 1 < tc.max_steps
                if (step + 1) % tc.ckpt_every == 0 or step + 1 == tc.max_steps or signalled or timed_out:
                    run.save(step + 1)
                if signalled or timed_out:
                    stopped_by = (stop["signal"] or "peer") if signalled else "time"
                    if run.main:
                        why = "signal" if signalled else f"train.max_minutes={tc.max_minutes:g}"
                        print(f"stopped by {why} at step {step + 1}; checkpoint saved, rerun the command to resume")
                    break
    finally:
        bar.close()
        log.close()
        acc.end_training()
    health = _report_health(task, run) if stopped_by is None else ""
    return {
        "step": step + 1 if stopped_by else tc.max_steps,
        "metrics": last,
        "output_dir": str(run.out),
        "main_process": run.main,
        "stopped_by_signal": stopped_by not in (None, "time"),
        "stopped_by_time": stopped_by == "time",
        "already_finished": False,
        "health": health,
    }


def _report_health(task: Task, run: _Run) -> str:
    """Print the task's health summary (first vs last logged step) and warn when it finds a problem."""
    if task.health is None or not run.main:
        return ""
    summary, warning = task.health(*logged_ends(run.out / "metrics.jsonl"))
    if summary:
        print(f"health: {summary}")
    if warning:
        warnings.warn(warning, stacklevel=3)
        print(f"warning: {warning}")
    return summary
