"""Config -> modules: the one place that turns a resolved config into models, masks, loss terms and schedules.

No file I/O here: a pretrained encoder is loaded by the caller (`checkpoints.load_encoder`) and passed in, so both
the training tasks and the checkpoint loaders build through these functions and nothing below imports them back.
"""

from __future__ import annotations

import difflib

from omegaconf import DictConfig, OmegaConf
from torch import nn

from jepa_world.models import create_model, list_models
from jepa_world.models.jepa import JEPA
from jepa_world.models.small import LiftedReadout, TokenReadout
from jepa_world.models.world_model import WorldModel
from jepa_world.objectives.losses import (
    CovarianceTerm,
    InverseDynamicsTerm,
    SmoothnessTerm,
    TemporalVarianceTerm,
    VarianceTerm,
)
from jepa_world.objectives.masks import BlockSpec, MultiBlock2DMasks, MultiBlock3DMasks
from jepa_world.objectives.schedules import Schedule, build_schedule, constant, cosine, linear


def check_before_run(cfg: DictConfig, *, world_model: bool = False) -> None:
    """Every registered name the config uses exists, and a data source is given (before any folder is touched).

    Raises:
        ValueError: naming the key, the unknown name and the closest registered ones.
    """
    if not world_model and cfg.data.source == "index" and cfg.data.index is None:
        raise ValueError("data.source=index needs data.index=PATH (a folder of images or videos, or an index file)")
    keys = ("wm.encoder", "wm.predictor") if world_model else ("model.name", "predictor.name")
    for key in keys:
        name = OmegaConf.select(cfg, key)
        if key == "wm.encoder" and cfg.wm.encoder_checkpoint is not None:
            continue  # the encoder comes from the checkpoint
        if name not in list_models():
            close = difflib.get_close_matches(str(name), list_models(), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"config key '{key}' = {name!r}: not a registered model{hint} (see jepa-world info)")


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
        single_pass=p.single_pass,
        act_checkpoint=m.act_checkpoint,
    )
    overrides = {"predictor_embed_dim": p.embed_dim, "depth": p.depth, "num_heads": p.num_heads}
    pred_kwargs.update({k: v for k, v in overrides.items() if v is not None})
    predictor = create_model(p.name, **pred_kwargs)
    return JEPA(
        encoder=encoder, predictor=predictor, loss=cfg.loss, var_weight=cfg.var_weight, cov_weight=cfg.cov_weight
    )


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
        BlockSpec(
            num_blocks=n,
            spatial_scale=s,
            temporal_scale=t,
            aspect_ratio=tuple(mc.target_aspect),
            temporal_anchor=str(mc.temporal_anchor),
        )
        for n, s, t in zip(mc.num_blocks, mc.spatial_scale, mc.temporal_scale)
    ]
    return MultiBlock3DMasks(grid_size=tuple(grid_size), specs=specs, seed=cfg.seed)


# --------------------------------------------------------------------------------------------------------------------
# World model (action-conditioned latent dynamics)
# --------------------------------------------------------------------------------------------------------------------
def build_world_model_terms(cfg: DictConfig, *, embed_dim: int, action_dim: int) -> list[nn.Module]:
    """The anti-collapse loss terms of joint training (PLDM): VICReg variance and covariance, smoothness, IDM, and
    the variance over time within each window (`wm.var_time_weight`, off by default).

    Variance and covariance are always built (their metrics are logged even at weight 0); smoothness and inverse
    dynamics only with a positive weight (an IDM head at weight 0 would be parameters nobody trains).
    """
    w = cfg.wm
    terms: list[nn.Module] = [VarianceTerm(weight=w.var_weight), CovarianceTerm(weight=w.cov_weight)]
    if w.smooth_weight > 0:
        terms.append(SmoothnessTerm(weight=w.smooth_weight))
    if w.var_time_weight > 0:
        terms.append(TemporalVarianceTerm(weight=w.var_time_weight))
    if w.idm_weight > 0:
        terms.append(InverseDynamicsTerm(embed_dim=embed_dim, action_dim=action_dim, weight=w.idm_weight))
    return terms


