"""The training loop: one loop for a laptop CPU, one GPU, or many GPUs and nodes through Hugging Face Accelerate.

Launch with `jepa-world pretrain ...` (one process) or `accelerate launch -m jepa_world.cli pretrain ...` (several).
This is the only module that knows about Accelerate and distributed training.

Determinism and resumption: every source of randomness is a function of (seed, step): the data stream
(`StepSampler`), the masks (seeded by the micro-step), and the torch RNG, which is re-seeded from (seed, step, rank)
at every optimizer step (drop-path). The LR / WD / EMA schedules are pure functions of the step. A checkpoint is
therefore taken at an optimizer-step boundary (never mid-accumulation) and needs only the weights, the optimizer and
the step to continue exactly; RNG states are saved too and restored for anything else that draws from them.
"""

from __future__ import annotations

import json
import random
import time
from contextlib import nullcontext
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
from jepa_world.ema import EMA
from jepa_world.masks import MultiBlock2DMasks, MultiBlock3DMasks
from jepa_world.models.jepa import JEPA
from jepa_world.registry import create_model
from jepa_world.schedules import build_schedule, constant, cosine, linear


# --------------------------------------------------------------------------------------------------------------------
# Builders (config -> objects)
# --------------------------------------------------------------------------------------------------------------------
def build_jepa(cfg: DictConfig) -> JEPA:
    """Encoder + predictor + EMA target from the registry names and a few kwargs."""
    m, p = cfg.model, cfg.predictor
    enc_kwargs = dict(
        img_size=cfg.data.image_size,
        patch_size=m.patch_size,
        num_frames=cfg.data.num_frames,
        tubelet_size=m.tubelet_size,
        pos_embed=m.pos_embed,
        drop_path_rate=m.drop_path_rate,
        act_checkpoint=m.act_checkpoint,
    )
    if m.depth is not None:
        enc_kwargs["depth"] = m.depth
    encoder = create_model(m.name, **enc_kwargs)
    pred_kwargs = dict(
        grid_size=encoder.grid_size,
        embed_dim=encoder.embed_dim,
        num_mask_tokens=num_mask_configs(cfg),
        pos_embed=m.pos_embed,
        act_checkpoint=m.act_checkpoint,
    )
    overrides = {"predictor_embed_dim": p.embed_dim, "depth": p.depth, "num_heads": p.num_heads}
    pred_kwargs.update({k: v for k, v in overrides.items() if v is not None})
    predictor = create_model(p.name, **pred_kwargs)
    return JEPA(encoder=encoder, predictor=predictor, loss=cfg.loss)


def num_mask_configs(cfg: DictConfig) -> int:
    return len(cfg.masks.num_blocks) if cfg.data.num_frames > 1 else 1


def build_masks(cfg: DictConfig, grid_size: tuple[int, ...]) -> MultiBlock2DMasks | MultiBlock3DMasks:
    """I-JEPA multi-block masks for image grids, V-JEPA tubes for video grids."""
    mc = cfg.masks
    if len(grid_size) == 2:
        return MultiBlock2DMasks(
            grid_size=tuple(grid_size),
            num_targets=mc.num_targets,
            target_scale=tuple(mc.target_scale),
            target_aspect=tuple(mc.target_aspect),
            context_scale=tuple(mc.context_scale),
            min_keep=mc.min_keep,
            seed=cfg.seed,
        )
    from jepa_world.masks import BlockSpec

    specs = [
        BlockSpec(num_blocks=n, spatial_scale=s, temporal_scale=t, aspect_ratio=tuple(mc.target_aspect))
        for n, s, t in zip(mc.num_blocks, mc.spatial_scale, mc.temporal_scale)
    ]
    return MultiBlock3DMasks(grid_size=tuple(grid_size), specs=specs, seed=cfg.seed)


def build_schedules(cfg: DictConfig):
    """(lr, weight decay, EMA momentum) schedules over optimizer steps."""
    o, total = cfg.optim, cfg.train.max_steps
    warmup = min(o.warmup_steps, total)
    lr_kwargs = dict(warmup_steps=warmup, peak=o.lr, start=o.start_lr)
    if o.lr_schedule == "warmup_cosine":
        lr_kwargs.update(total_steps=total, final=o.final_lr)
    elif o.lr_schedule == "warmup_stable_decay":
        lr_kwargs.update(total_steps=total, decay_steps=min(o.decay_steps, total - warmup), final=o.final_lr)
    lr = build_schedule(o.lr_schedule, **lr_kwargs)
    wd = cosine(start=o.weight_decay, end=o.final_weight_decay, total_steps=total)
    ema = linear(start=o.ema[0], end=o.ema[1], total_steps=total) if o.ema_schedule == "linear" else constant(o.ema[0])
    return lr, wd, ema


