"""The goal-reaching protocol: start / goal pairs, the one episode runner, and the results table.

The protocol: start and goal in opposite rooms (``TwoRoomsEnv.sample_eval_pair``), ``max_steps`` = 200 environment
steps, success if the FINAL distance to the goal is < ``SUCCESS_THRESHOLD`` (4.5 px, arena units). Every agent sees the
same start / goal pairs. Episodes run in parallel: E true states are stepped together through the simulator
(``TwoRoomsEnv.transition``), which only this runner and the simulator-CEM ceiling touch. On a cluttered env
(``jepa_world.envs.clutter``) episode ``i`` has its own scene (texture, distractors) drawn from
``numpy.random.default_rng((scene_seed, i))``, which also moves its distractors: every agent sees the same scenes,
and the goal image shows the goal in the episode's first scene (its distractors where they start).

Shapes: E parallel episodes; pairs ``float32 [E, 2, 2]``, states and goals ``float [E, 2]``, paths
``float [E, T + 1, 2]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jepa_world.envs.clutter import Scene
from jepa_world.envs.policies import Policy
from jepa_world.envs.two_rooms import SUCCESS_THRESHOLD, TwoRoomsEnv
from jepa_world.eval.agents import Agent, Observation, PolicyAgent, render_batch


def eval_pairs(env: TwoRoomsEnv, num_episodes: int, seed: int = 0) -> np.ndarray:
    """Protocol start / goal pairs ``float32 [E, 2, 2]`` (``[:, 0]`` starts, ``[:, 1]`` goals), opposite rooms.

    The pairs depend only on ``seed``: every agent evaluated with the same seed sees the same pairs.
    """
    if not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"num_episodes must be an int >= 1, got {num_episodes!r}")
    rng = np.random.default_rng(seed)
    return np.stack([np.stack(env.sample_eval_pair(rng)) for _ in range(num_episodes)]).astype(np.float32)


@dataclass
class EpisodeStats:
    """Results of one agent on E episodes.

    Attributes:
        name: Agent name.
        success: ``bool [E]`` final distance < 4.5 px.
        final_distance: ``float [E]`` px.
        paths: True states ``float [E, T + 1, 2]`` (start included).
        act_seconds: Wall time of all ``act`` calls (all E episodes together).
        steps: Env steps per episode T.
        num_plans: Replans (batched over E) for planning agents, else 0.
        scenes: On a cluttered env, each episode's scene at every step ``[E][T + 1]`` (for the GIF), else None.
    """

    name: str
    success: np.ndarray
    final_distance: np.ndarray
    paths: np.ndarray
    act_seconds: float
    steps: int
    num_plans: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    scenes: list[list[Scene]] | None = field(default=None, repr=False)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.success))

    @property
    def ms_per_step(self) -> float:
        """Agent time per env step for one episode (batched time divided by E)."""
        return 1e3 * self.act_seconds / (self.steps * len(self.success))

    @property
    def ms_per_replan(self) -> float:
        """Wall time of one batched replan over all E episodes."""
        return 1e3 * self.act_seconds / self.num_plans if self.num_plans else 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers (per-episode lists included)."""
        return {
            "name": self.name,
            "success_rate": self.success_rate,
            "mean_final_distance": float(np.mean(self.final_distance)),
            "ms_per_step": self.ms_per_step,
            "ms_per_replan_batched": self.ms_per_replan,
            "num_plans": self.num_plans,
            "act_seconds": self.act_seconds,
            "success": [bool(s) for s in self.success],
            "final_distance": [float(d) for d in self.final_distance],
            **self.extra,
        }


