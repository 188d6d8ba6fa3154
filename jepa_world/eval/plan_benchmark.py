"""The benchmark behind `jepa-world plan`: the learned agent against baselines, one table.

Agents, in table order: the learned agent (the world model + CEM / MPPI, or a policy learned in imagination: alone,
inside CEM, or guiding MCTS over discrete actions), then the floors and the ceiling, all on the same pairs. Two kinds of
protocol (``plan.protocol``):

- ``ours`` on our envs (two_rooms, point_arena, two_rooms_clutter, two_rooms_discrete): start and goal in opposite
  rooms (``protocol.eval_pairs``), final-state success; floors random, no-op, straight line; ceiling the planner on
  the true simulator.
- ``swm`` / ``strict`` on any env whose state a stored row restores (swm/PushT-v1, swm/TwoRoom-v1): pairs drawn from
  the episodes (`jepa_world.eval.field`), success by the env's own check; floors no-op, random, replay of the
  dataset's actions; optional ceiling (slow).

``plan.env`` defaults to the env the world model's episodes came from, and a model planned on another env (or other
env_kwargs) is warned about, naming both. A world model trained with ``wm.frameskip=k`` plans in blocks of k env
actions (`agents.ActionBlocks`; the planner's horizon counts blocks). Settings come from the config's ``plan`` section
(``config.PlanConfig``).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from jepa_world.atomic import atomic_write_text
from jepa_world.checkpoints.io import CheckpointError
from jepa_world.checkpoints.policy import PolicyRun, check_policy_fits, load_policy
from jepa_world.checkpoints.world_model import load_world_model_run
from jepa_world.config import PlanConfig, PlanEnv, PlannerSettings
from jepa_world.envs import ENV_ALIASES, make_env, register_envs
from jepa_world.envs.field_envs import resolve_env_id
from jepa_world.envs.two_rooms import SUCCESS_THRESHOLD
from jepa_world.eval.agents import (
    ActionBlocks,
    Agent,
    PolicyAgent,
    SimulatorCEMAgent,
    calibrate_stop_threshold,
    encode_pixels,
)
from jepa_world.eval.field_benchmark import run_field_benchmark
from jepa_world.eval.learned_agents import (
    AGENTS,
    LEARNED_AGENTS,
    POLICY_AGENTS,
    AgentContext,
    model_frameskip,
    model_image_size,
    planner_settings,
)
from jepa_world.eval.protocol import EpisodeStats, eval_pairs, format_table, run_episodes
from jepa_world.eval.viz import save_plan_pictures
from jepa_world.models.world_model import WorldModel

PLAN_ENVS = tuple(e.value for e in PlanEnv)  # our envs (plan.env also takes gymnasium ids)
PROTOCOLS = ("ours", "swm", "strict")


def _comparison_agents(ctx: AgentContext) -> list[Agent]:
    """The rows after the learned agent: the baselines (`plan.baselines`) and the simulator ceiling (`plan.ceiling`)."""
    agents: list[Agent] = []
    if ctx.plan.baselines:
        agents += [
            PolicyAgent(policy="random", seed=ctx.seed),
            PolicyAgent(policy="noop", name="no-op", seed=ctx.seed),
            PolicyAgent(policy="straight_line", name="straight line", seed=ctx.seed),
        ]
    if ctx.plan.ceiling is None or ctx.plan.ceiling:  # null: on for our envs
        planner = ctx.settings.planner.upper()
        agents.append(
            SimulatorCEMAgent(env=ctx.env, settings=ctx.settings, seed=ctx.seed, name=f"{planner} + true sim")
        )
    return agents


def _check(plan: Any, env_name: str, agent: str, protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"plan.protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "ours" and env_name not in PLAN_ENVS:
        raise ValueError(f"plan.protocol=ours runs on our envs {PLAN_ENVS}; plan.env={env_name!r} takes "
                         "plan.protocol=swm or strict")  # fmt: skip
    if protocol != "ours" and env_name in PLAN_ENVS:
        raise ValueError(f"plan.protocol={protocol} reads start and goal from episodes with env states, which our env "
                         f"{env_name!r} does not record; use plan.protocol=ours")  # fmt: skip
    if agent not in AGENTS:
        raise ValueError(f"plan.agent must be one of {AGENTS}, got {agent!r}")
    if (agent == "mcts") != (env_name == "two_rooms_discrete"):
        raise ValueError(
            f"agent={agent!r} on env {env_name!r}: tree search needs the discrete env (two_rooms_discrete, nine "
            "actions) and the discrete env needs tree search (agent='mcts')"
        )
    if protocol != "ours" and agent not in ("cem", "mppi"):
        raise ValueError(f"plan.protocol={protocol} evaluates the world model with cem / mppi; plan.agent={agent!r} "
                         "runs on our envs (plan.protocol=ours)")  # fmt: skip
    if plan.compile and agent not in ("cem", "mppi"):
        raise ValueError(f"plan.compile compiles the rollout of the cem / mppi agents, not of agent={agent!r}")


# ------------------------------------------------------------------------------------------------ the model's env
def run_episodes_root(run_config: Any, source: Path | None) -> Path | None:
    """The episodes a world-model run trained on: ``wm.episodes``, else the folder it collected into
    (``train.output_dir/episodes``, or ``<run>/episodes`` next to its checkpoints when the run was moved)."""
    if run_config is None:
        return None
    from jepa_world.training.tasks import episodes_of

    root = episodes_of(run_config)
    if not root.is_dir() and source is not None and OmegaConf.select(run_config, "wm.episodes") is None:
        moved = Path(source).parent.parent / "episodes"  # <run>/checkpoints/step_N.pt -> <run>/episodes
        if moved.is_dir():
            return moved
    return root


def _same_env(name: str, ep_name: str | None, ep_id: str | None) -> bool:
    def ids(n: str | None) -> set[str]:
        if n is None:
            return set()
        n = {"two_rooms_discrete": "two_rooms"}.get(n, n)  # the same world, with MCTS's nine actions
        return {n, n.split(":", 1)[-1], ENV_ALIASES.get(n, n)}

    return bool(ids(name) & (ids(ep_name) | ids(ep_id)))


def check_plan_env(env: str) -> None:
    """An env that is not ours resolves to a registered gymnasium id (importing the package that registers it).

    Raises:
        ValueError: naming plan.env, what would be valid, and what to install when its package is missing.
    """
    if env in PLAN_ENVS:
        return
    register_envs()
    try:
        resolve_env_id(env)
    except ImportError as err:
        raise ValueError(f"plan.env={env!r}: {err}") from None
    except ValueError as err:
        raise ValueError(f"plan.env={env!r}: expected one of {', '.join(PLAN_ENVS)}, or a registered gymnasium id "
                         f"(swm/PushT-v1, swm/TwoRoom-v1, module:EnvId) ({err})") from None  # fmt: skip


def resolve_plan_env(plan: Any, episodes_root: Path | None) -> tuple[str, dict[str, Any], str]:
    """The env to plan on, its constructor args and where they came from; warns on a mismatch with the episodes.

    ``plan.env`` null: the env the world model's episodes came from (their metadata's ``env_name`` / ``env_id``),
    ``two_rooms`` when unknown. ``plan.env_kwargs`` empty: the episodes' own ``env_kwargs`` (same env only).

    Returns:
        ``(env name, env kwargs, origin in words)``.
    """
    from jepa_world.eval.field import episodes_env

    ep_name = ep_id = None
    ep_kwargs: dict[str, Any] = {}
    if episodes_root is not None and episodes_root.is_dir():
        ep_name, ep_id, ep_kwargs = episodes_env(episodes_root)
    given = dict(plan.env_kwargs or {})
    if plan.env is None:
        if ep_name is None and ep_id is None:
            return "two_rooms", given, "plan.env unset and the model's episodes name no env: two_rooms"
        name = ep_name if ep_name in PLAN_ENVS or ep_id is None else ep_id
        origin = f"the env of the world model's episodes ({episodes_root})"
    else:
        name, origin = str(plan.env), "plan.env"
        if (ep_name or ep_id) and not _same_env(name, ep_name, ep_id):
            warnings.warn(f"plan.env={name!r}, but the world model's episodes ({episodes_root}) came from env "
                          f"{ep_name or ep_id!r}: the model is planned on an env it was not trained on",
                          stacklevel=3)  # fmt: skip
            check_plan_env(name)
            return name, given, origin
    if given and ep_kwargs != given and (ep_name or ep_id):
        warnings.warn(f"plan.env_kwargs={given}, but the world model's episodes ({episodes_root}) were collected "
                      f"with env_kwargs={ep_kwargs}", stacklevel=3)  # fmt: skip
    check_plan_env(name)
    return name, given or ep_kwargs, origin


def _protocol(plan: Any, env_name: str) -> str:
    if plan.protocol is not None:
        return str(plan.protocol)
    return "ours" if env_name in PLAN_ENVS else "swm"


def run_plan_benchmark(
    checkpoint: str | Path | WorldModel,
    *,
    plan: Any = None,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Evaluate the learned agent against the floors and the ceiling on the same pairs of one protocol.

    Protocols (``plan.protocol``): ``ours`` on our envs: the learned agent (``plan.agent``, built by
    ``LEARNED_AGENTS``), random actions, no-op, straight line to the goal (``plan.baselines``) and the planner on the
    true simulator (``plan.ceiling``); writes ``results.json``, ``episodes.gif`` and ``landscape.png``
    (``viz.save_plan_pictures``) to ``plan.output`` when set. ``swm`` / ``strict`` on a field env
    (`jepa_world.eval.field`): the learned agent, no-op, random, replay of the dataset's actions and (``plan.ceiling``)
    the planner on the true simulator; writes ``results.json`` and ``pairs.json``.

    Args:
        checkpoint: A world-model run folder / checkpoint (see ``checkpoints.load_world_model``) or a ``WorldModel``;
            for the policy agents, a ``train-policy`` run (its world model is the one it was trained in).
        plan: The ``plan`` section: a ``PlanConfig`` (None: its defaults) or the resolved config's DictConfig. Its
            planner settings, protocol (env, episodes, max_steps, or offset, budget, pairs), stop rule, agent and its
            options, rows, pictures, threads (0: leave as is) and output folder are all read from here.
        seed: Seed of the pairs of ``ours`` (and of strict without ``plan.pair_seed``) and of every agent's sampling
            (the config's top-level ``seed``).
        log: Progress printer, or None.

    Returns:
        ``{"protocol": {...}, "settings": {...}, "results": [summary per agent], "table": str, "files": {...}}``.
    """
    plan = PlanConfig() if plan is None else plan
    say = log or (lambda _msg: None)
    agent = str(plan.agent)
    settings = planner_settings(plan)
    if agent in ("cem", "mppi"):
        settings = PlannerSettings(**{**asdict(settings), "planner": agent})
    policy = run_config = run_source = None
    if isinstance(checkpoint, WorldModel):
        model, source = checkpoint, "<in-memory WorldModel>"
    else:
        if agent in POLICY_AGENTS:
            policy = _load_policy(checkpoint, agent)
            run = load_world_model_run(policy.world_model)
        else:
            run = load_world_model_run(checkpoint)
        model, source, run_config, run_source = run.model, str(checkpoint), run.config, run.source
    episodes_root = run_episodes_root(run_config, run_source)
    env_name, env_kwargs, env_origin = resolve_plan_env(plan, episodes_root)
    protocol = _protocol(plan, env_name)
    _check(plan, env_name, agent, protocol)
    model.eval()
    threads_before = torch.get_num_threads()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    try:
        common = dict(model=model, source=source, plan=plan, env_name=env_name, env_kwargs=env_kwargs, agent=agent,
                      settings=settings, seed=seed, say=say, run_config=run_config)  # fmt: skip
        if protocol == "ours":
            result = _run_ours(**common, policy=policy)
        else:
            result = run_field_benchmark(**common, protocol=protocol, episodes_root=episodes_root)
        result["protocol"]["env_from"] = env_origin
        if plan.output is not None:
            js = Path(plan.output) / "results.json"
            result["files"]["json"] = str(js)
            atomic_write_text(js, json.dumps(result, indent=1))
        return result
    finally:
        torch.set_num_threads(threads_before)