def readout_is_fit(w: DictConfig) -> bool:
    """Whether `wm` fits its readout before the dynamics trains (to labelled states, or to the actions), then
    freezes it under a `LiftedReadout`."""
    return w.get("readout_labels", 0) > 0 or bool(w.get("readout_from_actions", False))


def build_world_model(
    cfg: DictConfig, *, action_dim: int, state_dim: int, encoder: nn.Module | None = None
) -> WorldModel:
    """Encoder + action-conditioned predictor (+ loss terms when the encoder trains) as configured by `wm.*`.

    Args:
        cfg: resolved config.
        action_dim: action width of the data (x frameskip: action blocks).
        state_dim: state width of the data (0: no state tokens).
        encoder: an already built or loaded encoder (`wm.encoder_checkpoint`, a checkpoint being read); None builds
            the registered `wm.encoder` preset, trained jointly. With `wm.readout_dim` > 0 a loaded encoder becomes
            the frozen backbone of a `TokenReadout` trained jointly with the dynamics, or, with `wm.readout_labels`
            > 0 or `wm.readout_from_actions`, fit to states or to the actions before the dynamics trains and then
            frozen (`training.readout_fit`, `training.readout_actions`; latents without
            layer norm) under a `LiftedReadout` (with `wm.lift_dim` > 0 its lift trains with the dynamics and terms).
    """
    w = cfg.wm
    if encoder is None:
        encoder = create_model(w.encoder, img_size=cfg.data.image_size, embed_dim=w.embed_dim, **w.encoder_kwargs)
    frozen = w.encoder_checkpoint is not None and not w.finetune_encoder
    latent_norm = None  # WorldModel's default: layer-normed latents when frozen
    if w.encoder_checkpoint is not None and w.readout_dim > 0:
        # The pretrained ViT stays frozen (unless fine-tuned) under a readout that trains with the dynamics.
        depth = len(getattr(encoder, "blocks", ()))
        if w.finetune_blocks > depth:
            raise ValueError(f"wm.finetune_blocks={w.finetune_blocks} is more than the pretrained ViT's {depth} blocks")
        encoder = TokenReadout(
            backbone=encoder,
            embed_dim=w.readout_dim,
            freeze_backbone=not w.finetune_encoder,
            trainable_blocks=w.finetune_blocks,
            head=str(w.readout),
        )
        frozen = False  # the readout trains with the dynamics
        if readout_is_fit(w):
            # Fit first (task setup: to states or actions), then frozen with the ViT; its few coordinates are not
            # layer-normed.
            # A lift (wm.lift_dim) trains on them with the dynamics and the loss terms; without one nothing trains.
            encoder = LiftedReadout(readout=encoder, embed_dim=w.get("lift_dim", 0))
            frozen, latent_norm = not w.get("lift_dim", 0), False
    predictor = create_model(
        w.predictor, embed_dim=encoder.embed_dim, action_dim=action_dim, state_dim=state_dim, **w.predictor_kwargs
    )
    terms = [] if frozen else build_world_model_terms(cfg, embed_dim=encoder.embed_dim, action_dim=action_dim)
    return WorldModel(
        encoder=encoder,
        predictor=predictor,
        pool=w.pool,
        freeze_encoder=frozen,
        latent_norm=latent_norm,
        rollout_steps=w.rollout_steps,
        loss=cfg.loss,
        terms=terms,
    )


# --------------------------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------------------------
def build_schedules(cfg: DictConfig) -> tuple[Schedule, Schedule]:
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


def ema_schedule(cfg: DictConfig) -> Schedule:
    """EMA momentum over optimizer steps: linear from optim.ema[0] to optim.ema[1], or constant optim.ema[0]."""
    o = cfg.optim
    if o.ema_schedule == "linear":
        return linear(start=o.ema[0], end=o.ema[1], total_steps=cfg.train.max_steps)
    return constant(o.ema[0])
