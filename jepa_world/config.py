"""Configuration: one complete typed default, YAML recipes as small diffs, `key=value` command-line overrides.

Order of precedence: the dataclass defaults below < each `--config FILE` in order < `key=value` overrides. The
merge runs against a structured OmegaConf schema, so an unknown key or a value of the wrong type fails at once with
a message that names the key (and suggests the closest valid key for a typo); keys with a fixed set of values are
Enums (`Choice`), so a bad choice fails there too, naming the choices. `validate` then checks the values that types
cannot express (positive sizes, divisibility), for every section in one place. The resolved config is saved as
`config.yaml` in every run directory.

Sections: model / predictor / masks / data / optim / train for pretraining (`jepa-world pretrain`), wm for world models
(`train-wm`), plan for goal-reaching evaluation (`plan`), probe for frozen probes (`probe`). Every command takes
`--config FILE` and `key=value` overrides against this one schema.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError


class ConfigError(ValueError):
    """A config file, key or value is invalid; the message names it."""


class Choice(str, Enum):
    """A config value from a fixed set: compares, hashes and prints as its string value (`Loss.l1 == "l1"`)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def _choice(name: str, values: tuple[str, ...]) -> type[Choice]:
    return Choice(name, {v: v for v in values})  # member names are the values ("last+mean" too)


Loss = _choice("Loss", ("smooth_l1", "l1", "mse"))
PosEmbed = _choice("PosEmbed", ("sincos", "rope"))
DataSource = _choice("DataSource", ("synthetic_video", "synthetic_images", "index"))
Reader = _choice("Reader", ("auto", "decord", "pyav"))
LrSchedule = _choice("LrSchedule", ("warmup_cosine", "warmup_constant", "warmup_stable_decay"))
EmaSchedule = _choice("EmaSchedule", ("linear", "constant"))
Precision = _choice("Precision", ("auto", "fp32", "bf16"))
PlannerKind = _choice("PlannerKind", ("cem", "mppi"))
CostReduce = _choice("CostReduce", ("last", "sum", "last+mean"))
PlanEnv = _choice("PlanEnv", ("two_rooms", "point_arena"))
ProbeKind = _choice("ProbeKind", ("linear", "attentive", "both"))
EncoderComponent = _choice("EncoderComponent", ("target_encoder", "encoder"))


@dataclass
class ModelConfig:
    name: str = "vit_tiny"  # registered encoder preset (jepa-world info lists them)
    patch_size: int = 8
    tubelet_size: int = 2  # frames per tubelet (video)
    depth: int | None = None  # override the preset's depth (null keeps it)
    pos_embed: PosEmbed = PosEmbed.sincos
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
    source: DataSource = DataSource.synthetic_video  # index: set data.index
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
    reader: Reader = Reader.auto  # auto: decord, PyAV per file when decord fails
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
    lr_schedule: LrSchedule = LrSchedule.warmup_cosine
    warmup_steps: int = 20  # capped at train.max_steps (short test runs just work)
    decay_steps: int = 0  # cooldown length for warmup_stable_decay, capped likewise
    weight_decay: float = 0.04  # start of a cosine ramp to final_weight_decay (I-JEPA 0.04 -> 0.4)
    final_weight_decay: float = 0.4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 10.0  # max global grad norm; 0 disables
    ema: list[float] = field(default_factory=lambda: [0.996, 1.0])  # EMA momentum start, end (linear)
    ema_schedule: EmaSchedule = EmaSchedule.linear  # constant uses ema[0]


