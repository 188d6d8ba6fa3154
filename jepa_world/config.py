"""Configuration: one complete typed default, YAML recipes as small diffs, `key=value` command-line overrides.

Order of precedence: the dataclass defaults below < each `--config FILE` in order < `key=value` overrides. The
merge runs against a structured OmegaConf schema, so an unknown key or a value of the wrong type fails at once with
a message that names the key (and suggests the closest valid key for a typo). `validate` then checks the values
that types cannot express (positive sizes, divisibility). The resolved config is saved as `config.yaml` in every
run directory.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError


class ConfigError(ValueError):
    """A config file, key or value is invalid; the message names it."""


@dataclass
class ModelConfig:
    name: str = "vit_tiny"  # registered encoder preset (jepa-world info lists them)
    patch_size: int = 8
    tubelet_size: int = 2  # frames per tubelet (video)
    depth: int | None = None  # override the preset's depth (null keeps it)
    pos_embed: str = "sincos"  # sincos | rope
    drop_path_rate: float = 0.0
    act_checkpoint: bool = False  # activation checkpointing: less memory, ~30% more compute


@dataclass
class PredictorConfig:
    name: str = "predictor_nano"  # registered predictor preset
    embed_dim: int | None = None  # override the preset's width (null keeps it)
    depth: int | None = None
    num_heads: int | None = None


@dataclass
class DataConfig:
    source: str = "synthetic_video"  # synthetic_video | synthetic_images | index (set data.index)
    index: str | None = None  # folder of images/videos or an index file ("a.csv,b.csv": several); implies source=index
    image_size: int = 64
    num_frames: int = 8  # clip length for video models (1 = image model)
    num_samples: int = 20_000  # size of the built-in synthetic datasets
    num_workers: int = 0  # DataLoader worker processes
    max_skip_fraction: float = 0.5  # stop if this fraction of items fails to decode
    # Video indexes (data.index = a folder of videos, a list file or a V-JEPA CSV; "a.csv,b.csv" mixes several)
    index_weights: list[float] = field(default_factory=list)  # one per comma-separated index; [] = each video once
    frame_step: int = 4  # distance between sampled frames (V-JEPA: 4)
    fps: float | None = None  # target frame rate; when set, the step per video is round(video_fps / fps)
    clips_per_video: int = 1  # items per video per epoch, each from its own part of the video
    random_clip: bool = True  # random window start within the clip's part (false: the middle of the part)
    reader: str = "auto"  # auto (decord, PyAV per file when decord fails) | decord | pyav
    decode_short_side: int | None = None  # resize on decode to this short side; null: 8/7 x image_size; 0: native
    crop_scale: list[float] = field(default_factory=lambda: [0.3, 1.0])  # random resized crop area (V-JEPA)
    crop_aspect: list[float] = field(default_factory=lambda: [0.75, 1.35])  # random resized crop aspect (V-JEPA)
    hflip: bool = True  # random horizontal flip of the whole clip


@dataclass
class MaskConfig:
    # 2-D (I-JEPA multi-block); used by image models
    num_targets: int = 4
    target_scale: list[float] = field(default_factory=lambda: [0.15, 0.2])
    target_aspect: list[float] = field(default_factory=lambda: [0.75, 1.5])
    context_scale: list[float] = field(default_factory=lambda: [0.85, 1.0])
    min_keep: int = 10
    # 3-D (V-JEPA multi-block tubes); one mask config per entry, each with its own mask token
    num_blocks: list[int] = field(default_factory=lambda: [8, 2])
    spatial_scale: list[float] = field(default_factory=lambda: [0.15, 0.7])
    temporal_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])


@dataclass
class OptimConfig:
    lr: float = 1e-3  # peak learning rate
    start_lr: float = 2e-4  # at step 0, warming up linearly to lr
    final_lr: float = 1e-6
    lr_schedule: str = "warmup_cosine"  # warmup_cosine | warmup_constant | warmup_stable_decay
    warmup_steps: int = 20  # capped at train.max_steps (short test runs just work)
    decay_steps: int = 0  # cooldown length for warmup_stable_decay, capped likewise
    weight_decay: float = 0.04  # start of a cosine ramp to final_weight_decay (I-JEPA 0.04 -> 0.4)
    final_weight_decay: float = 0.4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 10.0  # max global grad norm; 0 disables
    ema: list[float] = field(default_factory=lambda: [0.996, 1.0])  # EMA momentum start, end (linear)
    ema_schedule: str = "linear"  # linear | constant (constant uses ema[0])


@dataclass
class TrainConfig:
    output_dir: str = "runs/pretrain"
    max_steps: int = 200  # optimizer steps
    # Wall-clock budget of this invocation in minutes (0: none): the loop stops at the first step boundary past it,
    # saves a checkpoint, and rerunning the command resumes. The schedules still span max_steps.
    max_minutes: float = 0.0
    batch_size: int = 16  # GLOBAL batch per optimizer step (all processes and accumulation micro-steps)
    grad_accum: int = 1  # micro-steps per optimizer step
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16
    log_every: int = 10
    ckpt_every: int = 100
    keep_last: int = 2  # checkpoints kept in output_dir/checkpoints
    resume: str = "auto"  # auto (resume from output_dir if it has a checkpoint) | never | PATH to a checkpoint
    skip_nonfinite: bool = False  # skip (and count) steps with a non-finite loss / gradient instead of stopping
    progress: bool = True  # tqdm bar on the main process
    tensorboard: bool = True


@dataclass
class WorldModelConfig:
    # data: episodes written by `jepa-world collect`; null collects them into train.output_dir/episodes first
    episodes: str | None = None
    env: str = "two_rooms"  # environment for the automatic collection (and for `jepa-world plan`)
    num_episodes: int = 3000
    episode_steps: int = 16
    window: int = 8  # frames per training window
    frameskip: int = 1  # env steps per model step (actions of skipped steps are concatenated)
    use_states: bool = False  # proprioception tokens (off for Two-Rooms, whose state is the answer)
    in_memory: bool = False  # read every episode into RAM once (fast small-model training; 0.8 GB per 4k episodes)
    # encoder: a pretraining run / checkpoint (frozen unless finetune_encoder) or a registered encoder trained jointly
    encoder_checkpoint: str | None = None
    finetune_encoder: bool = False
    encoder_lr_scale: float = 0.1  # encoder LR = optim.lr x this when fine-tuning a pretrained encoder
    encoder: str = "pooled_encoder"  # used when encoder_checkpoint is null
    embed_dim: int = 64  # latent width of that encoder
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)  # extra constructor args of wm.encoder
    pool: bool = True  # one pooled latent per frame (the practical choice on CPU)
    predictor: str = "dynamics_nano"
    predictor_kwargs: dict[str, Any] = field(default_factory=dict)  # extra constructor args of wm.predictor
    rollout_steps: int = 4  # autoregressive steps in the loss (V-JEPA 2-AC: 2)
    # anti-collapse terms when the encoder trains (PLDM / VICReg weights)
    var_weight: float = 1.0
    cov_weight: float = 0.04
    idm_weight: float = 1.0
    smooth_weight: float = 0.0  # temporal smoothness |z_t+1 - z_t|^2 (PLDM)


@dataclass
class Config:
    seed: int = 0
    loss: str = "l1"  # l1 (V-JEPA) | smooth_l1 (I-JEPA) | mse
    var_weight: float = 0.0  # VICReg variance term on the context tokens (VJ-VCR); 0 = plain I-JEPA / V-JEPA
    cov_weight: float = 0.0  # VICReg covariance term on the context tokens (VJ-VCR)
    model: ModelConfig = field(default_factory=ModelConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    wm: WorldModelConfig = field(default_factory=WorldModelConfig)


# Defaults that differ per command (applied before --config files and overrides).
COMMAND_DEFAULTS = {
    "pretrain": [],
    "train-wm": [
        "train.output_dir=runs/world_model",
        "train.batch_size=64",
        "train.max_steps=1500",
        "train.log_every=25",
        "train.ckpt_every=500",
        "optim.lr=1e-3",
        "optim.start_lr=1e-4",
        "optim.warmup_steps=100",
        "optim.weight_decay=0.0",
        "optim.final_weight_decay=0.0",
        "data.image_size=64",
    ],
}


CHOICES = {
    "loss": ("smooth_l1", "l1", "mse"),
    "model.pos_embed": ("sincos", "rope"),
    "data.source": ("synthetic_video", "synthetic_images", "index"),
    "data.reader": ("auto", "decord", "pyav"),
    "optim.lr_schedule": ("warmup_cosine", "warmup_constant", "warmup_stable_decay"),
    "optim.ema_schedule": ("linear", "constant"),
    "train.precision": ("auto", "fp32", "bf16"),
}


def _all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, DictConfig):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _friendly(err: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError | AttributeError) or "not in struct" in str(err) or "Key '" in str(err):
        close = difflib.get_close_matches(str(key), _all_keys(schema), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return ConfigError(f"unknown config key '{key}' in {source}{hint}")
    if isinstance(err, ValidationError):
        return ConfigError(f"bad value for config key '{key}' in {source}: {str(err).splitlines()[0]}")
    return ConfigError(f"invalid config in {source}: {str(err).splitlines()[0]}")


def load_config(
    files: list[str | Path] | None = None, overrides: list[str] | None = None, *, command: str = "pretrain"
) -> DictConfig:
    """Build the resolved config.

    Args:
        files: YAML recipes merged in order over the defaults.
        overrides: `key=value` strings (OmegaConf dotlist syntax, e.g. `train.max_steps=10`).
        command: whose defaults to start from ("pretrain" or "train-wm", see COMMAND_DEFAULTS).

    Returns:
        A struct-mode DictConfig (adding keys is an error), already validated.

    Raises:
        ConfigError: missing file, unknown key, wrong type, or invalid value; the message names it.
    """
    schema = OmegaConf.structured(Config)
    cfg = OmegaConf.merge(schema, OmegaConf.from_dotlist(COMMAND_DEFAULTS[command]))
    for f in files or []:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        except OmegaConfBaseException as err:
            raise _friendly(err, schema, str(path)) from None
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            raise _friendly(err, schema, f"override {item!r}") from None
    OmegaConf.set_struct(cfg, True)
    validate(cfg)
    return cfg


def validate(cfg: DictConfig) -> None:
    """Check values that the schema's types cannot express; raise ConfigError naming the key."""

    def fail(key: str, why: str) -> None:
        raise ConfigError(f"config key '{key}' = {OmegaConf.select(cfg, key)!r}: {why}")

    for key, choices in CHOICES.items():
        if OmegaConf.select(cfg, key) not in choices:
            fail(key, f"expected one of {', '.join(choices)}")
    for key in (
        "model.patch_size",
        "model.tubelet_size",
        "data.image_size",
        "data.num_frames",
        "data.num_samples",
        "train.max_steps",
        "train.batch_size",
        "train.grad_accum",
        "train.log_every",
        "train.ckpt_every",
        "train.keep_last",
    ):
        if OmegaConf.select(cfg, key) < 1:
            fail(key, "must be >= 1")
    for key in ("wm.num_episodes", "wm.episode_steps", "wm.frameskip", "wm.embed_dim"):
        if OmegaConf.select(cfg, key) < 1:
            fail(key, "must be >= 1")
    if cfg.wm.window < 2:
        fail("wm.window", "must be >= 2 (a transition needs two frames)")
    for key in (
        "data.num_workers",
        "optim.warmup_steps",
        "wm.rollout_steps",
        "optim.decay_steps",
        "optim.grad_clip",
        "train.max_minutes",
        "var_weight",
        "cov_weight",
    ):
        if OmegaConf.select(cfg, key) < 0:
            fail(key, "must be >= 0")
    if cfg.data.image_size % cfg.model.patch_size:
        fail("model.patch_size", f"does not divide data.image_size={cfg.data.image_size}")
    if cfg.data.num_frames > 1 and cfg.data.num_frames % cfg.model.tubelet_size:
        fail("model.tubelet_size", f"does not divide data.num_frames={cfg.data.num_frames}")
    if cfg.optim.lr <= 0:
        fail("optim.lr", "must be > 0")
    if len(cfg.optim.ema) != 2 or not all(0.0 <= m <= 1.0 for m in cfg.optim.ema):
        fail("optim.ema", "expected [start, end] momenta in [0, 1]")
    if not 0.0 < cfg.data.max_skip_fraction <= 1.0:
        fail("data.max_skip_fraction", "must be in (0, 1]")
    d = cfg.data
    for key in ("data.frame_step", "data.clips_per_video"):
        if OmegaConf.select(cfg, key) < 1:
            fail(key, "must be >= 1")
    if d.fps is not None and d.fps <= 0:
        fail("data.fps", "must be > 0 or null")
    if d.decode_short_side is not None and d.decode_short_side < 0:
        fail("data.decode_short_side", "must be >= 0 or null")
    if len(d.crop_scale) != 2 or not 0.0 < d.crop_scale[0] <= d.crop_scale[1] <= 1.0:
        fail("data.crop_scale", "expected [low, high] with 0 < low <= high <= 1")
    if len(d.crop_aspect) != 2 or not 0.0 < d.crop_aspect[0] <= d.crop_aspect[1]:
        fail("data.crop_aspect", "expected [low, high] with 0 < low <= high")
    if d.index_weights:
        num_indexes = len([p for p in str(d.index or "").split(",") if p.strip()])
        if len(d.index_weights) != num_indexes:
            fail("data.index_weights", f"needs one weight per comma-separated data.index entry ({num_indexes})")
        if any(w < 0 for w in d.index_weights) or sum(d.index_weights) <= 0:
            fail("data.index_weights", "weights must be >= 0 and not all 0")
    if cfg.train.batch_size % cfg.train.grad_accum:
        fail("train.grad_accum", f"does not divide train.batch_size={cfg.train.batch_size}")
    n = len(cfg.masks.num_blocks)
    if n < 1 or len(cfg.masks.spatial_scale) != n or len(cfg.masks.temporal_scale) != n:
        fail("masks.num_blocks", "masks.num_blocks, spatial_scale and temporal_scale need the same length >= 1")


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what is saved next to every checkpoint)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def defaults_table() -> list[tuple[str, Any]]:
    """(key, default) for every leaf key: used by `jepa-world pretrain --help`."""
    cfg = OmegaConf.structured(Config)
    return [
        (k, OmegaConf.select(cfg, k)) for k in _all_keys(cfg) if not isinstance(OmegaConf.select(cfg, k), DictConfig)
    ]
