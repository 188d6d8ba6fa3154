"""The one typed schema: every config key of every command, its type and its default, in dataclasses.

Keys with a fixed set of values are Enums (`Choice`), so a bad choice fails at the merge, naming the choices. The
checks that types cannot express are in `checks.py`; loading and merging in `load.py`.

Sections: model / predictor / masks / data / optim / train for pretraining (`jepa-world pretrain`), wm for world models
(`train-wm`), policy for policies learned in imagination (`train-policy`), plan for goal-reaching evaluation (`plan`),
probe for frozen probes (`probe`). Every command takes
`--config FILE` and `key=value` overrides against this one schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


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
DataSource = _choice("DataSource", ("synthetic_video", "synthetic_images", "index", "episodes"))
Reader = _choice("Reader", ("auto", "decord", "pyav"))
LrSchedule = _choice("LrSchedule", ("warmup_cosine", "warmup_constant", "warmup_stable_decay"))
EmaSchedule = _choice("EmaSchedule", ("linear", "constant"))
Precision = _choice("Precision", ("auto", "fp32", "bf16"))
PlannerKind = _choice("PlannerKind", ("cem", "mppi"))
CostReduce = _choice("CostReduce", ("last", "sum", "last+mean", "mean"))
# our own envs (`plan.env` also takes any gymnasium id that collection takes: swm/PushT-v1, module:EnvId)
PlanEnv = _choice("PlanEnv", ("two_rooms", "point_arena", "two_rooms_clutter", "two_rooms_discrete"))
PlanProtocol = _choice("PlanProtocol", ("ours", "swm", "strict"))
PlanAgent = _choice("PlanAgent", ("cem", "mppi", "policy", "policy+cem", "mcts"))
PolicyMethod = _choice("PolicyMethod", ("actor_critic", "evolution"))
ProbeKind = _choice("ProbeKind", ("linear", "attentive", "both"))
TemporalAnchor = _choice("TemporalAnchor", ("random", "end"))  # objectives.masks.TEMPORAL_ANCHORS
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
    # all target blocks in one pass with a block-sparse mask (context attends to context only; each block to the
    # context and itself): faster, different math from the releases
    # (docs/notes/pretraining-throughput.md "Single-pass predictor")
    single_pass: bool = False


@dataclass
class DataConfig:
    source: DataSource = DataSource.synthetic_video  # index: set data.index
    index: str | None = None  # folder of images/videos or an index file ("a.csv,b.csv": several); implies source=index
    # recorded episodes (`jepa-world collect`, or your robot's, in the episode format); implies source=episodes:
    # clips of num_frames frames frame_step steps apart (single frames for num_frames=1)
    episodes: str | None = None
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
    # where the boxes sit in time: random (V-JEPA), or end (every box ends at the clip's last frame: the context is the
    # past, the target the future; temporal_scale 0.5 predicts the second half of the clip from the first)
    temporal_anchor: TemporalAnchor = TemporalAnchor.random


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
    # AdamW as one fused kernel (torch's fused CPU / CUDA implementation): the same update, rounded differently in the
    # last bits; ViT-S/16: 113 vs 548 ms per optimizer step on this CPU (docs/notes/pretraining-throughput.md).
    # Off by default.
    fused: bool = False


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
    # After SIGTERM / SIGINT the run stops at the next step boundary with a checkpoint; a step still running this
    # many seconds later (stuck on I/O) ends the process instead (0: wait forever). A second signal ends it at once.
    stop_grace_s: float = 300.0
    skip_nonfinite: bool = False  # skip (and count) steps with a non-finite loss / gradient instead of stopping
    progress: bool = True  # tqdm bar on the main process
    tensorboard: bool = True
    # torch.compile of the task model's forward (inductor, dynamic shapes: the masks' token counts change every step,
    # so one graph serves them all). The same math rounded differently in the last bits, so off by default; the first
    # steps compile (about 2 minutes for ViT-nano on a 2-core CPU). Measured gains:
    # docs/notes/pretraining-throughput.md.
    compile: bool = False


@dataclass
class LeRobotKeys:
    """`wm.lerobot`: the features of a LeRobot dataset read as frames, actions and states (LeRobot action i is taken at
    frame i, so an episode of L frames gives L-1 actions: its last action is dropped)."""

    camera: str | None = None  # a video / image feature; null: the only one (an error lists several)
    action_key: str = "action"
    state_key: str | None = "auto"  # auto: observation.state when present; null: no states; a key: required


@dataclass
class CollectSection:
    """`wm.collect`: the episodes train-wm collects itself when `wm.episodes` is null (on `wm.env`)."""

    episodes: int = 3000
    steps: int = 16  # env steps per episode
    policy: str | None = None  # behaviour policy (jepa-world collect --policy); null: the env's default
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the env (gymnasium.make)


@dataclass
class WmEncoderConfig:
    """`wm.encoder`: a pretrained encoder (`checkpoint`: frozen, its last blocks or all of it trained) or a registered
    one trained jointly with the dynamics (`name`, `embed_dim`, `kwargs`)."""

    name: str = "pooled_encoder"  # registered encoder, used when checkpoint is null
    # a pretraining run / checkpoint / exported or official encoder: frozen unless finetune
    checkpoint: str | None = None
    embed_dim: int = 64  # latent width of the registered encoder
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra constructor args of the registered encoder
    pool: bool = True  # one pooled latent per frame (the practical choice on CPU)
    finetune: bool = False  # train the pretrained encoder with the world model
    # with finetune and a readout: train only the ViT's last k blocks and final norm (0: all of it); the frozen first
    # blocks' tokens are computed once per frame, like a frozen encoder's, so a step costs k / depth of the ViT
    finetune_blocks: int = 0
    lr_scale: float = 0.1  # LR of a fine-tuned pretrained encoder = optim.lr x this


@dataclass
class WmPredictorConfig:
    """`wm.predictor`: the action-conditioned dynamics."""

    name: str = "dynamics_nano"  # registered predictor
    kwargs: dict[str, Any] = field(default_factory=dict)  # extra constructor args
    rollout_steps: int = 4  # autoregressive steps in the loss (V-JEPA 2-AC: 2)
    use_states: bool = False  # proprioception tokens (off for Two-Rooms, whose state is the answer)


@dataclass
class WmTermsConfig:
    """`wm.terms`: weights of the anti-collapse loss terms while the encoder (or a readout, a lift) trains (PLDM)."""

    var: float = 1.0  # VICReg variance
    cov: float = 0.04  # VICReg covariance
    idm: float = 1.0  # inverse dynamics (its head is a parameter of the term)
    smooth: float = 0.0  # temporal smoothness |z_t+1 - z_t|^2


@dataclass
class WorldModelConfig:
    """`jepa-world train-wm`: data, then the parts of the world model (encoder, readout, predictor, loss terms)."""

    # data: a folder of episodes, ours (`jepa-world collect`) or a LeRobot v3 dataset (meta/info.json); null collects
    # wm.collect.episodes episodes of wm.env into train.output_dir/episodes first
    episodes: str | None = None
    lerobot: LeRobotKeys = field(default_factory=LeRobotKeys)
    env: str = "two_rooms"  # environment for the automatic collection (and for `jepa-world plan`)
    collect: CollectSection = field(default_factory=CollectSection)
    window: int = 8  # frames per training window
    frameskip: int = 1  # env steps per model step (actions of skipped steps are concatenated)
    # hold out the last k episodes: their windows are never trained on, and every logged step adds val_* metrics
    # (the model's loss terms and rollout errors on up to 256 of their windows) to metrics.jsonl
    val_episodes: int = 0
    in_memory: bool = False  # read every episode into RAM once (fast small-model training; 0.8 GB per 4k episodes)
    encoder: WmEncoderConfig = field(default_factory=WmEncoderConfig)
    # A readout of a ViT's tokens, chosen by type (jepa_world/models/readout*.py; each type has its own keys):
    #   {type: none}: the tokens as they are (mean-pooled when wm.encoder.pool)
    #   {type: mlp, dim: 32}: a per-position MLP over all tokens, trained with the dynamics
    #   {type: keypoints, keypoints: 1}: soft-argmax keypoints over the token grid
    # with fit: {type: labels, labels: 500} or {type: actions} the readout is fit before the dynamics train, then
    # frozen (and lifted to `lift` dims, trained with the dynamics): training/readout_fit.py, readout_actions.py
    readout: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    predictor: WmPredictorConfig = field(default_factory=WmPredictorConfig)
    terms: WmTermsConfig = field(default_factory=WmTermsConfig)
    # a train-wm run whose weights (readout, backbone, predictor, inverse dynamics) this run starts from, with a fresh
    # optimizer and schedule: train frozen first, then fine-tune from there (LP-FT); same architecture required
    init_from: str | None = None


@dataclass
class PlannerSettings:
    """Planner choice and budget (CPU-prototype defaults, docs/notes/two-rooms-world-model.md); `planning.make_planner`.

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

    # our env (two_rooms, point_arena, two_rooms_clutter, two_rooms_discrete) or any gymnasium id that `collect` takes
    # (swm/PushT-v1, swm/TwoRoom-v1, module:EnvId); null: the env the model's episodes came from (two_rooms if unknown)
    env: str | None = None
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # the env's constructor args; {}: the episodes' own
    # ours: start and goal in opposite rooms of our envs, plan.episodes x plan.max_steps, final-state success;
    # swm (the papers'): plan.pairs start rows of the dataset, goal = row + plan.offset of the same episode, plan.budget
    # env steps, success at any step by the env's own check; strict: pairs from held-out episodes, pairs solved at the
    # start dropped, TwoRoom start and goal in different rooms, success at the final step. null: ours on our envs, swm
    # on the others (eval/field.py)
    protocol: PlanProtocol | None = None
    episodes: int = 50  # ours: episodes per agent, the same start / goal pairs for every agent
    max_steps: int = 200  # ours: steps per episode (protocol: 200)
    offset: int = 25  # swm / strict: the goal is the start row + offset of the same episode
    budget: int = 50  # swm / strict: env steps per episode
    pairs: int | None = None  # swm / strict: start / goal pairs (null: 50 for swm, 100 for strict)
    pair_seed: int | None = None  # swm / strict: seed of the pairs (null: 42 for swm, as the papers; `seed` for strict)
    # swm / strict: the episodes the pairs come from (null: the world model's own: wm.episodes or <run>/episodes; for
    # strict its last wm.val_episodes, never trained on); with strict, a folder given here is taken as held out
    episodes_dir: str | None = None
    reduce: CostReduce = CostReduce["last+mean"]  # horizon reduction of the latent cost
    stop_radius: float | None = 2.5  # stop-rule radius in px (threshold calibrated from the encoder); null: off
    baselines: bool = True  # ours: random, no-op, straight line; swm / strict: no-op, random, replay of the dataset
    # the planner on the true simulator (null: on for our envs, off for the others, where it is slow)
    ceiling: bool | None = None
    gif_episodes: int = 4  # episodes shown in episodes.gif
    threads: int = 1  # torch threads while planning (0: leave as is)
    # cem / mppi: the world model's rollout through torch.compile: faster replans after a compile of about a minute
    # per batch shape; rounding differs in the last bits (docs/notes/planning-speed.md)
    compile: bool = False
    output: str | None = None  # folder for results.json, episodes.gif, landscape.png
    # the learned agent: cem / mppi (the planner on the world model; sets `planner`), policy (a train-policy run
    # acting alone), policy+cem (CEM with a share of its samples from the policy, warm-started by it, the critic as
    # terminal value), mcts (tree search over plan.env=two_rooms_discrete's nine actions, the policy's heads)
    agent: PlanAgent = PlanAgent.cem
    policy_fraction: float = 0.25  # policy+cem: share of each iteration's samples rolled out by the policy
    terminal_value: bool = True  # policy+cem: add the critic's value of the last latent to the cost
    simulations: int = 32  # mcts: simulations per decision
    search_depth: int = 16  # mcts: deepest node of a tree (rewards discounted with the policy's own discount)


