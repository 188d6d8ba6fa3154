"""Training tasks: what the one training loop trains, built from the config.

A `Task` bundles a model whose `forward(batch) -> (loss, metrics)`, its dataset, the optimizer's parameter groups,
the named modules a checkpoint holds, a function that turns a DataLoader item into a model batch, and a hook run once
per optimizer step (the EMA update). The loop in `train.py` knows nothing else about the task, and the tasks know
nothing about processes or devices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset

from jepa_world.data.build import build_dataset
from jepa_world.ema import EMA
from jepa_world.masks import BlockSpec, MultiBlock2DMasks, MultiBlock3DMasks
from jepa_world.models.jepa import JEPA
from jepa_world.registry import create_model
from jepa_world.schedules import constant, linear


@dataclass
class Task:
    """Everything the loop needs from one kind of training.

    Attributes:
        name: run kind, written into checkpoints ("pretrain", "world_model").
        model: `forward(batch) -> (loss, metrics)`.
        dataset: indexed by `(index, aug_seed)` keys.
        param_groups: AdamW groups; a group may carry `lr_scale` (fine-tuning LR) and `apply_wd` (False: no decay).
        components: named modules saved in checkpoints (keys users of the releases know: encoder, predictor...).
        prepare: `(item, micro_step, rows, global_batch) -> batch`: adds masks etc. for this process's rows.
        after_step: called once per optimizer step with the step index; returns metrics (e.g. the EMA momentum).
    """

    name: str
    model: nn.Module
    dataset: Dataset
    param_groups: list[dict]
    components: dict[str, nn.Module]
    prepare: Callable[[dict, int, slice, int], dict]
    after_step: Callable[[int], dict[str, float]] = field(default=lambda step: {})


def param_groups(modules: list[nn.Module], *, lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on biases, norms and other 1-D parameters."""
    decay, no_decay = [], []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "apply_wd": True, "lr_scale": lr_scale},
        {"params": no_decay, "apply_wd": False, "lr_scale": lr_scale},
    ]


# --------------------------------------------------------------------------------------------------------------------
# JEPA pretraining
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
        num_mask_tokens=len(cfg.masks.num_blocks) if cfg.data.num_frames > 1 else 1,
        pos_embed=m.pos_embed,
        act_checkpoint=m.act_checkpoint,
    )
    overrides = {"predictor_embed_dim": p.embed_dim, "depth": p.depth, "num_heads": p.num_heads}
    pred_kwargs.update({k: v for k, v in overrides.items() if v is not None})
    predictor = create_model(p.name, **pred_kwargs)
    return JEPA(encoder=encoder, predictor=predictor, loss=cfg.loss)


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
    specs = [
        BlockSpec(num_blocks=n, spatial_scale=s, temporal_scale=t, aspect_ratio=tuple(mc.target_aspect))
        for n, s, t in zip(mc.num_blocks, mc.spatial_scale, mc.temporal_scale)
    ]
    return MultiBlock3DMasks(grid_size=tuple(grid_size), specs=specs, seed=cfg.seed)


def ema_schedule(cfg: DictConfig):
    o = cfg.optim
    if o.ema_schedule == "linear":
        return linear(start=o.ema[0], end=o.ema[1], total_steps=cfg.train.max_steps)
    return constant(o.ema[0])


def pretrain_task(cfg: DictConfig, *, dataset: Dataset | None = None) -> Task:
    """I-JEPA / V-JEPA: masks are a pure function of (seed, micro-step), made for the global batch then sliced."""
    dataset = dataset if dataset is not None else build_dataset(cfg.data, seed=cfg.seed)
    model = build_jepa(cfg)
    masks = build_masks(cfg, model.encoder.grid_size)
    ema = EMA(online=model.encoder, target=model.target_encoder, momentum=ema_schedule(cfg))

    def prepare(item: dict, micro_step: int, rows: slice, global_batch: int) -> dict:
        # The same global masks on any number of processes: 1 and P processes train on identical batches.
        return {"x": item["x"], "masks": [m.select(rows) for m in masks(global_batch, step=micro_step)]}

    return Task(
        name="pretrain",
        model=model,
        dataset=dataset,
        param_groups=param_groups([model.encoder, model.predictor]),
        components={"encoder": model.encoder, "target_encoder": model.target_encoder, "predictor": model.predictor},
        prepare=prepare,
        after_step=lambda step: {"ema": ema.update(step)},
    )
