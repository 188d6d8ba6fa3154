"""The benchmark behind `jepa-world plan`: the learned world model + planner against baselines, one table.

Agents, in table order: the learned world model + planner, random actions, no-op, straight line to the goal, and the
planner on the true simulator (ceiling), all on the same protocol pairs (``protocol.eval_pairs``). Settings come from
the config's ``plan`` section (``config.PlanConfig``).
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
from jepa_world.checkpoints.load import load_world_model
from jepa_world.config import PlanConfig, PlannerSettings
from jepa_world.envs import make_env
from jepa_world.envs.two_rooms import ARENA_SIZE, SUCCESS_THRESHOLD
from jepa_world.eval.agents import Agent, PolicyAgent, SimulatorCEMAgent, WorldModelAgent, calibrate_stop_threshold
from jepa_world.eval.protocol import EpisodeStats, eval_pairs, format_table, run_episodes
from jepa_world.eval.viz import energy_landscape, save_episodes_gif, save_landscape_png
from jepa_world.models.world_model import WorldModel

_PLAN = PlanConfig()  # the defaults of the `plan` section: the one place they are written


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
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Evaluate the learned world model + planner against the baselines on the same protocol pairs.

    Agents, in table order: the learned world model + planner, random actions, no-op, straight line to the goal, and
    the planner on the true simulator (ceiling). Writes ``results.json``, ``episodes.gif`` and ``landscape.png`` to
    ``output`` when given.

    Args:
        checkpoint: A world-model run folder / checkpoint (see ``checkpoints.load_world_model``) or a ``WorldModel``.
        env_name: ``"two_rooms"`` or ``"point_arena"``.
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
        log: Progress printer, or None.

    Returns:
        ``{"protocol": {...}, "settings": {...}, "results": [summary per agent], "table": str, "files": {...}}``.
    """
    settings = settings or PlannerSettings()
    say = log or (lambda _msg: None)
    if env_name not in ("two_rooms", "point_arena"):
        raise ValueError(f"env_name must be 'two_rooms' or 'point_arena' for `plan`, got {env_name!r}")
    if isinstance(checkpoint, WorldModel):
        model, source = checkpoint, "<in-memory WorldModel>"
    else:
        model, source = load_world_model(checkpoint), str(checkpoint)
    model.eval()
    threads_before = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        env = make_env(env_name, image_size=model_image_size(model), max_steps=max_steps)
        pairs = eval_pairs(env, episodes, seed)
        threshold = None
        if stop_radius:
            threshold = calibrate_stop_threshold(model, env, radius=stop_radius, seed=seed)
            say(f"stop rule: latent distance < {threshold:.4f} (median for a {stop_radius} px move)")
        max_norm = float(env.action_space.high.max())
        agents: list[Agent] = [
            WorldModelAgent(model=model, settings=settings, max_norm=max_norm, low=-max_norm, high=max_norm,
                            stop_threshold=threshold, reduce=reduce, seed=seed,
                            name=f"world model + {settings.planner.upper()}"),
        ]  # fmt: skip
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
        for agent in agents:
            tic = time.perf_counter()
            st = run_episodes(env, agent, pairs, max_steps=max_steps)
            say(f"{agent.name}: success {100 * st.success_rate:.0f}% ({time.perf_counter() - tic:.1f} s)")
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
                "reduce": reduce,
                "stop_radius": stop_radius,
                "stop_threshold": threshold,
                "num_threads": torch.get_num_threads(),
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
                gif = save_episodes_gif(out / "episodes.gif", env, stats[0].paths[:n], pairs[:n, 1])
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
        baselines=pc.baselines,
        simulator_ceiling=pc.ceiling,
        gif_episodes=pc.gif_episodes,
        num_threads=pc.threads or None,
        log=log,
    )


def model_image_size(model: WorldModel) -> int:
    """Input side of the world model's encoder (``img_size`` of a pooled encoder or a ViT)."""
    enc = model.encoder
    enc = getattr(enc, "backbone", enc)  # a readout over a ViT: the ViT's input
    size = getattr(enc, "img_size", None)
    if size is None and hasattr(enc, "grid_size"):
        size = enc.grid_size[-1] * enc.patch_size
    if isinstance(size, list | tuple):
        size = size[-1]
    if not isinstance(size, int):
        raise ValueError(f"cannot tell the input size of encoder {type(enc).__name__}")
    return size