@dataclass
class PolicyConfig:
    """`jepa-world train-policy`: a goal-conditioned policy learned inside a trained world model, no simulator.

    Starts and goals are latents of frames of the world model's own training episodes; the reward is minus the latent
    distance to the goal (`jepa_world.policies.imagination`).
    """

    method: PolicyMethod = PolicyMethod.actor_critic  # actor_critic (Dreamer) | evolution (CMA-ES, World Models)
    world_model: str | None = None  # the train-wm run the policy is trained in (`--checkpoint` sets it)
    num_latents: int = 4096  # frames of the world model's episodes encoded once, as starts and goals
    # imagined steps per rollout: shorter than the 40 the CEM planner trusts (the guard against model errors);
    # measured on Two-Rooms (world model seed 0, pairs 0): 15 steps 68%, 25 steps 76%, 40 steps 74%
    horizon: int = 25
    discount: float = 0.99  # 0.97 at 25 steps: 76%, 0.99: 78%
    lam: float = 0.95  # lambda of the returns (actor_critic)
    entropy_weight: float = 3e-4  # actor entropy bonus (actor_critic)
    critic_ema: float = 0.98  # slow critic momentum per step (actor_critic)
    return_floor: float = 1e-3  # floor of the return scale, in latent-distance units (actor_critic)
    hidden_dim: int = 256  # actor / critic MLP width
    depth: int = 2  # actor / critic hidden layers
    max_action: float = 2.45  # bound of each action component and of its norm (Two-Rooms: MAX_ACTION_NORM)
    sigma: float = 0.1  # initial CMA-ES step size (evolution)
    population: int | None = None  # CMA-ES candidates per generation (evolution; null: 4 + 3 ln n)


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
    # and every encoder (random init included) at chance on the built-in motion task (docs/notes/probes.md).
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
    # VICReg variance / covariance on the context tokens (VJ-VCR, Drozdov et al. 2024); 0 / 0 = plain I-JEPA / V-JEPA
    # (the release recipes in configs/ say so). On by default: without it the default job's target features collapse
    # (mean token cosine 0.59 -> 0.97 in 200 steps), with it they do not (0.59 -> 0.46; docs/notes/health.md).
    var_weight: float = 5.0
    cov_weight: float = 0.2
    model: ModelConfig = field(default_factory=ModelConfig)
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    wm: WorldModelConfig = field(default_factory=WorldModelConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
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
    "train-policy": [
        "train.output_dir=runs/policy",
        "train.batch_size=128",
        "train.max_steps=1500",
        "train.log_every=25",
        "train.ckpt_every=500",
        "optim.lr=3e-4",
        "optim.start_lr=3e-5",
        "optim.warmup_steps=50",
        "optim.weight_decay=0.0",
        "optim.final_weight_decay=0.0",
        "optim.grad_clip=100.0",
    ],
    "plan": [],
    "probe": [],
}