@dataclass
class TrainConfig:
    output_dir: str = "runs/pretrain"
    max_steps: int = 200  # optimizer steps
    # Wall-clock budget of this invocation in minutes (0: none): the loop stops at the first step boundary past it,
    # saves a checkpoint, and rerunning the command resumes. The schedules still span max_steps.
    max_minutes: float = 0.0
    batch_size: int = 16  # GLOBAL batch per optimizer step (all processes and accumulation micro-steps)
    grad_accum: int = 1  # micro-steps per optimizer step
    precision: Precision = Precision.auto  # auto: bf16 on GPU, fp32 on CPU
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
class PlannerSettings:
    """Planner choice and budget (CPU-prototype defaults, docs/benchmarks.md "Planning"); `planning.make_planner`.

    Attributes:
        planner: cem or mppi.
        samples: samples per episode and iteration S.
        elites: CEM elites (null: samples / 10); MPPI: top-k weighted (null: all).
        iterations: planner iterations (= model calls) per replan.
        horizon: planning horizon H in model steps.
        replan_every: executed steps between replans.
        temperature: MPPI softmax temperature (in cost units).
        init_std: initial sampling std in action units.
        momentum: mean / std momentum.
    """

    planner: PlannerKind = PlannerKind.cem
    samples: int = 100
    elites: int | None = 10
    iterations: int = 4
    horizon: int = 40
    replan_every: int = 4
    temperature: float = 0.05
    init_std: float = 1.5
    momentum: float = 0.0


@dataclass
class PlanConfig(PlannerSettings):
    """`jepa-world plan`: the planner settings above plus the evaluation protocol."""

    env: PlanEnv = PlanEnv.two_rooms
    episodes: int = 50  # episodes per agent, the same start / goal pairs for every agent
    max_steps: int = 200  # steps per episode (protocol: 200)
    reduce: CostReduce = CostReduce["last+mean"]  # horizon reduction of the latent cost
    stop_radius: float | None = 2.5  # stop-rule radius in px (threshold calibrated from the encoder); null: off
    baselines: bool = True  # random, no-op, straight line
    ceiling: bool = True  # the planner on the true simulator
    gif_episodes: int = 4  # episodes shown in episodes.gif
    threads: int = 1  # torch threads while planning (0: leave as is)
    output: str | None = None  # folder for results.json, episodes.gif, landscape.png


@dataclass
class ProbeConfig:
    """`jepa-world probe`: frozen linear / attentive probes (`model.*` etc. describe `--checkpoint random`)."""

    component: EncoderComponent = EncoderComponent.target_encoder
    random_init: bool = False  # same architecture as the checkpoint, random weights (the baseline to beat)
    data: str = "builtin"  # builtin, or a video index / a folder with one subfolder per class
    val_data: str | None = None  # validation split for a data path (else the path is split 70/15/15)
    test_data: str | None = None
    kind: ProbeKind = ProbeKind.both
    # ~1,500 head updates at lr up to 1e-2: shorter or slower sweeps left the attentive head near uniform attention
    # and every encoder (random init included) at chance on the built-in motion task (docs/benchmarks.md).
    epochs: int = 50
    batch_size: int = 64
    lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2])
    wds: list[float] = field(default_factory=lambda: [0.001, 0.05])
    num_train: int = 2000  # built-in clips per split
    num_val: int = 500
    num_test: int = 1000
    cache: bool = True  # cache features in memory when they fit (false: re-encode every epoch)
    num_workers: int = 0
    output: str | None = None  # also write the results as JSON here


