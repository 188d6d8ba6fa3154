"""`jepa-world plan` on the field's protocols (swm / strict, `jepa_world.eval.field`): the learned agent, the floors
and the ceiling on one set of pairs, one table; ``pairs.json`` and ``results.json`` in ``plan.output``.

Called by `plan_benchmark.run_plan_benchmark` once the env, the protocol and the model are known.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from jepa_world.atomic import atomic_write_text
from jepa_world.config import PlannerSettings
from jepa_world.envs.field_envs import (
    ENV_STATE_SPECS,
    env_state_spec,
    make_field_env,
    renders_with_torch,
    resolve_env_id,
    torch_single_thread,
)
from jepa_world.eval.agents import ActionBlocks, Agent
from jepa_world.eval.field import (
    DEFAULT_PAIRS,
    SWM_PAIR_SEED,
    EpisodeSource,
    bare_env_id,
    distance_unit,
    draw_pairs,
    episode_files,
    episodes_env,
    held_out_files,
    run_field_episodes,
)
from jepa_world.eval.field_agents import ReplayAgent, SimulatorFieldCEMAgent, UniformActionAgent, ZeroActionAgent
from jepa_world.eval.learned_agents import LEARNED_AGENTS, AgentContext, model_frameskip, model_image_size
from jepa_world.eval.protocol import EpisodeStats, format_table
from jepa_world.models.world_model import WorldModel

SUCCESS_AT = {"swm": "any", "strict": "final"}


def episode_source(plan: Any, protocol: str, run_config: Any, episodes_root: Path | None) -> EpisodeSource:
    """The episodes the protocol's pairs come from (see `PlanConfig.episodes_dir`).

    Raises:
        ValueError: No episodes are known, or strict has no held-out episodes (the message says how to get them).
    """
    given = plan.episodes_dir
    if given is not None:
        root = Path(given)
        files = episode_files(root)
        trained = episodes_root is not None and episodes_root.is_dir() and root.resolve() == episodes_root.resolve()
        if protocol == "strict" and trained:
            raise ValueError(
                f"plan.episodes_dir={given!r} is the folder the world model was trained on; strict "
                "needs episodes it never saw (another collection, or train with wm.val_episodes)"
            )
        why = f"plan.episodes_dir={given}" + (", taken as held out" if protocol == "strict" else "")
        return EpisodeSource(
            root=root, files=tuple(files), held_out=protocol == "strict", why=why, metadata=_metadata(root)
        )
    if episodes_root is None:
        raise ValueError(
            f"plan.protocol={protocol} draws its pairs from episodes: pass plan.episodes_dir=FOLDER (an "
            "in-memory model has no run whose episodes could be used)"
        )
    files = episode_files(episodes_root)
    if protocol == "swm":
        return EpisodeSource(
            root=episodes_root,
            files=tuple(files),
            held_out=False,
            why=f"the world model's episodes ({episodes_root})",
            metadata=_metadata(episodes_root),
        )
    val = int(OmegaConf.select(run_config, "wm.val_episodes", default=0) or 0)
    if val < 1:
        raise ValueError(
            "plan.protocol=strict draws its pairs from episodes never trained on: train the world model "
            "with wm.val_episodes=K (its last K episodes are held out) or pass plan.episodes_dir=FOLDER "
            "of other episodes of the same env"
        )
    held = held_out_files(
        files, val_episodes=val, window=int(run_config.wm.window), frameskip=int(run_config.wm.frameskip)
    )
    return EpisodeSource(
        root=episodes_root,
        files=tuple(held),
        held_out=True,
        why=f"the last wm.val_episodes={val} episodes of {episodes_root}, never trained on",
        metadata=_metadata(episodes_root),
    )


def _metadata(root: Path) -> dict[str, Any]:
    from jepa_world.data.episodes import read_metadata

    return read_metadata(root) or {}


def run_field_benchmark(
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
    protocol: str,
    episodes_root: Path | None,
) -> dict[str, Any]:
    """The swm / strict protocol on a field env: pairs, then every agent on them (see the module docstring)."""
    env_id = resolve_env_id(env_name)
    spec = env_state_spec(env_id)
    if spec is None:
        raise ValueError(
            f"plan.protocol={protocol} restores the env into stored rows, which needs an env-state spec; "
            f"{env_name!r} has none (known: {sorted(ENV_STATE_SPECS)})"
        )
    src = episode_source(plan, protocol, run_config, episodes_root)
    ep_name, ep_id, _ = episodes_env(src.root)
    recorded = ep_id or ep_name
    if recorded is not None and bare_env_id(str(recorded)) != bare_env_id(env_id):
        raise ValueError(
            f"the episodes of the pairs ({src.root}) come from env {recorded!r}, not plan.env="
            f"{env_name!r}: their env states cannot be restored into it"
        )
    num_pairs = int(plan.pairs) if plan.pairs is not None else DEFAULT_PAIRS[protocol]
    pair_seed = int(plan.pair_seed) if plan.pair_seed is not None else (SWM_PAIR_SEED if protocol == "swm" else seed)
    image_size = model_image_size(model)
    envs: list[Any] = []
    try:
        envs.append(make_field_env(env_name, image_size=image_size, env_kwargs=env_kwargs))
        with torch_single_thread(renders_with_torch(envs[0])):
            pairs, counts = draw_pairs(
                src,
                protocol=protocol,
                offset=int(plan.offset),
                num_pairs=num_pairs,
                seed=pair_seed,
                env=envs[0],
                env_id=env_id,
            )
            envs += [
                make_field_env(env_name, image_size=image_size, env_kwargs=env_kwargs) for _ in range(len(pairs) - 1)
            ]
            space = envs[0].action_space
            low, high = np.asarray(space.low), np.asarray(space.high)
            action_dim = int(np.prod(space.shape))
            frameskip = model_frameskip(model, action_dim, run_config)
            if plan.stop_radius:
                say("stop rule: off (it is calibrated on our envs' renderer; the field's protocols run to the budget)")
            ctx = AgentContext(
                plan=plan,
                settings=settings,
                model=model,
                policy=None,
                env=envs[0],
                stop_threshold=None,
                seed=seed,
                frameskip=frameskip,
                field=True,
            )
            learned = ActionBlocks(
                agent=LEARNED_AGENTS[agent](ctx), frameskip=frameskip, action_dim=action_dim, low=low, high=high
            )
            agents: list[Agent] = [learned]
            if plan.baselines:
                agents += [
                    ZeroActionAgent(low=low, high=high),
                    UniformActionAgent(low=low, high=high, seed=seed),
                    ReplayAgent(pairs=pairs, low=low, high=high),
                ]
            sim = None
            if plan.ceiling:  # null: off on the field's envs (one env reset per sample: slow)
                sim = make_field_env(env_name, image_size=image_size, env_kwargs=env_kwargs)
                agents.append(
                    SimulatorFieldCEMAgent(
                        sim=sim,
                        env_id=env_id,
                        settings=settings,
                        low=float(np.min(low)),
                        high=float(np.max(high)),
                        seed=seed,
                        name=f"{settings.planner.upper()} + true sim",
                    )
                )
            stats: list[EpisodeStats] = []
            try:
                for runner in agents:
                    tic = time.perf_counter()
                    st = run_field_episodes(
                        envs,
                        env_id,
                        runner,
                        pairs,
                        budget=int(plan.budget),
                        success_at=SUCCESS_AT[protocol],
                        image_size=image_size,
                        seed=pair_seed,
                    )
                    say(f"{runner.name}: success {100 * st.success_rate:.0f}% ({time.perf_counter() - tic:.1f} s)")
                    stats.append(st)
            finally:
                if sim is not None:
                    sim.close()
    finally:
        for env in envs:
            env.close()
    rows = [s.summary() for s in stats]
    where = "any step" if protocol == "swm" else "the final step"
    filters = ""
    if protocol == "strict":
        filters = f", held out; dropped: {counts['solved_at_start']} solved at the start" + (
            f", {counts['same_room']} in one room" if bare_env_id(env_id) == "swm/TwoRoom-v1" else ""
        )
    title = (
        f"{env_name}: protocol {protocol}, {len(pairs)} pairs (goal = row + {plan.offset}{filters}), budget "
        f"{plan.budget} env steps, success = the env's own check at {where} (pair seed {pair_seed}, seed {seed})"
    )
    table = format_table(rows, title=title, distance=f"final dist ({distance_unit(env_id)})")
    result: dict[str, Any] = {
        "checkpoint": source,
        "protocol": {
            "name": protocol,
            "env": env_name,
            "env_id": env_id,
            "env_kwargs": env_kwargs,
            "pairs": len(pairs),
            "pairs_asked": num_pairs,
            "pair_seed": pair_seed,
            "offset": int(plan.offset),
            "budget": int(plan.budget),
            "success": f"{spec.success}, at {where}",
            "episodes": src.why,
            "counts": counts,
            "seed": seed,
            "learned_agent_inputs": "pixels of the env's render() and the stored frame of the goal row; no state",
        },
        "settings": {
            **asdict(settings),
            "agent": agent,
            "reduce": str(plan.reduce),
            "frameskip": frameskip,
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
        pj = out / "pairs.json"
        atomic_write_text(
            pj, json.dumps({"protocol": result["protocol"], "pairs": [p.record() for p in pairs]}, indent=1)
        )
        result["files"]["pairs"] = str(pj)
    return result
