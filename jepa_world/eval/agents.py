"""The agents the goal-reaching protocol compares (Two-Rooms): learned, baseline and ceiling.

Agents:
    - ``WorldModelAgent``: the learned world model + a sampling planner (CEM or MPPI). It is NOT privileged: each step
      it receives the pixels of the current observations and of the goal images (``render_state(goal)``), never a
      true state, and it holds no environment. All E episodes are planned together: one world-model rollout call per
      planner iteration covers E x S sampled sequences.
    - ``PolicyAgent``: a true-state baseline from ``jepa_world.envs.policies`` (random, no-op, straight line).
    - ``SimulatorCEMAgent``: the same planner with the true simulator as its model and the Euclidean distance to the
      goal as its cost: the ceiling of what planning over this cost can reach.

Planning choices that moved success in the CPU prototype, all on by default here: replan every 4 steps with a warm
start, cost = last step + mean over the horizon (``reduce="last+mean"``), and a stop rule (no action once the latent
distance to the goal is below a threshold calibrated from the encoder alone: the median latent distance between
renderings of a dot and of the same dot moved by ``stop_radius`` px, see ``calibrate_stop_threshold``).

References: PLDM (Sobal et al., 2025), EB-JEPA, V-JEPA 2-AC (Assran et al., 2025), DINO-WM (Zhou et al., 2024).

Shapes: E parallel episodes, S samples, H horizon, A action dim, D latent width; pixels ``uint8 [E, H, W, 3]``,
states and goals ``float [E, 2]``, latents ``[E, 1, HW, D]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jepa_world.config import PlannerSettings
from jepa_world.data.transforms import frames_to_tensor
from jepa_world.envs.clutter import Scene
from jepa_world.envs.geometry import FREE_MAX, FREE_MIN, MAX_ACTION_NORM
from jepa_world.envs.policies import Policy, make_policy
from jepa_world.envs.two_rooms import TwoRoomsEnv
from jepa_world.models.world_model import WorldModel
from jepa_world.planning import CostFn, MPCAgent, compile_rollout, goal_distance, make_planner, rollout_cost


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


@torch.no_grad()
def encode_pixels(model: WorldModel, pixels: np.ndarray, *, normalize: bool = True) -> Tensor:
    """Latents ``[E, 1, HW, D]`` of frames ``uint8 [E, H, W, 3]``, encoded on the model's device."""
    x = pixels_to_tensor(pixels, normalize=normalize).to(next(model.parameters()).device)
    return model.encode(x)


def stop_rule(actions: np.ndarray, distance: np.ndarray, threshold: float | None) -> np.ndarray:
    """Zero the actions ``[E, A]`` of episodes whose latent distance ``[E]`` to the goal is below ``threshold``."""
    if threshold is None:
        return actions
    return np.where((distance < threshold)[:, None], np.float32(0.0), actions).astype(np.float32)


def check_goal_pixels(obs: Observation, name: str) -> None:
    """Pixel agents need the observation and the goal image, of one size (a goal of another size fails here)."""
    if obs.pixels is None or obs.goal_pixels is None:
        raise ValueError(f"{name} needs obs.pixels and obs.goal_pixels, got None")
    if np.shape(obs.goal_pixels) != np.shape(obs.pixels):
        raise ValueError(
            f"{name}: the goal images are {list(np.shape(obs.goal_pixels))} but the observations are "
            f"{list(np.shape(obs.pixels))}: render the goal at the observation's size"
        )


def render_batch(env: TwoRoomsEnv, states: np.ndarray, scenes: list[Scene] | None = None) -> np.ndarray:
    """Frames ``uint8 [E, H, W, 3]`` of states ``[E, 2]``, each in its own scene (default: the env's current one)."""
    states = np.asarray(states).reshape(-1, 2)
    scenes = [None] * len(states) if scenes is None else scenes
    return np.stack([env.render_state(s, scene) for s, scene in zip(states, scenes, strict=True)])


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


