"""Training tasks: what the one training loop trains, built from the config.

A `Task` bundles a model whose `forward(batch) -> (loss, metrics)`, its dataset, the optimizer's parameter groups,
the named modules a checkpoint holds, a function that turns a DataLoader item into a model batch, and a hook run once
per optimizer step (the EMA update). The loop in `loop.py` knows nothing else about the task, and the tasks know
nothing about processes or devices. Modules come from `jepa_world.factory`; a pretrained encoder is read through
`jepa_world.checkpoints`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import Dataset

from jepa_world.checkpoints.digest import SOURCES_KEY, weights_source
from jepa_world.checkpoints.io import CheckpointError
from jepa_world.checkpoints.load import load_encoder
from jepa_world.checkpoints.tree import TREE_FORMAT, part_tree
from jepa_world.checkpoints.world_model import init_world_model, world_model_components
from jepa_world.data.build import build_dataset
from jepa_world.data.episode_formats import open_episodes
from jepa_world.data.feature_cache import FeatureWindows
from jepa_world.data.transforms import frames_to_tensor, uint8_to_float
from jepa_world.data.windows import WindowTooLongError, hold_out_episodes
from jepa_world.factory import build_jepa, build_masks, build_readout_fit, build_world_model, ema_schedule
from jepa_world.models.world_model import WorldModel
from jepa_world.objectives.ema import EMA
from jepa_world.objectives.losses import collapse_health
from jepa_world.training.latent_probe import with_state_probe
from jepa_world.training.readout_actions import ActionsFit
from jepa_world.training.readout_fit import LabelsFit
from jepa_world.training.validation import generalisation_health

FITS = (LabelsFit, ActionsFit)  # the registered fits of a readout (`wm.readout.fit.type`), imported to register them


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
        meta: extra facts saved in checkpoints (e.g. the action / state widths a world model was built for).
        health: `(first logged metrics, last logged metrics) -> (summary, warning)` printed when the run ends (the
            JEPA collapse check); None for tasks without one.
        uses_gradients: False for a gradient-free learner (CMA-ES) whose forward updates its own state: the loop
            then skips backward and the optimizer has nothing to step (one process only).
        val_dataset: held-out items (keyed and prepared as `dataset`'s) the loop evaluates the model on at every
            logged step (`training.validation`); None: no validation.
        setup: `setup(fresh)`, run once on every process before the first step, after a resumed run's checkpoint is
            loaded (`fresh`: no checkpoint, step 0): the fit of `wm.readout.fit`, only when
            fresh (a checkpoint holds what it made), then its outputs cached. Returns metrics, written to the run
            folder's `setup.json` when fresh.
    """

    name: str
    model: nn.Module
    dataset: Dataset
    param_groups: list[dict]
    components: dict[str, nn.Module]
    prepare: Callable[[dict, int, slice, int], dict]
    after_step: Callable[[int], dict[str, float]] = field(default=lambda step: {})
    meta: dict = field(default_factory=dict)
    health: Callable[[dict, dict], tuple[str, str]] | None = None
    uses_gradients: bool = True
    val_dataset: Dataset | None = None
    setup: Callable[[bool], dict[str, float]] | None = None


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
        health=collapse_health,
    )


# --------------------------------------------------------------------------------------------------------------------
# World model (action-conditioned latent dynamics)
# --------------------------------------------------------------------------------------------------------------------
def episodes_of(cfg: DictConfig) -> Path:
    """The episode folder of a world-model run: `wm.episodes`, or the one it collects into its output folder."""
    w = cfg.wm
    return Path(w.episodes) if w.episodes is not None else Path(cfg.train.output_dir) / "episodes"


def episode_keys(cfg: DictConfig) -> dict:
    """`open_episodes`' LeRobot feature arguments from `wm.lerobot`."""
    keys = cfg.wm.lerobot
    return {"camera": keys.camera, "action_key": keys.action_key, "state_key": keys.state_key}