def param_groups(modules: list[torch.nn.Module]) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on biases, norms and other 1-D parameters."""
    decay, no_decay = [], []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]


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


def _resolve_resume(cfg: DictConfig, ckpt_dir: Path) -> Path | None:
    if cfg.train.resume == "never":
        return None
    if cfg.train.resume == "auto":
        found = hub.list_checkpoints(ckpt_dir)
        return found[-1] if found else None
    return Path(cfg.train.resume)


def _mixed_precision(cfg: DictConfig) -> str:
    if cfg.train.precision == "fp32":
        return "no"
    if cfg.train.precision == "bf16":
        return "bf16"
    # bf16 matmuls are ~100x slower than fp32 on CPUs without AMX: only use them on accelerators.
    return "bf16" if torch.cuda.is_available() else "no"


class _MetricsLog:
    """JSONL metrics on the main process (one line per logging step, flushed at once: nothing lost on a crash)."""

    def __init__(self, path: Path, enabled: bool):
        self.file = open(path, "a", buffering=1) if enabled else None  # noqa: SIM115

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


# --------------------------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------------------------
def pretrain(cfg: DictConfig) -> dict:
    """Run I-JEPA / V-JEPA pretraining as configured; return a summary (final step, last metrics, paths).

    Raises:
        ValueError: the batch does not split over processes and accumulation steps.
        PermissionError: the output directory is not writable.
        FloatingPointError: the loss became non-finite (the last checkpoint stays intact).
    """
    kwargs = DistributedDataParallelKwargs(find_unused_parameters=False)
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(cfg),
        log_with="tensorboard" if cfg.train.tensorboard else None,
        project_dir=cfg.train.output_dir,
        kwargs_handlers=[kwargs],
    )
    world, rank, main = accelerator.num_processes, accelerator.process_index, accelerator.is_main_process
    tc = cfg.train
    check_batch_split(tc.batch_size, world, tc.grad_accum)
    micro_global = tc.batch_size // tc.grad_accum  # samples per micro-step, all processes
    micro_local = micro_global // world

    out = Path(tc.output_dir)
    ckpt_dir = out / "checkpoints"
    if main:
        _check_writable(out)
        (out / "config.yaml").write_text(to_yaml(cfg))
    accelerator.wait_for_everyone()
    dataset = build_dataset(cfg.data, seed=cfg.seed)  # first: a bad data.index fails before any model is built

    torch.manual_seed(cfg.seed)  # identical init on every process (DDP also broadcasts rank 0's weights)
    model = build_jepa(cfg)
    masks = build_masks(cfg, model.encoder.grid_size)
    lr_sched, wd_sched, ema_sched = build_schedules(cfg)
    o = cfg.optim
    optimizer = torch.optim.AdamW(
        param_groups([model.encoder, model.predictor]), lr=lr_sched(0), betas=tuple(o.betas), weight_decay=0.0
    )
    ema = EMA(online=model.encoder, target=model.target_encoder, momentum=ema_sched)

    start_step = 0
    resume_from = _resolve_resume(cfg, ckpt_dir)
    if resume_from is not None:
        state = hub.load_checkpoint(resume_from)
        hub.load_state_dict_strict(model.encoder, state["encoder"], what=f"{resume_from} [encoder]")
        hub.load_state_dict_strict(model.target_encoder, state["target_encoder"], what=f"{resume_from} [target]")
        hub.load_state_dict_strict(model.predictor, state["predictor"], what=f"{resume_from} [predictor]")
        optimizer.load_state_dict(state["opt"])
        _set_rng_state(state["rng"])
        start_step = int(state["step"])
        if main:
            print(f"resumed from {resume_from} at step {start_step}")

    sampler = StepSampler(
        dataset_size=len(dataset),
        micro_batch_size=micro_global,
        rank=rank,
        world_size=world,
        seed=cfg.seed,
        start_micro_step=start_step * tc.grad_accum,
    )
    loader = DataLoader(
        dataset,
        batch_size=micro_local,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        persistent_workers=cfg.data.num_workers > 0,
        pin_memory=accelerator.device.type == "cuda",
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    if tc.tensorboard:
        flat = {
            k: v if isinstance(v, int | float | str | bool) else str(v)
            for k, v in _flatten(OmegaConf.to_container(cfg)).items()
        }
        accelerator.init_trackers("tensorboard", config=flat)

    log = _MetricsLog(out / "metrics.jsonl", enabled=main)
    bar = tqdm(total=tc.max_steps, initial=start_step, disable=not (main and tc.progress), desc="pretrain")
    data_iter = iter(loader)
    last: dict[str, float] = {}
    skipped_total = 0
    tic, samples_since = time.perf_counter(), 0
    step = start_step
    try:
        for step in range(start_step, tc.max_steps):
            torch.manual_seed(derive_seed(cfg.seed, step, rank))
            lr, wd = lr_sched(step), wd_sched(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
                group["weight_decay"] = wd if group.get("apply_wd", True) else 0.0
            log_now = (step + 1) % tc.log_every == 0 or step + 1 == tc.max_steps
            metric_sums: dict[str, torch.Tensor] = {}
            for micro in range(tc.grad_accum):
                item = next(data_iter)
                skipped_total += int(item["skipped"].sum()) if "skipped" in item else 0
                micro_step = step * tc.grad_accum + micro
                mask_sets = [
                    m.select(slice(rank * micro_local, (rank + 1) * micro_local)).to(accelerator.device)
                    for m in masks(micro_global, step=micro_step)
                ]
                batch = {
                    "x": item["x"].to(accelerator.device, non_blocking=True),
                    "masks": mask_sets,
                    "diagnostics": log_now and micro == tc.grad_accum - 1,
                }
                last_micro = micro == tc.grad_accum - 1
                # Gradients are all-reduced only on the last micro-step of an optimizer step.
                with nullcontext() if last_micro else accelerator.no_sync(model), accelerator.autocast():
                    loss, metrics = model(batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss {loss.item()} at step {step} (micro-step {micro}); "
                        "the last checkpoint is intact; lower optim.lr or check the data"
                    )
                accelerator.backward(loss / tc.grad_accum)
                for k, v in metrics.items():
                    metric_sums[k] = metric_sums.get(k, 0.0) + v.float() / tc.grad_accum
            grad_norm = (
                accelerator.clip_grad_norm_(model.parameters(), o.grad_clip) if o.grad_clip > 0 else torch.tensor(0.0)
            )
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            # EMA once per optimizer step, never on accumulation micro-steps.
            momentum = ema.update(step)
            samples_since += tc.batch_size
            bar.update(1)

            if log_now:
                names = sorted(metric_sums)
                reduced = accelerator.reduce(torch.stack([metric_sums[k] for k in names]), reduction="mean")
                now = time.perf_counter()
                last = {k: float(v) for k, v in zip(names, reduced.tolist())}
                last.update(
                    lr=lr,
                    wd=wd,
                    ema=momentum,
                    grad_norm=float(grad_norm),
                    samples_per_s=samples_since / (now - tic),
                    data_skipped=skipped_total,
                )
                tic, samples_since = now, 0
                log.write({"step": step + 1, **last})
                accelerator.log(last, step=step + 1)
                bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{lr:.2e}", sps=f"{last['samples_per_s']:.1f}")
            if (step + 1) % tc.ckpt_every == 0 or step + 1 == tc.max_steps:
                _save(accelerator, cfg, ckpt_dir, step + 1, model, optimizer)
    finally:
        bar.close()
        log.close()
        accelerator.end_training()
    return {"step": tc.max_steps, "metrics": last, "output_dir": str(out), "main_process": main}


def _save(accelerator: Accelerator, cfg: DictConfig, ckpt_dir: Path, step: int, model, optimizer) -> None:
    """Main process writes an atomic checkpoint of everything needed to resume at `step`."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        jepa: JEPA = accelerator.unwrap_model(model)
        state = {
            "encoder": jepa.encoder.state_dict(),
            "target_encoder": jepa.target_encoder.state_dict(),
            "predictor": jepa.predictor.state_dict(),
            "opt": optimizer.state_dict(),
            "step": step,
            "world_size": accelerator.num_processes,
            "rng": _rng_state(),
            "config": to_yaml(cfg),
        }
        hub.save_checkpoint(hub.checkpoint_path(ckpt_dir, step), state)
        hub.prune_checkpoints(ckpt_dir, cfg.train.keep_last)
    accelerator.wait_for_everyone()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
