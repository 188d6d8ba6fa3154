"""Config -> modules: the one place that turns a resolved config into models, masks, loss terms and schedules.

No file I/O here: a pretrained encoder is loaded by the caller (`checkpoints.load_encoder`) and passed in, so both
the training tasks and the checkpoint loaders build through these functions and nothing below imports them back.
"""

from __future__ import annotations

import difflib

from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from jepa_world.config.parts import NONE, complete_part, part_class, resolve_part
from jepa_world.config.schema import ConfigError
from jepa_world.models import create_model, list_models
from jepa_world.models.jepa import JEPA
from jepa_world.models.readout import LiftedReadout
from jepa_world.models.world_model import WorldModel
from jepa_world.objectives.losses import (
    CovarianceTerm,
    InverseDynamicsTerm,
    SmoothnessTerm,
    VarianceTerm,
)
from jepa_world.objectives.masks import BlockSpec, MultiBlock2DMasks, MultiBlock3DMasks
from jepa_world.objectives.schedules import Schedule, build_schedule, constant, cosine, linear


def check_before_run(cfg: DictConfig, *, world_model: bool = False) -> None:
    """Every registered name the config uses exists, every part section resolves, and a data source is given (before
    any folder is touched). A world model's `wm.readout` is completed with its type's defaults (what config.yaml
    then records).

    Raises:
        ValueError: naming the key, the unknown name and the closest registered ones (ConfigError for a part section).
    """
    if not world_model and cfg.data.source == "index" and cfg.data.index is None:
        raise ValueError("data.source=index needs data.index=PATH (a folder of images or videos, or an index file)")
    keys = ("wm.encoder.name", "wm.predictor.name") if world_model else ("model.name", "predictor.name")
    for key in keys:
        name = OmegaConf.select(cfg, key)
        if key == "wm.encoder.name" and cfg.wm.encoder.checkpoint is not None:
            continue  # the encoder comes from the checkpoint
        if name not in list_models():
            close = difflib.get_close_matches(str(name), list_models(), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"config key '{key}' = {name!r}: not a registered model{hint} (see jepa-world info)")
    if world_model:
        complete = complete_part("readout", cfg.wm.readout, key="wm.readout")
        if complete["type"] != NONE and cfg.wm.encoder.checkpoint is None:
            raise ConfigError(f"config key 'wm.readout.type' = {complete['type']!r}: a readout reads a pretrained "
                              "ViT's tokens; set wm.encoder.checkpoint (a pretraining run)")  # fmt: skip
        readout = readout_config(cfg)
        if readout is not None and readout.fit_type != NONE and cfg.wm.encoder.finetune:
            raise ConfigError(f"config key 'wm.readout.fit.type' = {readout.fit_type!r}: a fit readout is frozen with "
                              "its ViT; set wm.encoder.finetune=false")  # fmt: skip
        build_readout_fit(cfg)  # the fit's own demands of the readout (kind "fit")
        with open_dict(cfg):
            cfg.wm.readout = complete


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
    """The anti-collapse loss terms of joint training (PLDM, `wm.terms`): VICReg variance and covariance,
    smoothness, inverse dynamics.

    Variance and covariance are always built (their metrics are logged even at weight 0); smoothness and inverse
    dynamics only with a positive weight (an IDM head at weight 0 would be parameters nobody trains).
    """
    t = cfg.wm.terms
    terms: list[nn.Module] = [VarianceTerm(weight=t.var), CovarianceTerm(weight=t.cov)]
    if t.smooth > 0:
        terms.append(SmoothnessTerm(weight=t.smooth))
    if t.idm > 0:
        terms.append(InverseDynamicsTerm(embed_dim=embed_dim, action_dim=action_dim, weight=t.idm))
    return terms


def readout_config(cfg: DictConfig):
    """The typed config of `wm.readout` (`MlpReadout.Config`, `KeypointReadout.Config`, ...), or None for none."""
    return resolve_part("readout", cfg.wm.readout, key="wm.readout")


def build_readout_fit(cfg: DictConfig):
    """The fit of `wm.readout` (`LabelsFit`, `ActionsFit`, ...: parts of kind "fit", registered where they are
    defined, in `jepa_world.training`) built from its section and checked against the readout; None when the readout
    is not fit (or there is none)."""
    readout = readout_config(cfg)
    fit = None if readout is None else resolve_part("fit", readout.fit, key="wm.readout.fit")
    if fit is None:
        return None
    part = part_class("fit", fit.type, key="wm.readout.fit")(fit)
    part.check_readout(readout, key="wm.readout.fit")
    return part


def build_world_model(
    cfg: DictConfig, *, action_dim: int, state_dim: int, encoder: nn.Module | None = None
) -> WorldModel:
    """The world model `wm.*` describes, as a composition of its parts: encoder, readout, predictor, loss terms.

    Args:
        cfg: resolved config.
        action_dim: action width of the data (x frameskip: action blocks).
        state_dim: state width of the data (0: no state tokens).
        encoder: an already built or loaded encoder (`wm.encoder.checkpoint`); None builds the registered
            `wm.encoder.name` preset, trained jointly. Under a `wm.readout` the loaded ViT is the readout's backbone
            (frozen, its last `finetune_blocks` or all of it trained); a readout with a `fit` is set up before the
            dynamics train (`jepa_world.training`), then frozen with its ViT under a `LiftedReadout` whose lift
            (`wm.readout.lift` > 0) trains with the dynamics.
    """
    w = cfg.wm
    if encoder is None:
        encoder = create_model(w.encoder.name, img_size=cfg.data.image_size, embed_dim=w.encoder.embed_dim,
                               **w.encoder.kwargs)  # fmt: skip
    pretrained = w.encoder.checkpoint is not None
    frozen = pretrained and not w.encoder.finetune
    latent_norm = None  # WorldModel's default: layer-normed latents when frozen
    readout = readout_config(cfg)
    if readout is not None:
        depth = len(getattr(encoder, "blocks", ()))
        if w.encoder.finetune_blocks > depth:
            raise ValueError(f"wm.encoder.finetune_blocks={w.encoder.finetune_blocks} is more than the pretrained "
                             f"ViT's {depth} blocks")  # fmt: skip
        encoder = readout.build(encoder, freeze_backbone=not w.encoder.finetune,
                                trainable_blocks=w.encoder.finetune_blocks)  # fmt: skip
        frozen = False  # the readout trains with the dynamics
        if readout.fit_type != NONE:  # fit first, then frozen with the ViT; its few coordinates are not layer-normed
            encoder = LiftedReadout(readout=encoder, embed_dim=readout.lift)
            frozen, latent_norm = not readout.lift, False
    p = w.predictor
    predictor = create_model(p.name, embed_dim=encoder.embed_dim, action_dim=action_dim, state_dim=state_dim,
                             **p.kwargs)  # fmt: skip
    terms = [] if frozen else build_world_model_terms(cfg, embed_dim=encoder.embed_dim, action_dim=action_dim)
    return WorldModel(
        encoder=encoder,
        predictor=predictor,
        pool=w.encoder.pool,
        freeze_encoder=frozen,
        latent_norm=latent_norm,
        rollout_steps=p.rollout_steps,
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
