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
from dataclasses import asdict, dataclass, fields
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
from jepa_world.envs.geometry import discrete_action_table
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
from jepa_world.eval.viz import save_plan_pictures
from jepa_world.models.readout import pixel_encoder
from jepa_world.models.world_model import WorldModel

PLAN_ENVS = tuple(e.value for e in PlanEnv)  # the config's choice: one list


def planner_settings(plan: Any) -> PlannerSettings:
    """The `PlannerSettings` part of a `plan` config section (a `PlanConfig` or its DictConfig)."""
    return PlannerSettings(**{f.name: getattr(plan, f.name) for f in fields(PlannerSettings)})


@dataclass(frozen=True)
class AgentContext:
    """What an agent builder reads: the run's `plan` section and what the benchmark has loaded and calibrated.

    Attributes:
        plan: The `plan` section (`PlanConfig` or its DictConfig).
        settings: The planner settings of `plan` (`planner` set by a cem / mppi agent).
        model: The world model, in eval mode.
        policy: The train-policy run of the policy agents, else None.
        env: The protocol's environment.
        stop_threshold: Latent distance of the stop rule, or None.
        seed: Seed of the pairs and of every agent's sampling.
    """

    plan: Any
    settings: PlannerSettings
    model: WorldModel
    policy: PolicyRun | None
    env: Any
    stop_threshold: float | None
    seed: int

    def common(self) -> dict[str, Any]:
        """Keyword arguments every learned agent takes."""
        return dict(model=self.model, stop_threshold=self.stop_threshold)

    def mpc(self) -> dict[str, Any]:
        """Keyword arguments of the agents that plan with `settings` (bounds from the env's action space)."""
        max_norm = float(self.env.action_space.high.max())
        return dict(settings=self.settings, max_norm=max_norm, low=-max_norm, high=max_norm,
                    reduce=str(self.plan.reduce), seed=self.seed)  # fmt: skip


def _world_model_agent(ctx: AgentContext) -> Agent:
    compiled = ctx.plan.compile
    name = f"world model + {ctx.settings.planner.upper()}" + (" (compiled)" if compiled else "")
    return WorldModelAgent(**ctx.common(), **ctx.mpc(), compiled=compiled, name=name)


def _policy_agent(ctx: AgentContext) -> Agent:
    return LearnedPolicyAgent(policy=ctx.policy, **ctx.common(), name=f"{ctx.policy.method} policy")


def _policy_cem_agent(ctx: AgentContext) -> Agent:
    return PolicyCEMAgent(policy=ctx.policy, policy_fraction=ctx.plan.policy_fraction,
                          terminal_value=ctx.plan.terminal_value, **ctx.common(), **ctx.mpc(),
                          name=f"{ctx.policy.method} policy + CEM")  # fmt: skip


def _mcts_agent(ctx: AgentContext) -> Agent:
    sims = ctx.plan.simulations
    return MCTSAgent(policy=ctx.policy, actions=discrete_action_table(), simulations=sims,
                     max_depth=ctx.plan.search_depth, **ctx.common(),
                     name=f"MCTS ({sims} sims, 9 actions)")  # fmt: skip


# `plan.agent` -> the builder of the learned agent (the first row of the table).
LEARNED_AGENTS: dict[str, Callable[[AgentContext], Agent]] = {
    "cem": _world_model_agent,
    "mppi": _world_model_agent,
    "policy": _policy_agent,
    "policy+cem": _policy_cem_agent,
    "mcts": _mcts_agent,
}
AGENTS = tuple(LEARNED_AGENTS)
POLICY_AGENTS = ("policy", "policy+cem", "mcts")  # the agents that read a train-policy run


def _comparison_agents(ctx: AgentContext) -> list[Agent]:
    """The rows after the learned agent: the baselines (`plan.baselines`) and the simulator ceiling (`plan.ceiling`)."""
    agents: list[Agent] = []
    if ctx.plan.baselines:
        agents += [
            PolicyAgent(policy="random", seed=ctx.seed),
            PolicyAgent(policy="noop", name="no-op", seed=ctx.seed),
            PolicyAgent(policy="straight_line", name="straight line", seed=ctx.seed),
        ]
    if ctx.plan.ceiling:
        planner = ctx.settings.planner.upper()
        agents.append(
            SimulatorCEMAgent(env=ctx.env, settings=ctx.settings, seed=ctx.seed, name=f"{planner} + true sim")
        )
    return agents


