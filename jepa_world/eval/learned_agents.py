"""The learned agents `jepa-world plan` builds (`plan.agent` -> a builder reading an `AgentContext`) and what they read
of a world model: its input size and its frameskip. Shared by both protocol runners (`plan_benchmark` for ours,
`field_benchmark` for swm / strict).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from jepa_world.checkpoints.policy import PolicyRun
from jepa_world.config import PlannerSettings
from jepa_world.envs.geometry import discrete_action_table
from jepa_world.eval.agents import Agent, WorldModelAgent
from jepa_world.eval.policy_agents import LearnedPolicyAgent, MCTSAgent, PolicyCEMAgent
from jepa_world.models.readout import pixel_encoder
from jepa_world.models.world_model import WorldModel


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
        frameskip: Env steps per model step k (the model's action is k env actions concatenated).
        field: The env is a field env (swm / strict protocols): box bounds per dim, no norm bound.
    """

    plan: Any
    settings: PlannerSettings
    model: WorldModel
    policy: PolicyRun | None
    env: Any
    stop_threshold: float | None
    seed: int
    frameskip: int = 1
    field: bool = False

    def common(self) -> dict[str, Any]:
        """Keyword arguments every learned agent takes."""
        return dict(model=self.model, stop_threshold=self.stop_threshold)

    def mpc(self) -> dict[str, Any]:
        """Keyword arguments of the agents that plan with `settings` (bounds from the env's action space).

        Our envs bound each action's norm by the box's bound (a block of k actions: sqrt(k) times it, each action
        then clipped to the box); a field env's box bounds each dimension only.
        """
        space = self.env.action_space
        if self.field:
            return dict(settings=self.settings, max_norm=0.0, low=float(np.min(space.low)),
                        high=float(np.max(space.high)), reduce=str(self.plan.reduce), seed=self.seed)  # fmt: skip
        max_norm = float(space.high.max())
        block_norm = max_norm * math.sqrt(self.frameskip) if self.frameskip > 1 else max_norm
        return dict(settings=self.settings, max_norm=block_norm, low=-max_norm, high=max_norm,
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


def model_frameskip(model: WorldModel, env_action_dim: int, run_config: Any = None) -> int:
    """Env steps per model step k: the model's action width over the env's (checked against the run's
    ``wm.frameskip``).

    Raises:
        ValueError: The widths do not divide, or disagree with the run's ``wm.frameskip``.
    """
    width = int(model.predictor.action_dim)
    if width % env_action_dim:
        raise ValueError(f"the world model takes {width}-d actions, which is no whole number of the env's "
                         f"{env_action_dim}-d actions: it was trained on another env")  # fmt: skip
    k = width // env_action_dim
    trained = None if run_config is None else OmegaConf.select(run_config, "wm.frameskip", default=None)
    if trained is not None and int(trained) != k:
        raise ValueError(f"the world model takes {width}-d actions = {k} of the env's {env_action_dim}-d actions, "
                         f"but its run says wm.frameskip={trained}: it was trained on another env")  # fmt: skip
    return k


def model_image_size(model: WorldModel) -> int:
    """Input side of the world model's encoder (``img_size`` of a pooled encoder or a ViT)."""
    enc = pixel_encoder(model.encoder)  # through a lift and a readout: the ViT's input
    size = getattr(enc, "input_size", None)  # (H, W)
    if isinstance(size, list | tuple):
        size = size[-1]
    if not isinstance(size, int):
        raise ValueError(f"cannot tell the input size of encoder {type(enc).__name__}")
    return size
