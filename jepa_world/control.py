"""Goal-reaching evaluation under a strict protocol, and the agents it compares (Two-Rooms).

The protocol (facts sheet ``world-models.md`` section 3): start and goal in opposite rooms (``sample_eval_pair``),
``max_steps`` = 200 environment steps, success if the FINAL distance to the goal is < 4.5 px (arena units). Every
agent sees the same start / goal pairs. Episodes run in parallel: E true states are stepped together through the
simulator (``TwoRoomsEnv.transition``), which only the protocol runner and the simulator-CEM ceiling touch.

Agents:
    - ``WorldModelAgent``: the learned world model + a sampling planner (CEM or MPPI). It is NOT privileged: each step
      it receives the pixels of the current observations and of the goal images (``render_state(goal)``), never a
      true state, and it holds no environment. All E episodes are planned together: one world-model rollout call per
      planner iteration covers E x S sampled sequences.
    - ``PolicyAgent``: a true-state baseline from ``jepa_world.envs.policies`` (random, no-op, straight line).
    - ``SimulatorCEMAgent``: the same planner with the true simulator as its model and the Euclidean distance to the
      goal as its cost: the ceiling of what planning over this cost can reach.

Planning choices that moved success in the CPU prototype (facts sheet section 4), all on by default here: replan every
4 steps with a warm start, cost = last step + mean over the horizon (``reduce="last+mean"``), and a stop rule (no action
once the latent distance to the goal is below a threshold calibrated from the encoder alone: the median latent
distance between renderings of a dot and of the same dot moved by ``stop_radius`` px, see
``calibrate_stop_threshold``).

References: PLDM (Sobal et al., 2025), EB-JEPA, V-JEPA 2-AC (Assran et al., 2025), DINO-WM (Zhou et al., 2024).

Shapes: E parallel episodes, S samples, H horizon, A action dim, D latent width; pixels ``uint8 [E, H, W, 3]``,
states and goals ``float [E, 2]``, paths ``float [E, T + 1, 2]``, latents ``[E, 1, HW, D]``.
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jepa_world.data.transforms import frames_to_tensor
from jepa_world.envs.policies import Policy, make_policy
from jepa_world.envs.two_rooms import SUCCESS_THRESHOLD, TwoRoomsEnv
from jepa_world.models.dynamics import WorldModel
from jepa_world.planning import CEMPlanner, CostFn, MPCAgent, MPPIPlanner, Planner

__all__ = [
    "Agent",
    "EpisodeStats",
    "Observation",
    "PlannerSettings",
    "PolicyAgent",
    "SimulatorCEMAgent",
    "WorldModelAgent",
    "calibrate_stop_threshold",
    "energy_landscape",
    "eval_pairs",
    "format_table",
    "make_planner",
    "pixels_to_tensor",
    "run_episodes",
    "run_plan_benchmark",
    "save_episodes_gif",
    "save_landscape_png",
]

PLANNERS = ("cem", "mppi")


# ----------------------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------------------


def pixels_to_tensor(pixels: np.ndarray, *, normalize: bool = True) -> Tensor:
    """Frames as the world model was trained on them (``EpisodeDataset``): ``uint8 [B, H, W, 3]`` -> ``[B, 3, H, W]``.

    Args:
        pixels: RGB frames ``uint8 [B, H, W, 3]``.
        normalize: ImageNet mean / std normalisation (the dataset's default), else values in [0, 1].
    """
    x = np.asarray(pixels)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"pixels must be uint8 [B, H, W, 3], got shape {x.shape}")
    return frames_to_tensor(x, normalize=normalize)


def _render_batch(env: TwoRoomsEnv, states: np.ndarray) -> np.ndarray:
    return np.stack([env.render_state(s) for s in np.asarray(states).reshape(-1, 2)])  # [E, H, W, 3]


def _l1_latent(z: Tensor, z_goal: Tensor) -> Tensor:
    """Per-episode mean |z - z_goal| over all latent dims (the planner's per-step cost with p=1)."""
    return (z - z_goal).abs().flatten(1).mean(dim=1)


def eval_pairs(env: TwoRoomsEnv, num_episodes: int, seed: int = 0) -> np.ndarray:
    """Protocol start / goal pairs ``float32 [E, 2, 2]`` (``[:, 0]`` starts, ``[:, 1]`` goals), opposite rooms.

    Drawn exactly as ``envs.policies.evaluate_policy`` draws them, so both give the same pairs for the same seed.
    """
    if not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"num_episodes must be an int >= 1, got {num_episodes!r}")
    rng = np.random.default_rng(seed)
    return np.stack([np.stack(env.sample_eval_pair(rng)) for _ in range(num_episodes)]).astype(np.float32)


@dataclass
class PlannerSettings:
    """Planner choice and budget for ``make_planner`` (CPU-prototype defaults, facts sheet section 4).

    Attributes:
        planner: ``"cem"`` or ``"mppi"``.
        samples: Samples per episode and iteration S.
        elites: CEM elites (MPPI: top-k weighted, None = all).
        iterations: Planner iterations (= model calls) per replan.
        horizon: Planning horizon H in model steps.
        replan_every: Executed steps between replans.
        temperature: MPPI softmax temperature (in cost units).
        init_std: Initial sampling std in action units.
        momentum: Mean / std momentum.
    """

    planner: str = "cem"
    samples: int = 100
    elites: int | None = 10
    iterations: int = 4
    horizon: int = 40
    replan_every: int = 4
    temperature: float = 0.05
    init_std: float = 1.5
    momentum: float = 0.0


def make_planner(settings: PlannerSettings, *, action_dim: int, max_norm: float, low: float, high: float) -> Planner:
    """Build the CEM or MPPI planner of ``settings`` for a box action space with a norm bound.

    Args:
        settings: Planner settings.
        action_dim: Action dimension A.
        max_norm: Bound on the L2 norm of each sampled action (None-like 0 disables), e.g. 2.45 for Two-Rooms.
        low: Lower bound per dimension.
        high: Upper bound per dimension.
    """
    if settings.planner not in PLANNERS:
        raise ValueError(f"planner must be one of {PLANNERS}, got {settings.planner!r}")
    common = dict(
        horizon=settings.horizon,
        action_dim=action_dim,
        num_samples=settings.samples,
        iterations=settings.iterations,
        low=low,
        high=high,
        init_std=settings.init_std,
        momentum=settings.momentum,
        max_norm=max_norm if max_norm > 0 else None,
    )
    if settings.planner == "cem":
        return CEMPlanner(num_elites=settings.elites or max(1, settings.samples // 10), **common)
    return MPPIPlanner(temperature=settings.temperature, num_elites=settings.elites, **common)


# ----------------------------------------------------------------------------------------------------------------------
# Agents
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Observation:
    """What an agent sees at one step of E parallel episodes.

    Attributes:
        pixels: Current frames ``uint8 [E, H, W, 3]`` (None for agents that do not read pixels).
        goal_pixels: Goal images ``uint8 [E, H, W, 3]`` rendered from the goal states (None likewise).
        state: True states ``[E, 2]``, only for privileged agents (None otherwise).
        goal_state: True goals ``[E, 2]``, only for privileged agents (None otherwise).
    """

    pixels: np.ndarray | None
    goal_pixels: np.ndarray | None
    state: np.ndarray | None = None
    goal_state: np.ndarray | None = None


class Agent(ABC):
    """A controller of E parallel episodes: ``reset(num_envs)``, then ``act(obs) -> float32 [E, A]`` each step.

    Attributes:
        name: Row label in the results table.
        privileged: Reads the true state (baselines, ceiling). The protocol gives non-privileged agents pixels only.
        needs_pixels: Reads ``obs.pixels`` / ``obs.goal_pixels`` (the runner renders only when some agent does).
    """

    name: str = "agent"
    privileged: bool = True
    needs_pixels: bool = False

    def reset(self, num_envs: int) -> None:  # noqa: B027 (stateless agents need no reset)
        """Start E new episodes."""

    @abstractmethod
    def act(self, obs: Observation) -> np.ndarray:
        """Actions ``float32 [E, A]`` for the current step."""


class PolicyAgent(Agent):
    """A true-state policy of ``jepa_world.envs.policies`` (``random``, ``noop``, ``straight_line``, ...).

    Args:
        policy: A policy name or a callable ``policy(state [E, 2], goal [E, 2], rng) -> [E, 2]``.
        name: Row label (default: the policy name).
        seed: Seed of the policy's numpy generator (re-seeded at every ``reset``).
    """

    def __init__(self, *, policy: str | Policy, name: str | None = None, seed: int = 0) -> None:
        self.policy = make_policy(policy) if isinstance(policy, str) else policy
        self.name = name or (policy if isinstance(policy, str) else type(policy).__name__)
        self.seed = seed
        self.rng = np.random.default_rng((seed, 1))

    def reset(self, num_envs: int) -> None:
        self.rng = np.random.default_rng((self.seed, 1))
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def act(self, obs: Observation) -> np.ndarray:
        if obs.state is None:
            raise ValueError(f"{self.name} reads the true state, but obs.state is None")
        return np.asarray(self.policy(obs.state, obs.goal_state, self.rng), dtype=np.float32)


class _MPCBase(Agent):
    """Shared MPC plumbing: a planner around ``MPCAgent`` with the env's action bounds, seeded sampling."""

    def __init__(
        self,
        *,
        settings: PlannerSettings,
        action_dim: int,
        max_norm: float,
        low: float,
        high: float,
        seed: int,
        device: str | torch.device = "cpu",
    ) -> None:
        self.settings = settings
        self.seed = seed
        self.planner = make_planner(settings, action_dim=action_dim, max_norm=max_norm, low=low, high=high)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.mpc = MPCAgent(
            planner=self.planner,
            make_cost=self._make_cost,
            replan_every=settings.replan_every,
            warm_start=True,
            action_low=np.full(action_dim, low, dtype=np.float32),
            action_high=np.full(action_dim, high, dtype=np.float32),
            generator=self.generator,
        )

    @abstractmethod
    def _make_cost(self, current: Any, goal: Any) -> CostFn: ...

    def reset(self, num_envs: int) -> None:
        self.generator.manual_seed(self.seed)
        self.mpc.reset(num_envs)

    @property
    def num_plans(self) -> int:
        return self.mpc.num_plans


class SimulatorCEMAgent(_MPCBase):
    """Ceiling: the planner with the TRUE simulator as its model and the Euclidean distance to the goal as its cost.

    The only agent allowed to call ``env.transition``. Cost per sample = last-step distance + mean distance over the
    horizon (the same reduction as the learned agent's default).

    Args:
        env: The environment whose ``transition`` is the model.
        settings: Planner settings.
        seed: Sampling seed.
        name: Row label.
    """

    privileged = True

    def __init__(
        self, *, env: TwoRoomsEnv, settings: PlannerSettings, seed: int = 0, name: str = "CEM + true simulator"
    ) -> None:
        self.env = env
        self.name = name
        high = float(env.action_space.high.max())
        super().__init__(settings=settings, action_dim=2, max_norm=high, low=-high, high=high, seed=seed)

    def _make_cost(self, current: np.ndarray, goal: np.ndarray) -> CostFn:
        s0 = np.asarray(current, dtype=np.float64)  # [E, 2]
        g = np.asarray(goal, dtype=np.float64)[:, None]  # [E, 1, 2]

        def cost_fn(a: Tensor) -> Tensor:
            acts = a.detach().cpu().double().numpy()  # [E, S, H, 2]
            s = np.broadcast_to(s0[:, None], (*acts.shape[:2], 2))
            total, d = 0.0, None
            for h in range(acts.shape[2]):
                s = self.env.transition(s, acts[:, :, h])
                d = np.linalg.norm(s - g, axis=-1)  # [E, S]
                total = total + d
            return torch.from_numpy(d + total / acts.shape[2]).float()

        return cost_fn

    def act(self, obs: Observation) -> np.ndarray:
        if obs.state is None:
            raise ValueError(f"{self.name} reads the true state, but obs.state is None")
        return self.mpc.act(obs.state, obs.goal_state)


class WorldModelAgent(_MPCBase):
    """The learned agent: encode pixels, plan in latent space with the world model, execute, replan.

    Not privileged: it reads ``obs.pixels`` and ``obs.goal_pixels`` only and holds no environment.

    Args:
        model: A trained ``WorldModel`` (eval mode; planning runs under ``torch.no_grad``).
        settings: Planner settings.
        max_norm: Action norm bound of the env (2.45 for Two-Rooms); 0 disables it.
        low: Lower action bound per dimension.
        high: Upper action bound per dimension.
        stop_threshold: Latent distance (mean L1 per dim) below which the agent stops (zero action); None disables
            the stop rule. See ``calibrate_stop_threshold``.
        reduce: Horizon reduction of the latent cost (``"last"``, ``"sum"``, ``"last+mean"``).
        p: 1 for L1 latent distance, 2 for MSE.
        normalize: ImageNet-normalise pixels as the training data was.
        seed: Sampling seed.
        name: Row label.
    """

    privileged = False
    needs_pixels = True

    def __init__(
        self,
        *,
        model: WorldModel,
        settings: PlannerSettings,
        max_norm: float = 2.45,
        low: float = -2.45,
        high: float = 2.45,
        stop_threshold: float | None = None,
        reduce: str = "last+mean",
        p: int = 1,
        normalize: bool = True,
        seed: int = 0,
        name: str = "world model + CEM",
    ) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.stop_threshold = stop_threshold
        self.reduce, self.p, self.normalize = reduce, p, normalize
        self.name = name
        action_dim = model.predictor.action_dim
        super().__init__(
            settings=settings, action_dim=action_dim, max_norm=max_norm, low=low, high=high, seed=seed,
            device=self.device,
        )  # fmt: skip
        self._z_goal: Tensor | None = None
        self.last_distance: np.ndarray | None = None

    def reset(self, num_envs: int) -> None:
        super().reset(num_envs)
        self._z_goal = None

    @torch.no_grad()
    def encode(self, pixels: np.ndarray) -> Tensor:
        """Latents ``[E, 1, HW, D]`` of frames ``uint8 [E, H, W, 3]``."""
        x = pixels_to_tensor(pixels, normalize=self.normalize).to(self.device)
        return self.model.encode(x)

    def _make_cost(self, z: Tensor, z_goal: Tensor) -> CostFn:
        return self.model.make_cost(z, z_goal, p=self.p, reduce=self.reduce)

    @torch.no_grad()
    def act(self, obs: Observation) -> np.ndarray:
        if obs.pixels is None or obs.goal_pixels is None:
            raise ValueError(f"{self.name} needs obs.pixels and obs.goal_pixels, got None")
        if self._z_goal is None:  # goals are fixed for an episode: encode them once
            self._z_goal = self.encode(obs.goal_pixels)
        z = self.encode(obs.pixels)  # [E, 1, HW, D]
        a = self.mpc.act(z, self._z_goal)  # [E, A]
        dist = _l1_latent(z, self._z_goal).cpu().numpy()
        self.last_distance = dist
        if self.stop_threshold is not None:
            a = np.where((dist < self.stop_threshold)[:, None], np.float32(0.0), a).astype(np.float32)
        return a


@torch.no_grad()
def calibrate_stop_threshold(
    model: WorldModel,
    env: TwoRoomsEnv,
    *,
    radius: float = 2.5,
    num: int = 256,
    quantile: float = 0.5,
    seed: int = 0,
    normalize: bool = True,
) -> float:
    """Latent distance that corresponds to moving the dot by ``radius`` px, from the encoder and the renderer alone.

    Draws ``num`` free positions, moves each by ``radius`` in a random direction (kept if the moved point is free),
    renders both with ``env.render_state`` and returns the ``quantile`` of their mean-L1 latent distance. No dynamics
    are queried.
    """
    rng = np.random.default_rng((seed, 7))
    a, b = [], []
    while len(a) < num:
        p = env.sample_position(rng).astype(np.float64)
        theta = rng.uniform(-np.pi, np.pi)
        q = p + radius * np.array([np.cos(theta), np.sin(theta)])
        if bool(env.is_free(q)) and np.all((q >= 5.0) & (q <= 59.0)):
            a.append(p)
            b.append(q)
    device = next(model.parameters()).device
    za = model.encode(pixels_to_tensor(_render_batch(env, np.stack(a)), normalize=normalize).to(device))
    zb = model.encode(pixels_to_tensor(_render_batch(env, np.stack(b)), normalize=normalize).to(device))
    return float(np.quantile(_l1_latent(za, zb).cpu().numpy(), quantile))


# ----------------------------------------------------------------------------------------------------------------------
# Protocol runner
# ----------------------------------------------------------------------------------------------------------------------


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
    """

    name: str
    success: np.ndarray
    final_distance: np.ndarray
    paths: np.ndarray
    act_seconds: float
    steps: int
    num_plans: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

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
    """
    pairs = np.asarray(pairs, dtype=np.float64)
    if pairs.ndim != 3 or pairs.shape[1:] != (2, 2):
        raise ValueError(f"pairs must have shape [E, 2, 2], got {pairs.shape}")
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
    e = pairs.shape[0]
    states, goals = pairs[:, 0].copy(), pairs[:, 1].copy()
    goal_pixels = _render_batch(env, goals) if agent.needs_pixels else None
    low, high = env.action_space.low, env.action_space.high
    paths = np.empty((e, max_steps + 1, 2), dtype=np.float64)
    paths[:, 0] = states
    agent.reset(e)
    act_seconds = 0.0
    for t in range(max_steps):
        obs = Observation(
            pixels=_render_batch(env, states) if agent.needs_pixels else None,
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
    )


def format_table(rows: list[dict[str, Any]], *, title: str | None = None) -> str:
    """Markdown table of ``EpisodeStats.summary()`` rows: success, mean final distance, plan time."""
    lines = [title, ""] if title else []
    lines += [
        "| agent | success | mean final dist (px) | plan ms / step / episode | ms / batched replan |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        replan = f"{r['ms_per_replan_batched']:.0f}" if r["num_plans"] else "-"
        lines.append(
            f"| {r['name']} | {100 * r['success_rate']:.0f}% ({sum(r['success'])}/{len(r['success'])}) | "
            f"{r['mean_final_distance']:.1f} | {r['ms_per_step']:.2f} | {replan} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# Pictures: energy landscape and episode GIF
# ----------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def energy_landscape(
    model: WorldModel, env: TwoRoomsEnv, goal: np.ndarray, *, resolution: int = 64, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Latent distance to the goal image for the dot rendered at every cell of a grid over the arena.

    Returns:
        ``(cost float [R, R], free bool [R, R])`` with rows = y and columns = x, cell centres at
        ``(i + 0.5) * 64 / R``; cells inside walls are marked not free (cost NaN).
    """
    c = (np.arange(resolution) + 0.5) * (64.0 / resolution)
    xx, yy = np.meshgrid(c, c)  # rows are y
    pts = np.stack([xx, yy], axis=-1).reshape(-1, 2)
    free = np.asarray(env.is_free(pts)) & np.all((pts >= 5.0) & (pts <= 59.0), axis=-1)
    device = next(model.parameters()).device
    z_goal = model.encode(pixels_to_tensor(env.render_state(goal)[None], normalize=normalize).to(device))
    cost = np.full(len(pts), np.nan)
    idx = np.flatnonzero(free)
    for chunk in np.array_split(idx, max(1, math.ceil(len(idx) / 512))):
        z = model.encode(pixels_to_tensor(_render_batch(env, pts[chunk]), normalize=normalize).to(device))
        cost[chunk] = _l1_latent(z, z_goal.expand_as(z)).cpu().numpy()
    return cost.reshape(resolution, resolution), free.reshape(resolution, resolution)


def _colormap(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB on a dark-blue -> teal -> yellow ramp (viridis-like); NaN -> grey."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
    t = np.clip(np.nan_to_num(v, nan=0.0), 0.0, 1.0) * (len(stops) - 1)
    i = np.minimum(t.astype(int), len(stops) - 2)
    f = (t - i)[..., None]
    rgb = stops[i] * (1 - f) + stops[i + 1] * f
    rgb[np.isnan(v)] = 128
    return rgb.astype(np.uint8)


def save_landscape_png(
    path: str | Path,
    panels: list[tuple[str, np.ndarray]],
    *,
    start: np.ndarray | None = None,
    goal: np.ndarray | None = None,
    scale: int = 6,
) -> Path:
    """Side-by-side heatmaps (each normalised to its own range) with the start (white) and goal (red) marked.

    Args:
        path: PNG to write.
        panels: ``(title, values [R, R])`` pairs, rows = y; NaN cells are drawn grey (walls).
        start: Start position in arena units, or None.
        goal: Goal position in arena units, or None.
        scale: Pixels per grid cell.
    """
    from PIL import Image, ImageDraw

    images = []
    for title, values in panels:
        lo, hi = np.nanmin(values), np.nanmax(values)
        img = Image.fromarray(_colormap((values - lo) / max(hi - lo, 1e-12))).resize(
            (values.shape[1] * scale, values.shape[0] * scale), Image.NEAREST
        )
        draw = ImageDraw.Draw(img)
        px = img.width / 64.0
        for pos, color in ((start, (255, 255, 255)), (goal, (255, 0, 0))):
            if pos is not None:
                x, y = float(pos[0]) * px, float(pos[1]) * px
                draw.ellipse([x - 5, y - 5, x + 5, y + 5], outline=color, width=2)
        draw.text((4, 4), f"{title} [{lo:.3g}, {hi:.3g}]", fill=(255, 255, 255))
        images.append(img)
    out = Image.new("RGB", (sum(i.width for i in images) + 8 * (len(images) - 1), images[0].height), (255, 255, 255))
    x = 0
    for img in images:
        out.paste(img, (x, 0))
        x += img.width + 8
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path


def save_episodes_gif(
    path: str | Path,
    env: TwoRoomsEnv,
    paths: np.ndarray,
    goals: np.ndarray,
    *,
    every: int = 2,
    scale: int = 2,
    fps: int = 15,
) -> Path:
    """Animated GIF, one row per episode: observation with the path so far drawn | goal image.

    Args:
        path: GIF to write.
        env: Renderer (``render_state`` only).
        paths: True states ``[N, T + 1, 2]`` of the episodes to show.
        goals: Goals ``[N, 2]``.
        every: Keep every ``every``-th step (the last step is always kept).
        scale: Upscaling of the 64 px frames.
        fps: Frames per second.
    """
    import imageio.v2 as imageio
    from PIL import Image, ImageDraw

    n, t1 = paths.shape[:2]
    size = env.image_size * scale
    px = size / 64.0
    goal_imgs = [Image.fromarray(env.render_state(g)).resize((size, size), Image.NEAREST) for g in goals]
    for img in goal_imgs:
        ImageDraw.Draw(img).text((2, 2), "goal", fill=(255, 255, 255))
    steps = sorted(set(range(0, t1, every)) | {t1 - 1})
    frames = []
    for t in steps:
        canvas = Image.new("RGB", (2 * size + 4, n * (size + 4)), (40, 40, 40))
        for k in range(n):
            obs = Image.fromarray(env.render_state(paths[k, t])).resize((size, size), Image.NEAREST)
            draw = ImageDraw.Draw(obs)
            pts = [(float(x) * px, float(y) * px) for x, y in paths[k, : t + 1]]
            if len(pts) > 1:
                draw.line(pts, fill=(0, 200, 255), width=1)
            gx, gy = float(goals[k][0]) * px, float(goals[k][1]) * px
            draw.ellipse([gx - 4, gy - 4, gx + 4, gy + 4], outline=(0, 255, 0), width=1)
            draw.text((2, 2), f"t={t}", fill=(255, 255, 255))
            canvas.paste(obs, (0, k * (size + 4)))
            canvas.paste(goal_imgs[k], (size + 4, k * (size + 4)))
        frames.append(np.asarray(canvas))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, duration=1.0 / fps, loop=0)
    return path


# ----------------------------------------------------------------------------------------------------------------------
# The benchmark behind `jepa-world plan`
# ----------------------------------------------------------------------------------------------------------------------


def run_plan_benchmark(
    checkpoint: str | Path | WorldModel,
    *,
    env_name: str = "two_rooms",
    episodes: int = 50,
    settings: PlannerSettings | None = None,
    max_steps: int = 200,
    seed: int = 0,
    output: str | Path | None = None,
    stop_radius: float | None = 2.5,
    reduce: str = "last+mean",
    baselines: bool = True,
    simulator_ceiling: bool = True,
    gif_episodes: int = 4,
    num_threads: int | None = 1,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Evaluate the learned world model + planner against the baselines on the same protocol pairs.

    Agents, in table order: the learned world model + planner, random actions, no-op, straight line to the goal, and
    the planner on the true simulator (ceiling). Writes ``results.json``, ``episodes.gif`` and ``landscape.png`` to
    ``output`` when given.

    Args:
        checkpoint: A world-model run folder / checkpoint (see ``hub.load_world_model``) or a ``WorldModel``.
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
    from dataclasses import asdict

    from jepa_world.envs import make_env

    settings = settings or PlannerSettings()
    say = log or (lambda _msg: None)
    if env_name not in ("two_rooms", "point_arena"):
        raise ValueError(f"env_name must be 'two_rooms' or 'point_arena' for `plan`, got {env_name!r}")
    if isinstance(checkpoint, WorldModel):
        model, source = checkpoint, "<in-memory WorldModel>"
    else:
        from jepa_world.hub import load_world_model

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
            c = (np.arange(cost.shape[0]) + 0.5) * (64.0 / cost.shape[0])
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
            js.write_text(json.dumps(result, indent=1))
        return result
    finally:
        torch.set_num_threads(threads_before)


def model_image_size(model: WorldModel) -> int:
    """Input side of the world model's encoder (``img_size`` of a pooled encoder or a ViT)."""
    enc = model.encoder
    size = getattr(enc, "img_size", None)
    if size is None and hasattr(enc, "grid_size"):
        size = enc.grid_size[-1] * enc.patch_size
    if isinstance(size, list | tuple):
        size = size[-1]
    if not isinstance(size, int):
        raise ValueError(f"cannot tell the input size of encoder {type(enc).__name__}")
    return size