def world_model_task(cfg: DictConfig) -> Task:
    """Teacher forcing + multi-step rollout on windows of offline episodes (collected first if wm.episodes is null)."""
    w = cfg.wm
    fit = build_readout_fit(cfg)  # before anything is collected or read: a bad fit section fails first
    root = episodes_of(cfg)
    if w.episodes is None and not (root / "metadata.json").exists():
        # The environments (gymnasium) are an optional dependency: imported only when episodes must be collected.
        from jepa_world.envs.collect import collect_episodes

        collect_episodes(env_name=w.env, num_episodes=w.collect.episodes, steps=w.collect.steps, output_dir=root,
                         policy=w.collect.policy, env_kwargs=dict(w.collect.env_kwargs), seed=cfg.seed,
                         image_size=cfg.data.image_size, progress=cfg.train.progress)  # fmt: skip
    if not root.is_dir():
        raise FileNotFoundError(f"wm.episodes={str(root)!r} does not exist (write episodes with `jepa-world collect`)")
    try:
        dataset = open_episodes(
            root=root,
            window=w.window,
            frameskip=w.frameskip,
            image_size=cfg.data.image_size,
            in_memory=w.in_memory,
            uint8=True,  # collate uint8 frames, convert once per batch in prepare
            **episode_keys(cfg),
        )
    except WindowTooLongError as err:  # in the user's keys
        raise ValueError(err.message("wm.window", "wm.frameskip")) from None
    state_dim = (dataset.state_dim or 0) if w.predictor.use_states else 0
    action_dim = dataset.action_dim * w.frameskip  # an action block: the frameskip steps' actions concatenated
    checkpoint = w.encoder.checkpoint
    encoder = _pretrained_encoder(checkpoint, cfg.data.image_size) if checkpoint else None
    # The weights this run (and its readout fit) depends on, by content: a resume in retrained ones is refused.
    sources = {"wm.encoder.checkpoint": weights_source(checkpoint, encoder)} if encoder is not None else {}
    model = build_world_model(cfg, action_dim=action_dim, state_dim=state_dim, encoder=encoder)
    if w.init_from:  # a second stage (LP-FT): before the feature cache, which encodes with these weights
        try:
            step = init_world_model(model, w.init_from)
        except CheckpointError as err:
            raise ValueError(f"wm.init_from={w.init_from!r}: {err}") from None
        sources["wm.init_from"] = weights_source(w.init_from, world_model_components(model), step=step)
        if cfg.train.progress:
            print(f"wm.init_from: weights of {w.init_from} (step {step}); optimizer and schedule start afresh")

    # Each part says what of it trains: "new" modules at optim.lr, a fine-tuned "pretrained" encoder at a scaled LR.
    scale = {"new": 1.0, "pretrained": w.encoder.lr_scale if checkpoint is not None else 1.0}
    groups = []
    for modules, role in model.parameter_roles():
        groups += param_groups(modules, lr_scale=scale[role])
    components = world_model_components(model)

    windows = dataset  # the episode windows; `dataset` may become a view of them
    encoder_part = model.encoder
    if getattr(encoder_part, "caches_features", False):
        # A frozen ViT (or its frozen first blocks, or a fit readout) gives each frame the same features at every step:
        # encode them once. A readout still to be fit reads its backbone's tokens first (`fit_features`).
        features = encoder_part.fit_features if fit is not None else encoder_part.frozen_features

        def encode_frames(frames):  # uint8 [F, H, W, 3] -> features [F, ...], frames as the dataset would give them
            return features(frames_to_tensor(frames, image_size=cfg.data.image_size))

        dataset = FeatureWindows(windows, encode_frames, log=print if cfg.train.progress else None)
    setup = None
    if fit is not None:  # a readout fit to states or to the actions, then frozen
        train_episodes = len(windows.episodes) - w.val_episodes
        setup = _fit_readout_setup(cfg, model, dataset, fit, train_episodes=train_episodes, root=root)
    val_dataset = None
    if w.val_episodes:  # the last episodes: never trained on
        dataset, val_dataset = hold_out_episodes(windows, w.val_episodes, dataset=dataset, where="wm.val_episodes")

    def prepare(item: dict, micro_step: int, rows: slice, global_batch: int) -> dict:
        if "tokens" in item:
            batch = {"tokens": item["tokens"], "actions": item["actions"]}
        else:
            x = item["x"]
            batch = {"x": uint8_to_float(x) if x.dtype == torch.uint8 else x, "actions": item["actions"]}
        if state_dim:
            batch["states"] = item["states"]
        return batch

    meta = {"action_dim": action_dim, "state_dim": state_dim, "tree": part_tree(model), "tree_format": TREE_FORMAT,
            SOURCES_KEY: sources}  # fmt: skip
    return Task(
        name="world_model",
        model=model,
        dataset=dataset,
        param_groups=[g for g in groups if g["params"]],
        components=components,
        prepare=prepare,
        meta=meta,
        val_dataset=val_dataset,
        health=with_state_probe(generalisation_health, model=model, windows=windows, cfg=cfg, root=root),
        setup=setup,
    )


def _fit_readout_setup(
    cfg: DictConfig, model: WorldModel, cache: Dataset, fit, *, train_episodes: int, root: Path
) -> Callable[[bool], dict[str, float]]:
    """The setup of a fit readout (`wm.readout.fit`): on a fresh run fit the readout (to states on labelled frames,
    or to the actions of the training windows); then (fresh or resumed, once the readout holds its final weights)
    replace the cached tokens by its outputs, which is all a training step reads of a frozen readout (68,000 frames:
    3.3 GB of ViT-S tokens become 0.5 MB)."""
    key = f"wm.readout.fit.type={fit.config.type}"
    if fit.needs_states and cache.windows.state_dim is None:
        raise ValueError(f"{key} fits the readout to states; the episodes in {str(root)!r} have none")
    lifted = model.encoder  # the factory builds a fit readout as a LiftedReadout over it

    def setup(fresh: bool) -> dict[str, float]:
        metrics = {}
        if fresh and not cfg.wm.init_from:  # a wm.init_from run holds its first stage's fit
            try:
                metrics = fit(lifted.readout, cache, episodes=train_episodes, seed=cfg.seed,
                              progress=cfg.train.progress, log=print if cfg.train.progress else None)  # fmt: skip
            except ValueError as err:
                raise ValueError(f"{key}: {err}") from None
        cache.map_(lifted.frozen_features)
        return metrics

    return setup


def _pretrained_encoder(path: str, image_size: int):
    """The EMA encoder of a pretraining run, checked against the frames it will see (`data.image_size`).

    A video encoder encodes each frame as one tubelet of that frame repeated (as V-JEPA 2-AC does): one time step of
    tokens per frame.
    """
    try:
        encoder = load_encoder(path, component="target_encoder")
    except CheckpointError as err:  # name the config key: the loader names the file
        raise ValueError(f"wm.encoder.checkpoint={path!r}: {err}") from None
    size = getattr(encoder, "input_size", None)  # (H, W) px of the encoder's nominal input
    if size is not None and size[-1] != image_size:
        raise ValueError(
            f"wm.encoder.checkpoint={path!r} was built for {size[-1]} px frames, the episodes are read at "
            f"data.image_size={image_size}: set data.image_size={size[-1]} (frames are resized to it)"
        )
    return encoder