def _check(plan: Any, env_name: str, agent: str) -> None:
    if env_name not in PLAN_ENVS:
        raise ValueError(f"plan.env must be one of {PLAN_ENVS}, got {env_name!r}")
    if agent not in AGENTS:
        raise ValueError(f"plan.agent must be one of {AGENTS}, got {agent!r}")
    if (agent == "mcts") != (env_name == "two_rooms_discrete"):
        raise ValueError(
            f"agent={agent!r} on env {env_name!r}: tree search needs the discrete env (two_rooms_discrete, nine "
            "actions) and the discrete env needs tree search (agent='mcts')"
        )
    if plan.compile and agent not in ("cem", "mppi"):
        raise ValueError(f"plan.compile compiles the rollout of the cem / mppi agents, not of agent={agent!r}")


def run_plan_benchmark(
    checkpoint: str | Path | WorldModel,
    *,
    plan: Any = None,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Evaluate the learned agent against the baselines on the same protocol pairs.

    Agents, in table order: the learned agent (``plan.agent``, built by ``LEARNED_AGENTS``), random actions, no-op,
    straight line to the goal (``plan.baselines``), and the planner on the true simulator (``plan.ceiling``). Writes
    ``results.json``, ``episodes.gif`` and ``landscape.png`` (``viz.save_plan_pictures``) to ``plan.output`` when set.

    Args:
        checkpoint: A world-model run folder / checkpoint (see ``checkpoints.load_world_model``) or a ``WorldModel``;
            for the policy agents, a ``train-policy`` run (its world model is the one it was trained in).
        plan: The ``plan`` section: a ``PlanConfig`` (None: its defaults) or the resolved config's DictConfig. Its
            planner settings, protocol (env, episodes, max_steps), stop rule, agent and its options, rows, pictures,
            threads (0: leave as is) and output folder are all read from here.
        seed: Seed of the pairs and of every agent's sampling (the config's top-level ``seed``).
        log: Progress printer, or None.

    Returns:
        ``{"protocol": {...}, "settings": {...}, "results": [summary per agent], "table": str, "files": {...}}``.
    """
    plan = PlanConfig() if plan is None else plan
    say = log or (lambda _msg: None)
    env_name, agent, episodes, max_steps = str(plan.env), str(plan.agent), plan.episodes, plan.max_steps
    _check(plan, env_name, agent)
    settings = planner_settings(plan)
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
    if plan.threads:
        torch.set_num_threads(plan.threads)
    try:
        env = make_env(env_name, image_size=model_image_size(model), max_steps=max_steps).unwrapped  # the protocol's
        pairs = eval_pairs(env, episodes, seed)
        if policy is not None:
            check_policy_fits(policy, model, latent_shape=_latent_shape(model, env))
        threshold = None
        if plan.stop_radius:
            threshold = calibrate_stop_threshold(model, env, radius=plan.stop_radius, seed=seed)
            say(f"stop rule: latent distance < {threshold:.4f} (median for a {plan.stop_radius} px move)")
        ctx = AgentContext(plan=plan, settings=settings, model=model, policy=policy, env=env,
                           stop_threshold=threshold, seed=seed)  # fmt: skip
        agents = [LEARNED_AGENTS[agent](ctx), *_comparison_agents(ctx)]
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
                "reduce": str(plan.reduce),
                "stop_radius": plan.stop_radius,
                "stop_threshold": threshold,
                "num_threads": torch.get_num_threads(),
                "compile": plan.compile,
            },
            "results": rows,
            "table": table,
            "files": {},
        }
        if plan.output is not None:
            out = Path(plan.output)
            out.mkdir(parents=True, exist_ok=True)
            result["files"] = save_plan_pictures(out, model=model, env=env, pairs=pairs, paths=stats[0].paths,
                                                 scenes=stats[0].scenes, gif_episodes=plan.gif_episodes)  # fmt: skip
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
    return run_plan_benchmark(checkpoint, plan=cfg.plan, seed=cfg.seed, log=log)


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
    size = getattr(enc, "input_size", None)  # (H, W)
    if isinstance(size, list | tuple):
        size = size[-1]
    if not isinstance(size, int):
        raise ValueError(f"cannot tell the input size of encoder {type(enc).__name__}")
    return size