def _run_ours(
    *,
    model: WorldModel,
    source: str,
    plan: Any,
    env_name: str,
    env_kwargs: dict[str, Any],
    agent: str,
    settings: PlannerSettings,
    seed: int,
    say: Callable[[str], None],
    run_config: Any,
    policy: PolicyRun | None,
) -> dict[str, Any]:
    """Our Two-Rooms protocol: ``plan.episodes`` opposite-room pairs, ``plan.max_steps`` steps, final-state success."""
    episodes, max_steps = plan.episodes, plan.max_steps
    env = make_env(env_name, image_size=model_image_size(model), max_steps=max_steps, **env_kwargs).unwrapped
    pairs = eval_pairs(env, episodes, seed)
    frameskip = 1
    if agent in ("cem", "mppi"):
        frameskip = model_frameskip(model, int(np.prod(env.action_space.shape)), run_config)
    elif int(model.predictor.action_dim) != int(np.prod(env.action_space.shape)):
        raise ValueError(
            f"plan.agent={agent} plans one env action per model step, but the world model takes "
            f"{model.predictor.action_dim}-d actions (a frameskip model: use plan.agent=cem / mppi)"
        )
    if policy is not None:
        check_policy_fits(policy, model, latent_shape=_latent_shape(model, env))
    threshold = None
    if plan.stop_radius:
        threshold = calibrate_stop_threshold(model, env, radius=plan.stop_radius, seed=seed)
        say(f"stop rule: latent distance < {threshold:.4f} (median for a {plan.stop_radius} px move)")
    ctx = AgentContext(plan=plan, settings=settings, model=model, policy=policy, env=env,
                       stop_threshold=threshold, seed=seed, frameskip=frameskip)  # fmt: skip
    learned = LEARNED_AGENTS[agent](ctx)
    if frameskip > 1:
        high = float(env.action_space.high.max())
        learned = ActionBlocks(agent=learned, frameskip=frameskip, action_dim=int(np.prod(env.action_space.shape)),
                               low=-high, high=high)  # fmt: skip
    agents = [learned, *_comparison_agents(ctx)]
    stats: list[EpisodeStats] = []
    for runner in agents:
        tic = time.perf_counter()
        st = run_episodes(env, runner, pairs, max_steps=max_steps, scene_seed=seed)
        say(f"{runner.name}: success {100 * st.success_rate:.0f}% ({time.perf_counter() - tic:.1f} s)")
        stats.append(st)
    rows = [s.summary() for s in stats]
    title = (
        f"{env_name}: protocol ours, {episodes} episodes, {max_steps} steps, success = final distance < "
        f"{SUCCESS_THRESHOLD} px, start/goal in opposite rooms (seed {seed})"
    )
    table = format_table(rows, title=title)
    result: dict[str, Any] = {
        "checkpoint": source,
        "protocol": {
            "name": "ours",
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
            "frameskip": frameskip,
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
    return result


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