def run_episodes(
    env: TwoRoomsEnv,
    agent: Agent,
    pairs: np.ndarray,
    *,
    max_steps: int = 200,
    progress: Callable[[int], None] | None = None,
    scene_seed: int = 0,
) -> EpisodeStats:
    """Run E parallel episodes of ``agent`` from the protocol pairs and judge the final states.

    The runner owns the simulator: it steps the true states with ``env.transition`` and renders observations with
    ``env.render_state``. Non-privileged agents get pixels only (``obs.state`` and ``obs.goal_state`` are None).
    Actions must lie inside ``env.action_space`` (checked every step).

    Args:
        env: The environment (its own episode state is not touched).
        agent: The agent.
        pairs: ``[E, 2, 2]`` from ``eval_pairs``.
        max_steps: Steps per episode (protocol: 200).
        progress: Called with the step index after each step, or None.
        scene_seed: Seeds the episodes' scenes on a cluttered env (a plain env draws nothing).
    """
    pairs = np.asarray(pairs, dtype=np.float64)
    if pairs.ndim != 3 or pairs.shape[1:] != (2, 2):
        raise ValueError(f"pairs must have shape [E, 2, 2], got {pairs.shape}")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
    e = pairs.shape[0]
    states, goals = pairs[:, 0].copy(), pairs[:, 1].copy()
    scene_rngs = [np.random.default_rng((scene_seed, i)) for i in range(e)]
    scenes = [env.sample_scene(rng) for rng in scene_rngs]
    history = [[scene] for scene in scenes] if env.cluttered else None
    goal_pixels = render_batch(env, goals, scenes) if agent.needs_pixels else None
    low, high = env.action_space.low, env.action_space.high
    paths = np.empty((e, max_steps + 1, 2), dtype=np.float64)
    paths[:, 0] = states
    agent.reset(e)
    act_seconds = 0.0
    for t in range(max_steps):
        obs = Observation(
            pixels=render_batch(env, states, scenes) if agent.needs_pixels else None,
            goal_pixels=goal_pixels,
            state=states.copy() if agent.privileged else None,
            goal_state=goals.copy() if agent.privileged else None,
        )
        tic = time.perf_counter()
        a = agent.act(obs)
        act_seconds += time.perf_counter() - tic
        a = np.asarray(a, dtype=np.float32)
        if a.shape != (e, *env.action_space.shape):
            raise ValueError(
                f"{agent.name} returned actions of shape {a.shape}, expected {(e, *env.action_space.shape)}"
            )
        if not (np.all(np.isfinite(a)) and np.all(a >= low) and np.all(a <= high)):
            raise ValueError(f"{agent.name} returned actions outside the action space [{low}, {high}]: {a}")
        states = env.transition(states, a)
        if history is not None:  # a plain env's one scene never changes
            scenes = [env.advance_scene(scene, rng) for scene, rng in zip(scenes, scene_rngs, strict=True)]
            for past, scene in zip(history, scenes, strict=True):
                past.append(scene)
        paths[:, t + 1] = states
        if progress is not None:
            progress(t)
    dist = np.linalg.norm(states - goals, axis=-1)
    return EpisodeStats(
        name=agent.name,
        success=dist < SUCCESS_THRESHOLD,
        final_distance=dist,
        paths=paths,
        act_seconds=act_seconds,
        steps=max_steps,
        num_plans=getattr(agent, "num_plans", 0),
        scenes=history,
    )


def format_table(
    rows: list[dict[str, Any]], *, title: str | None = None, distance: str = "mean final dist (px)"
) -> str:
    """Markdown table of ``EpisodeStats.summary()`` rows: success, mean final distance, plan time.

    Args:
        rows: The rows.
        title: A line above the table, or None.
        distance: The header of the distance column (its unit differs per env).
    """
    lines = [title, ""] if title else []
    lines += [
        f"| agent | success | {distance} | plan ms / step / episode | ms / batched replan |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        replan = f"{r['ms_per_replan_batched']:.0f}" if r["num_plans"] else "-"
        lines.append(
            f"| {r['name']} | {100 * r['success_rate']:.0f}% ({sum(r['success'])}/{len(r['success'])}) | "
            f"{r['mean_final_distance']:.1f} | {r['ms_per_step']:.2f} | {replan} |"
        )
    return "\n".join(lines)


def evaluate_policy(env: TwoRoomsEnv, policy: Policy, *, num_episodes: int = 50, seed: int = 0) -> dict[str, Any]:
    """Protocol evaluation of a true-state policy: ``eval_pairs``, ``env.max_steps`` steps, final-state success.

    A convenience over ``run_episodes`` with a ``PolicyAgent`` (the policy draws from
    ``numpy.random.default_rng((seed, 1))``). ``env``'s own episode state is not touched.

    Returns:
        ``{"success_rate": float, "successes": bool [E], "final_distance": float [E], "final_state": float [E, 2],
        "pairs": float32 [E, 2, 2]}`` with ``pairs[:, 0]`` the starts and ``pairs[:, 1]`` the goals.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    pairs = eval_pairs(env, num_episodes, seed)
    stats = run_episodes(env, PolicyAgent(policy=policy, seed=seed), pairs, max_steps=env.max_steps)
    return {
        "success_rate": stats.success_rate,
        "successes": stats.success,
        "final_distance": stats.final_distance,
        "final_state": stats.paths[:, -1],
        "pairs": pairs,
    }
