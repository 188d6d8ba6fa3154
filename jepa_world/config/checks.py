"""The checks of a resolved config that its types cannot express (positive sizes, divisibility, paths, ranges), for
every section in one place. Each failure names the key, its value and why.
"""

from __future__ import annotations

import difflib
import math
import re
from enum import Enum
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from jepa_world.config.schema import ConfigError


def validate(cfg: DictConfig) -> None:
    """Check values that the schema's types cannot express; raise ConfigError naming the key."""

    def fail(key: str, why: str) -> None:
        value = OmegaConf.select(cfg, key)
        value = value.value if isinstance(value, Enum) else value  # 'mcts', not <PlanAgent.mcts: 'mcts'>
        raise ConfigError(f"config key '{key}' = {value!r}: {why}")

    _validate_finite(cfg, fail)  # first: a NaN is named as such, not as out of range
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
    for key in ("wm.collect.episodes", "wm.collect.steps", "wm.frameskip", "wm.encoder.embed_dim"):
        if OmegaConf.select(cfg, key) < 1:
            fail(key, "must be >= 1")
    if cfg.wm.window < 2:
        fail("wm.window", "must be >= 2 (a transition needs two frames)")
    enc = cfg.wm.encoder
    if enc.finetune_blocks and not (enc.finetune and cfg.wm.readout.get("type", "none") != "none"):
        fail(
            "wm.encoder.finetune_blocks",
            "needs wm.encoder.finetune=true and a wm.readout (it trains the last blocks of a pretrained ViT under "
            "its readout)",
        )
    if not isinstance(cfg.wm.readout.get("type", "none"), str):
        fail("wm.readout.type", "must be a name (none, mlp, keypoints, ...)")
    for key in (
        "data.num_workers",
        "optim.warmup_steps",
        "wm.predictor.rollout_steps",
        "optim.decay_steps",
        "optim.grad_clip",
        "train.max_minutes",
        "train.stop_grace_s",
        "wm.encoder.finetune_blocks",
        "wm.terms.var",
        "wm.terms.cov",
        "wm.terms.idm",
        "wm.terms.smooth",
        "wm.encoder.lr_scale",
        "wm.val_episodes",
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
    _validate_model(cfg, fail)
    _validate_paths(cfg, fail)
    _validate_plan(cfg, fail)
    _validate_policy(cfg, fail)
    _validate_probe(cfg, fail)


# Keys that name a file or folder: an empty value is an unset shell variable (`data.index=$DATA`), never "none".
PATH_KEYS = ("data.index", "data.episodes", "wm.episodes", "wm.encoder.checkpoint", "wm.init_from", "train.output_dir",
             "train.resume", "plan.output", "policy.world_model", "probe.output", "probe.data", "probe.val_data",
             "probe.test_data")  # fmt: skip


def _validate_model(cfg: DictConfig, fail) -> None:
    for key in ("model.depth", "predictor.embed_dim", "predictor.depth", "predictor.num_heads"):
        value = OmegaConf.select(cfg, key)
        if value is not None and value < 1:
            fail(key, "must be >= 1 (or null for the preset's value)")
    if not 0 <= cfg.seed < 2**63:
        fail("seed", "must be in [0, 2**63)")
    if len(cfg.optim.betas) != 2 or not all(0.0 <= b < 1.0 for b in cfg.optim.betas):
        fail("optim.betas", "expected [beta1, beta2] in [0, 1)")
    grid = cfg.data.image_size // cfg.model.patch_size
    if grid < 2:
        fail("model.patch_size", f"leaves a {grid}x{grid} token grid at data.image_size={cfg.data.image_size}; "
             "masking needs at least 2x2 tokens")  # fmt: skip
    if cfg.data.num_frames == 1 and cfg.masks.min_keep >= grid * grid:
        fail("masks.min_keep", f"must be below the {grid * grid} tokens of a frame")


def _validate_paths(cfg: DictConfig, fail) -> None:
    for key in PATH_KEYS:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, str) and not value.strip():
            fail(key, "is empty (an unset shell variable?); give a path, or leave the key out for its default")
    resume = cfg.train.resume
    if resume not in ("auto", "never") and not Path(resume).expanduser().exists():
        close = difflib.get_close_matches(resume, ["auto", "never"], n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        fail("train.resume", f"expected auto, never or the path of an existing checkpoint{hint}")


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
    if pc.planner != "cem" and pc.planner != pc.agent:
        fail("plan.planner", f"is chosen by plan.agent now: set plan.agent={pc.planner}")
    if not 0.0 <= pc.policy_fraction <= 1.0:
        fail("plan.policy_fraction", "must be in [0, 1]")
    for key in ("simulations", "search_depth"):
        if pc[key] < 1:
            fail(f"plan.{key}", "must be >= 1")
    if (pc.agent == "mcts") != (pc.env == "two_rooms_discrete"):
        want = "plan.env=two_rooms_discrete" if pc.agent == "mcts" else "a discrete-action agent (plan.agent=mcts)"
        fail("plan.agent" if pc.agent == "mcts" else "plan.env", f"{pc.agent if pc.agent == 'mcts' else pc.env} "
             f"needs {want}: tree search takes the nine discrete Two-Rooms actions")  # fmt: skip
    for key in ("offset", "budget"):
        if pc[key] < 1:
            fail(f"plan.{key}", "must be >= 1")
    if pc.pairs is not None and pc.pairs < 1:
        fail("plan.pairs", "must be >= 1, or null for the protocol's number (50 for swm, 100 for strict)")
    if pc.pair_seed is not None and not 0 <= pc.pair_seed < 2**63:
        fail("plan.pair_seed", "must be in [0, 2**63), or null")
    if isinstance(pc.episodes_dir, str) and not pc.episodes_dir.strip():
        fail("plan.episodes_dir", "is empty (an unset shell variable?); give a folder of episodes, or leave it out")
    if pc.env is not None:
        _validate_plan_env(str(pc.env), pc.protocol, fail)


# A gymnasium id ([namespace/]Name-vN, possibly after "module:"), the form plan.env takes for an env not ours.
_GYM_ID = re.compile(r"(?:[\w.]+:)?(?:[\w.-]+/)?[\w.-]+-v\d+")
# Our own envs, in the order the messages list them (config.schema.PlanEnv).
_OUR_ENVS = ("two_rooms", "point_arena", "two_rooms_clutter", "two_rooms_discrete")


def _validate_plan_env(env: str, protocol, fail) -> None:
    """`plan.env`: one of our envs, or an id that resolves (importing the package that registers it: swm/...)."""
    if env in _OUR_ENVS:
        if protocol is not None and protocol != "ours":
            fail("plan.protocol", f"{protocol} reads start and goal from episodes with env states, which our env "
                 f"{env!r} does not record; use plan.protocol=ours (or an env such as swm/TwoRoom-v1)")  # fmt: skip
        return
    expected = f"expected one of {', '.join(_OUR_ENVS)}, or a gymnasium id (swm/PushT-v1, swm/TwoRoom-v1, module:EnvId)"
    if not env.strip():
        fail("plan.env", f"is empty; {expected}")
    if protocol == "ours":
        fail("plan.protocol", f"ours is the protocol of our envs ({', '.join(_OUR_ENVS[:3])}); on {env!r} use swm or "
             "strict")  # fmt: skip
    # Only the form here (the config floor imports no env); whether the id resolves is checked where plan starts
    # (`eval.plan_benchmark.check_plan_env`), naming plan.env too.
    if not _GYM_ID.fullmatch(env):
        close = difflib.get_close_matches(env, _OUR_ENVS, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        fail("plan.env", f"{expected}{hint}")


def _validate_policy(cfg: DictConfig, fail) -> None:
    po = cfg.policy
    for key in ("num_latents", "horizon", "hidden_dim", "depth"):
        if po[key] < 1:
            fail(f"policy.{key}", "must be >= 1")
    if not 0.0 < po.discount <= 1.0:
        fail("policy.discount", "must be in (0, 1]")
    for key in ("lam", "critic_ema"):
        if not 0.0 <= po[key] <= 1.0:
            fail(f"policy.{key}", "must be in [0, 1]")
    for key in ("max_action", "sigma", "return_floor"):
        if not po[key] > 0:
            fail(f"policy.{key}", "must be > 0")
    if not po.entropy_weight >= 0:
        fail("policy.entropy_weight", "must be >= 0")
    if po.population is not None and po.population < 2:
        fail("policy.population", "must be >= 2, or null for CMA-ES's default")


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


def _validate_finite(cfg: DictConfig, fail) -> None:
    """Every float setting (lists included) must be a number: NaN or inf is named by its key before anything runs."""

    def walk(node, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, float) and not math.isfinite(node):
            fail(key, "must be a finite number (not nan or inf)")

    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