class ActionBlocks(Agent):
    """Execute an agent that acts in blocks of k env actions (a world model trained with ``wm.frameskip=k``).

    The inner agent is asked every k env steps and returns ``[E, k * A]`` (k actions concatenated, as the training
    windows concatenate them); each of its k actions is executed as one env step, clipped to the env's box.

    Args:
        agent: The inner agent (its planner's horizon counts blocks).
        frameskip: Env steps per block k.
        action_dim: The env's action dim A.
        low: The env's action lower bound (scalar or ``[A]``).
        high: Its upper bound (scalar or ``[A]``).
    """

    def __init__(self, *, agent: Agent, frameskip: int, action_dim: int, low: Any, high: Any) -> None:
        if not isinstance(frameskip, int) or frameskip < 1:
            raise ValueError(f"frameskip must be an int >= 1, got {frameskip!r}")
        self.agent, self.frameskip, self.action_dim = agent, frameskip, action_dim
        self.low, self.high = np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)
        self.name = agent.name + (f" ({frameskip}-action blocks)" if frameskip > 1 else "")
        self.privileged, self.needs_pixels = agent.privileged, agent.needs_pixels
        self.model_steps = 0
        self._block: np.ndarray | None = None
        self._t = 0

    def reset(self, num_envs: int) -> None:
        self.agent.reset(num_envs)
        self._block, self._t, self.model_steps = None, 0, 0

    def act(self, obs: Observation) -> np.ndarray:
        if self._block is None or self._t == self.frameskip:
            block = np.asarray(self.agent.act(obs), dtype=np.float32)
            k, a = self.frameskip, self.action_dim
            if block.ndim != 2 or block.shape[1] != k * a:
                raise ValueError(f"{self.agent.name} returned actions of shape {block.shape}; blocks of {k} actions "
                                 f"of the env's {a} need [E, {k * a}]")  # fmt: skip
            self._block = np.clip(block.reshape(len(block), k, a), self.low, self.high).astype(np.float32)
            self._t = 0
            self.model_steps += 1
        out = self._block[:, self._t]
        self._t += 1
        return out

    @property
    def num_plans(self) -> int:
        return getattr(self.agent, "num_plans", 0)


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
        max_norm: Action norm bound of the env (Two-Rooms: ``MAX_ACTION_NORM``); 0 disables it.
        low: Lower action bound per dimension.
        high: Upper action bound per dimension.
        stop_threshold: Latent distance (mean L1 per dim) below which the agent stops (zero action); None disables
            the stop rule. See ``calibrate_stop_threshold``.
        reduce: Horizon reduction of the latent cost (``"last"``, ``"sum"``, ``"last+mean"``).
        p: 1 for L1 latent distance, 2 for MSE.
        normalize: ImageNet-normalise pixels as the training data was.
        seed: Sampling seed.
        compiled: Plan over the model's rollout through ``torch.compile`` (``planning.compile_rollout``): faster
            replans after a compile per batch shape, rounded differently in the last bits.
        name: Row label.
    """

    privileged = False
    needs_pixels = True

    def __init__(
        self,
        *,
        model: WorldModel,
        settings: PlannerSettings,
        max_norm: float = MAX_ACTION_NORM,
        low: float = -MAX_ACTION_NORM,
        high: float = MAX_ACTION_NORM,
        stop_threshold: float | None = None,
        reduce: str = "last+mean",
        p: int = 1,
        normalize: bool = True,
        seed: int = 0,
        compiled: bool = False,
        name: str = "world model + CEM",
    ) -> None:
        self.model = model.eval()
        self._rolls = compile_rollout(self.model) if compiled else self.model
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

    def encode(self, pixels: np.ndarray) -> Tensor:
        """Latents ``[E, 1, HW, D]`` of frames ``uint8 [E, H, W, 3]``."""
        return encode_pixels(self.model, pixels, normalize=self.normalize)

    def _make_cost(self, z: Tensor, z_goal: Tensor) -> CostFn:
        return rollout_cost(self._rolls, z, z_goal, p=self.p, reduce=self.reduce)

    @torch.no_grad()
    def act(self, obs: Observation) -> np.ndarray:
        check_goal_pixels(obs, self.name)
        if self._z_goal is None:  # goals are fixed for an episode: encode them once
            self._z_goal = self.encode(obs.goal_pixels)
        z = self.encode(obs.pixels)  # [E, 1, HW, D]
        a = self.mpc.act(z, self._z_goal)  # [E, A]
        dist = goal_distance(z, self._z_goal).cpu().numpy()
        self.last_distance = dist
        return stop_rule(a, dist, self.stop_threshold)


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
        if bool(env.is_free(q)) and np.all((q >= FREE_MIN) & (q <= FREE_MAX)):
            a.append(p)
            b.append(q)
    za = encode_pixels(model, render_batch(env, np.stack(a)), normalize=normalize)
    zb = encode_pixels(model, render_batch(env, np.stack(b)), normalize=normalize)
    return float(np.quantile(goal_distance(za, zb).cpu().numpy(), quantile))
