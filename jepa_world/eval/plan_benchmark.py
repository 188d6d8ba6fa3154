"""The benchmark behind `jepa-world plan`: the learned agent against baselines, one table.

Agents, in table order: the learned agent (the world model + CEM / MPPI, or a policy learned in imagination: alone,
inside CEM, or guiding MCTS over discrete actions), random actions, no-op, straight line to the goal, and the planner
on the true simulator (ceiling), all on the same protocol pairs (``protocol.eval_pairs``). Settings come from the
config's ``plan`` section (``config.PlanConfig``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jepa_world.atomic import atomic_write_text
from jepa_world.checkpoints.io import CheckpointError
from jepa_world.checkpoints.policy import PolicyRun, check_policy_fits, load_policy
from jepa_world.checkpoints.world_model import load_world_model
from jepa_world.config import PlanConfig, PlanEnv, PlannerSettings
from jepa_world.envs import make_env
from jepa_world.envs.geometry import ARENA_SIZE, discrete_action_table
from jepa_world.envs.two_rooms import SUCCESS_THRESHOLD
from jepa_world.eval.agents import (
    Agent,
    PolicyAgent,
    SimulatorCEMAgent,
    WorldModelAgent,
    calibrate_stop_threshold,
    encode_pixels,
)
from jepa_world.eval.policy_agents import LearnedPolicyAgent, MCTSAgent, PolicyCEMAgent
from jepa_world.eval.protocol import EpisodeStats, eval_pairs, format_table, run_episodes
from jepa_world.eval.viz import energy_landscape, save_episodes_gif, save_landscape_png
from jepa_world.models.small import pixel_encoder
from jepa_world.models.world_model import WorldModel

_PLAN = PlanConfig()  # the defaults of the `plan` section: the one place they are written
PLAN_ENVS = tuple(e.value for e in PlanEnv)  # the config's choice: one list


def planner_settings(plan: Any) -> PlannerSettings:
    """The `PlannerSettings` part of a `plan` config section (a `PlanConfig` or its DictConfig)."""
    return PlannerSettings(**{f.name: getattr(plan, f.name) for f in fields(PlannerSettings)})


def run_plan_benchmark(
    checkpoint: str | Path | WorldModel,
    *,
    env_name: str = _PLAN.env,
    episodes: int = _PLAN.episodes,
    settings: PlannerSettings | None = None,
    max_steps: int = _PLAN.max_steps,
    seed: int = 0,
    output: str | Path | None = None,
    stop_radius: float | None = _PLAN.stop_radius,
    reduce: str = _PLAN.reduce,
    baselines: bool = _PLAN.baselines,
    simulator_ceiling: bool = _PLAN.ceiling,
    gif_episodes: int = _PLAN.gif_episodes,
    num_threads: int | None = _PLAN.threads,
    compiled: bool = _PLAN.compile,
    log: Callable[[str], None] | None = print,
    agent: str = str(_PLAN.agent),
    policy_fraction: float = _PLAN.policy_fraction,
    terminal_value: bool = _PLAN.terminal_value,
    simulations: int = _PLAN.simulations,
    search_depth: int = _PLAN.search_depth,
) -> dict[str, Any]:
    """Evaluate the learned world model + planner against the baselines on the same protocol pairs.

    Agents, in table order: the learned world model + planner, random actions, no-op, straight line to the goal, and
    the planner on the true simulator (ceiling). Writes ``results.json``, ``episodes.gif`` and ``landscape.png`` to
    ``output`` when given.

    Args:
        checkpoint: A world-model run folder / checkpoint (see ``checkpoints.load_world_model``) or a ``WorldModel``;
            for the policy agents, a ``train-policy`` run (its world model is the one it was trained in).
        env_name: ``"two_rooms"``, ``"point_arena"``, ``"two_rooms_clutter"`` or ``"two_rooms_discrete"``
            (``agent="mcts"`` only).
        episodes: Episodes per agent E.
        settings: Planner settings (defaults: ``PlannerSettings()``).
        max_steps: Steps per episode (protocol: 200).
        seed: Seed of the pairs and of every agent's sampling.
        output: Folder for the JSON / GIF / PNG, or None.
        stop_radius: Stop-rule radius in px (threshold calibrated from the encoder), or None to disable.
        reduce: Horizon reduction of the learned cost.
        baselines: Run random / no-op / straight line.
        simulator_ceiling: Run the simulator CEM.
        gif_episodes: Episodes of the learned agent shown in the GIF.
        num_threads: ``torch.set_num_threads`` during planning (1 was fastest on the loaded 2-core CPU), or None.
        compiled: ``cem`` / ``mppi``: plan over the world model's rollout through ``torch.compile`` (``plan.compile``).
        log: Progress printer, or None.
        agent: ``"cem"`` / ``"mppi"`` (the planner on the world model), ``"policy"``, ``"policy+cem"`` or ``"mcts"``.
        policy_fraction: ``policy+cem``: share of the samples from the policy.
        terminal_value: ``policy+cem``: the critic as terminal value.
        simulations: ``mcts``: simulations per decision.
        search_depth: ``mcts``: deepest node.

    Returns:
        ``{"protocol": {...}, "settings": {...}, "results": [summary per agent], "table": str, "files": {...}}``.
    """
    settings = settings or PlannerSettings()
    say = log or (lambda _msg: None)
    if env_name not in PLAN_ENVS:
        raise ValueError(f"env_name must be one of {PLAN_ENVS}, got {env_name!r}")
    if agent not in AGENTS:
        raise ValueError(f"agent must be one of {AGENTS}, got {agent!r}")
    if (agent == "mcts") != (env_name == "two_rooms_discrete"):
        raise ValueError(
            f"agent={agent!r} on env {env_name!r}: tree search needs the discrete env (two_rooms_discrete, nine "
            "actions) and the discrete env needs tree search (agent='mcts')"
        )
    if compiled and agent not in ("cem", "mppi"):
        raise ValueError(f"plan.compile compiles the rollout of the cem / mppi agents, not of agent={agent!r}")
    if agent in ("cem", "mppi"):
        settings = PlannerSettings(**{**asdict(settings), "planner": agent})
    policy = None
    if isinstance(checkpoint, WorldModel):
        model, source = checkpoint, "<in-memory WorldModel>"
    elif agent in POLICY_AGENTS:
        policy, source = _load_policy(checkpoint, agent), str(checkpoint)
        model = load_world_model(policy.world_model)
    else:
        model, source = load_world_model(checkpoint), str(checkpoint)
    model.eval()
    threads_before = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        env = make_env(env_name, image_size=model_image_size(model), max_steps=max_steps).unwrapped  # the protocol's
        pairs = eval_pairs(env, episodes, seed)
        if policy is not None:
            check_policy_fits(policy, model, latent_shape=_latent_shape(model, env))
        threshold = None
        if stop_radius:
            threshold = calibrate_stop_threshold(model, env, radius=stop_radius, seed=seed)
            say(f"stop rule: latent distance < {threshold:.4f} (median for a {stop_radius} px move)")
        max_norm = float(env.action_space.high.max())
        common = dict(model=model, stop_threshold=threshold)
        mpc = dict(settings=settings, max_norm=max_norm, low=-max_norm, high=max_norm, reduce=reduce, seed=seed)
        if agent in ("cem", "mppi"):
            name = f"world model + {settings.planner.upper()}" + (" (compiled)" if compiled else "")
            learned: Agent = WorldModelAgent(**common, **mpc, compiled=compiled, name=name)
        elif agent == "policy":
            learned = LearnedPolicyAgent(policy=policy, **common, name=f"{policy.method} policy")
        elif agent == "policy+cem":
            learned = PolicyCEMAgent(
                policy=policy,
                policy_fraction=policy_fraction,
                terminal_value=terminal_value,
                **common,
                **mpc,
                name=f"{policy.method} policy + CEM",
            )
        else:
            learned = MCTSAgent(policy=policy, actions=discrete_action_table(), simulations=simulations,
                                max_depth=search_depth, **common,
                                name=f"MCTS ({simulations} sims, 9 actions)")  # fmt: skip
        agents: list[Agent] = [learned]
        if baselines:
            agents += [
                PolicyAgent(policy="random", seed=seed),
                PolicyAgent(policy="noop", name="no-op", seed=seed),
                PolicyAgent(policy="straight_line", name="straight line", seed=seed),
            ]
        if simulator_ceiling:
            agents.append(
                SimulatorCEMAgent(env=env, settings=settings, seed=seed, name=f"{settings.planner.upper()} + true sim")
            )
        stats: list[EpisodeStats] = []
        for runner in agents:
            tic = time.perf_counter()
            st = run_episodes(env, runner, pairs, max_steps=max_steps, scene_seed=seed)
            say(f"{runner.name}: success {100 * st.success_rate:.0f}% ({time.perf_counter() - tic:.1f} s)")
            stats.append(st)
        rows = [s.summary() for s in stats]
        title = (
            f"{env_name}: {episodes} episodes, {max_steps} steps, success = final distance < {SUCCESS_THRESHOLD} px, "
            f"start/goal in opposite rooms (seed {seed})"
        )
        table = format_table(rows, title=title)
        result: dict[str, Any] = {
            "checkpoint": source,
            "protocol": {
                "env": env_name,
                "episodes": episodes,
                "max_steps": max_steps,
                "success_threshold_px": SUCCESS_THRESHOLD,
                "pairs": "start and goal in opposite rooms (TwoRoomsEnv.sample_eval_pair)",
                "seed": seed,
                "learned_agent_inputs": "pixels of the observation and of render_state(goal); no simulator access",
            },
            "settings": {
                **asdict(settings),
                "agent": agent,
                "reduce": reduce,
                "stop_radius": stop_radius,
                "stop_threshold": threshold,
                "num_threads": torch.get_num_threads(),
                "compile": compiled,
            },
            "results": rows,
            "table": table,
            "files": {},
        }
        if output is not None:
            out = Path(output)
            out.mkdir(parents=True, exist_ok=True)
            n = min(gif_episodes, episodes)
            if n > 0:
                scenes = stats[0].scenes
                gif = save_episodes_gif(out / "episodes.gif", env, stats[0].paths[:n], pairs[:n, 1],
                                        scenes=None if scenes is None else scenes[:n])  # fmt: skip
                result["files"]["gif"] = str(gif)
            cost, _ = energy_landscape(model, env, pairs[0, 1])
            c = (np.arange(cost.shape[0]) + 0.5) * (ARENA_SIZE / cost.shape[0])
            xx, yy = np.meshgrid(c, c)
            euclid = np.where(np.isnan(cost), np.nan, np.hypot(xx - pairs[0, 1, 0], yy - pairs[0, 1, 1]))
            png = save_landscape_png(
                out / "landscape.png",
                [("latent L1 to goal", cost), ("euclidean px to goal", euclid)],
                start=pairs[0, 0],
                goal=pairs[0, 1],
            )
            result["files"]["png"] = str(png)
            js = out / "results.json"
            result["files"]["json"] = str(js)
            atomic_write_text(js, json.dumps(result, indent=1))
        return result
    finally:
        torch.set_num_threads(threads_before)


def plan_from_config(
    checkpoint: str | Path | WorldModel, cfg: Any, *, log: Callable[[str], None] | None = print
) -> dict[str, Any]:
    """What `jepa-world plan` runs: `run_plan_benchmark` with the `plan` section and `seed` of a resolved config."""
    pc = cfg.plan
    return run_plan_benchmark(
        checkpoint,
        env_name=str(pc.env),
        episodes=pc.episodes,
        settings=planner_settings(pc),
        max_steps=pc.max_steps,
        seed=cfg.seed,
        output=pc.output,
        stop_radius=pc.stop_radius,
        reduce=str(pc.reduce),
        agent=str(pc.agent),
        policy_fraction=pc.policy_fraction,
        terminal_value=pc.terminal_value,
        simulations=pc.simulations,
        search_depth=pc.search_depth,
        baselines=pc.baselines,
        simulator_ceiling=pc.ceiling,
        gif_episodes=pc.gif_episodes,
        num_threads=pc.threads or None,
        compiled=pc.compile,
        log=log,
    )


AGENTS = ("cem", "mppi", "policy", "policy+cem", "mcts")
POLICY_AGENTS = ("policy", "policy+cem", "mcts")


def _load_policy(checkpoint: str | Path, agent: str) -> PolicyRun:
    try:
        policy = load_policy(checkpoint)
    except CheckpointError as err:
        raise ValueError(f"--agent {agent} needs a train-policy run as --checkpoint: {err}") from None
    if agent in ("mcts",) and policy.critic is None:
        raise ValueError(f"--agent mcts needs an actor-critic policy (its critic values the leaves); {checkpoint} "
                         f"is a {policy.method} policy")  # fmt: skip
    return policy


def _latent_shape(model: WorldModel, env: Any) -> tuple[int, ...]:
    """The shape `[HW, D]` of one frame's latent (what a policy trained in this model reads)."""
    return tuple(encode_pixels(model, env.render_state(np.array([20.0, 20.0]))[None]).shape[2:])


def model_image_size(model: WorldModel) -> int:
    """Input side of the world model's encoder (``img_size`` of a pooled encoder or a ViT)."""
    enc = pixel_encoder(model.encoder)  # through a lift and a readout: the ViT's input
    size = getattr(enc, "input_size", None) or getattr(enc, "img_size", None)  # (H, W); a pooled encoder's side
    if isinstance(size, list | tuple):
        size = size[-1]
    if not isinstance(size, int):
        raise ValueError(f"cannot tell the input size of encoder {type(enc).__name__}")
    return size