@dataclass
class Config:
    seed: int = 0
    loss: Loss = Loss.l1  # l1 (V-JEPA), smooth_l1 (I-JEPA), mse
    var_weight: float = 0.0  # VICReg variance term on the context tokens (VJ-VCR); 0 = plain I-JEPA / V-JEPA
    cov_weight: float = 0.0  # VICReg covariance term on the context tokens (VJ-VCR)
    model: ModelConfig = field(default_factory=ModelConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    wm: WorldModelConfig = field(default_factory=WorldModelConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)


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
    "plan": [],
    "probe": [],
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
    if isinstance(err, ValidationError) and "expected one of" in str(err):
        # A Choice (Enum) key: say it the way `validate` says every other bad value.
        choices = str(err).split("expected one of", 1)[1].splitlines()[0].strip(" []")
        return ConfigError(
            f"config key '{key}' = {getattr(err, 'value', None)!r}: expected one of {choices} ({source})"
        )
    if isinstance(err, ValidationError):
        return ConfigError(f"bad value for config key '{key}' in {source}: {str(err).splitlines()[0]}")
    return ConfigError(f"invalid config in {source}: {str(err).splitlines()[0]}")


def load_config(
    files: list[str | Path] | None = None,
    overrides: list[str] | None = None,
    *,
    command: str = "pretrain",
    values: Mapping[str, tuple[str, Any]] | None = None,
) -> DictConfig:
    """Build the resolved config.

    Args:
        files: YAML recipes merged in order over the defaults.
        overrides: `key=value` strings (OmegaConf dotlist syntax, e.g. `train.max_steps=10`), applied last.
        command: whose defaults to start from ("pretrain", "train-wm", "plan", "probe"; see COMMAND_DEFAULTS).
        values: `{dotted key: (source, value)}` set after the files and before the overrides, with the same checks
            (the CLI's flag aliases: `--horizon 30` is `plan.horizon`; `source` names the flag in errors).

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
    for key, (source, value) in (values or {}).items():
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(nested))
        except OmegaConfBaseException as err:
            raise _friendly(err, schema, source) from None
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
    _validate_plan(cfg, fail)
    _validate_probe(cfg, fail)


def _validate_plan(cfg: DictConfig, fail) -> None:
    pc = cfg.plan
    for key in ("samples", "iterations", "horizon", "replan_every", "episodes", "max_steps"):
        if pc[key] < 1:
            fail(f"plan.{key}", "must be >= 1")
    if pc.elites is not None and not 1 <= pc.elites <= pc.samples:
        fail("plan.elites", f"must be in [1, plan.samples={pc.samples}] or null")
    if pc.replan_every > pc.horizon:
        fail("plan.replan_every", f"exceeds plan.horizon={pc.horizon}")
    for key in ("temperature", "init_std"):
        if not pc[key] > 0:
            fail(f"plan.{key}", "must be > 0")
    if not 0.0 <= pc.momentum < 1.0:
        fail("plan.momentum", "must be in [0, 1)")
    if pc.stop_radius is not None and not pc.stop_radius > 0:
        fail("plan.stop_radius", "must be > 0, or null to disable the stop rule")
    for key in ("gif_episodes", "threads"):
        if pc[key] < 0:
            fail(f"plan.{key}", "must be >= 0")


def _validate_probe(cfg: DictConfig, fail) -> None:
    pr = cfg.probe
    for key in ("epochs", "batch_size", "num_train", "num_val", "num_test"):
        if pr[key] < 1:
            fail(f"probe.{key}", "must be >= 1")
    if pr.num_workers < 0:
        fail("probe.num_workers", "must be >= 0")
    for key in ("lrs", "wds"):
        values = list(pr[key])
        if not values or any(v < 0 for v in values) or (key == "lrs" and any(v == 0 for v in values)):
            fail(f"probe.{key}", "needs at least one value, all > 0" if key == "lrs" else "needs values >= 0")
    if pr.data == "builtin" and (pr.val_data is not None or pr.test_data is not None):
        fail("probe.val_data", "val_data / test_data go with a data path, not with probe.data=builtin")
    if pr.test_data is not None and pr.val_data is None:
        fail("probe.test_data", "needs probe.val_data too (or neither, to split probe.data)")


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what is saved next to every checkpoint)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def defaults_table(section: str | None = None) -> list[tuple[str, Any]]:
    """(key, default) for every leaf key, or those of one section (e.g. "plan"): `jepa-world COMMAND --help`."""
    cfg = OmegaConf.structured(Config)
    if section is not None:
        return [(k, v) for k, v in defaults_table() if k.startswith(section + ".")]
    return [
        (k, OmegaConf.select(cfg, k)) for k in _all_keys(cfg) if not isinstance(OmegaConf.select(cfg, k), DictConfig)
    ]
