"""Agents that act through policies learned in imagination: the policy alone, the policy inside CEM, and MCTS.

All read pixels only (the observation and the goal image), like `WorldModelAgent`, and never touch the simulator:
    - ``LearnedPolicyAgent``: encode, then one actor call per step (Dreamer / World Models at test time: no search).
    - ``PolicyCEMAgent``: the CEM planner with a share of its samples rolled out by the actor inside the world model
      (TD-MPC2's policy prior), its first plan warm-started from the actor's own rollout, and the critic as a
      terminal value (the remaining distance beyond the horizon) when the policy has one.
    - ``MCTSAgent``: batched tree search (``planning.MCTS``) over the nine discrete Two-Rooms actions with the world
      model's dynamics; the critic is the leaf value and the actor's action gives the prior.

The reward in every search is the policies' own: minus the latent distance to the goal after a step
(``policies.imagination.goal_rewards``). Shapes: E episodes, P proposals, H horizon, K discrete actions; latents
``[E, HW, D]`` inside the searches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from jepa_world.checkpoints.policy import PolicyRun
from jepa_world.eval.agents import Agent, Observation, WorldModelAgent, check_goal_pixels, encode_pixels, stop_rule
from jepa_world.models.world_model import WorldModel
from jepa_world.planning import MCTS, CostFn, goal_distance
from jepa_world.planning.costs import return_cost
from jepa_world.policies import bound_action, imagine
from jepa_world.policies.provenance import check_world_model


def _act(policy: PolicyRun, z: Tensor, z_goal: Tensor, *, deterministic: bool = True) -> Tensor:
    """The policy's action `[N, A]` for latents `[N, HW, D]` (a controller is deterministic)."""
    if policy.method == "actor_critic":
        return policy.actor(z, z_goal, deterministic=deterministic)[0]
    return policy.actor(z, z_goal)


class _EncodingAgent(Agent):
    """Pixels -> latents with the world model, the goal encoded once per episode, and the shared stop rule."""

    privileged = False
    needs_pixels = True

    def __init__(self, *, model: WorldModel, stop_threshold: float | None, normalize: bool, name: str) -> None:
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.stop_threshold, self.normalize, self.name = stop_threshold, normalize, name
        self._z_goal: Tensor | None = None
        self.num_plans = 0

    def reset(self, num_envs: int) -> None:
        self._z_goal = None
        self.num_plans = 0

    def _encode(self, obs: Observation) -> tuple[Tensor, Tensor]:
        check_goal_pixels(obs, self.name)
        if self._z_goal is None:
            self._z_goal = encode_pixels(self.model, obs.goal_pixels, normalize=self.normalize)[:, 0]  # [E, HW, D]
        return encode_pixels(self.model, obs.pixels, normalize=self.normalize)[:, 0], self._z_goal

    def _stop(self, a: np.ndarray, z: Tensor, z_goal: Tensor) -> np.ndarray:
        return stop_rule(a, goal_distance(z, z_goal).cpu().numpy(), self.stop_threshold)


class LearnedPolicyAgent(_EncodingAgent):
    """A policy learned in imagination, acting alone: encode, one network call, act (no search, no model rollout)."""

    def __init__(
        self,
        *,
        policy: PolicyRun,
        model: WorldModel,
        stop_threshold: float | None = None,
        normalize: bool = True,
        name: str = "policy",
    ) -> None:
        check_world_model(policy.meta, model, policy=policy.source)  # trained in this world model, by content
        super().__init__(model=model, stop_threshold=stop_threshold, normalize=normalize, name=name)
        self.policy = policy

    @torch.no_grad()
    def act(self, obs: Observation) -> np.ndarray:
        z, z_goal = self._encode(obs)
        a = _act(self.policy, z, z_goal).float().cpu().numpy()
        return self._stop(a, z, z_goal)


class PolicyCEMAgent(WorldModelAgent):
    """CEM with the policy as proposal distribution and warm start, and the critic as terminal value.

    Args:
        policy: the policy run (its `actor`; its `critic` for the terminal value).
        policy_fraction: share of each iteration's samples that are the policy's imagined rollouts (one of them the
            deterministic one, the others sampled; at least one).
        terminal_value: plan on the policy's own return instead of the latent distance: discounted distances over
            the horizon, then the critic's value of the last latent (`planning.costs.return_cost`); needs an
            actor-critic policy.
        **kwargs: `WorldModelAgent`'s arguments (model, settings, bounds, stop rule, ...).
    """

    def __init__(
        self,
        *,
        policy: PolicyRun,
        policy_fraction: float = 0.25,
        terminal_value: bool = True,
        **kwargs,
    ) -> None:
        kwargs.setdefault("name", "policy + CEM")
        if "model" in kwargs:
            check_world_model(policy.meta, kwargs["model"], policy=policy.source)  # by content
        super().__init__(**kwargs)
        self.policy = policy
        self.critic = policy.critic if terminal_value else None
        self.discount = float(policy.meta["discount"])  # the critic's own
        self.num_proposals = max(1, round(policy_fraction * self.planner.num_samples))
        self.mpc.make_proposals = self._proposals

    def _proposals(self, z: Tensor, z_goal: Tensor) -> Tensor:
        e, p = z.shape[0], self.num_proposals
        zr, gr = z[:, 0].repeat_interleave(p, 0), z_goal[:, 0].repeat_interleave(p, 0)  # [E*P, HW, D]
        deterministic = torch.zeros(e, p, dtype=torch.bool, device=z.device)
        deterministic[:, 0] = True
        flags = deterministic.flatten()

        def actor(zz: Tensor, gg: Tensor) -> tuple[Tensor, Tensor]:
            if self.policy.method != "actor_critic":  # a deterministic controller
                a = self.policy.actor(zz, gg)
                return a, a.new_zeros(len(a))
            mean, std = self.policy.actor.distribution(zz, gg)  # one pass: the mean for row 0, samples for the rest
            # The agent's seeded generator (reset per evaluation), so a run is reproducible like the planner's samples.
            eps = torch.randn(mean.shape, generator=self.generator, device=mean.device, dtype=mean.dtype)
            u = torch.where(flags[:, None], mean, mean + std * eps)
            return bound_action(u, self.policy.actor.max_action), mean.new_zeros(len(mean))

        _, actions, _ = imagine(self.model.step, actor, zr, gr, self.planner.horizon)  # [H, E*P, A]
        return actions.transpose(0, 1).reshape(e, p, self.planner.horizon, -1)

    def _make_cost(self, z: Tensor, z_goal: Tensor) -> CostFn:
        if self.critic is None:
            return super()._make_cost(z, z_goal)
        g = z_goal[:, 0]  # [E, HW, D]

        def value(z_last: Tensor) -> Tensor:  # [E, S, HW, D] -> [E, S]
            e, s = z_last.shape[:2]
            return self.critic(z_last.flatten(0, 1), g.repeat_interleave(s, 0)).reshape(e, s)

        return return_cost(self.model, z, z_goal, value=value, discount=self.discount)


class MCTSAgent(_EncodingAgent):
    """Batched MCTS over discrete actions in the world model; the critic is the leaf value, the actor the prior.

    Args:
        policy: an actor-critic policy run (its critic values leaves; its actor's action gives the prior: a softmax
            over the discrete actions of minus their squared distance to the actor's action, in units of the
            action bound).
        model: the world model the policy was trained in.
        actions: the discrete action table `[K, A]` (Two-Rooms: `envs.two_rooms.discrete_action_table()`).
        simulations: simulations per decision.
        max_depth: deepest node.
        prior_temperature: softness of the prior (larger: closer to uniform).
        stop_threshold: the stop rule's latent distance (None: off).
        normalize: ImageNet-normalise pixels.
        name: row label.
    """

    def __init__(
        self,
        *,
        policy: PolicyRun,
        model: WorldModel,
        actions: np.ndarray,
        simulations: int = 32,
        max_depth: int = 16,
        prior_temperature: float = 0.25,
        stop_threshold: float | None = None,
        normalize: bool = True,
        name: str = "MCTS",
    ) -> None:
        check_world_model(policy.meta, model, policy=policy.source)  # trained in this world model, by content
        super().__init__(model=model, stop_threshold=stop_threshold, normalize=normalize, name=name)
        if policy.critic is None:
            raise ValueError(f"MCTS needs a critic for its leaf values; {policy.source} is a {policy.method} policy")
        self.policy = policy
        self.table = torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=self.device)  # [K, A]
        self.search = MCTS(num_actions=len(self.table), num_simulations=simulations, max_depth=max_depth,
                           discount=float(policy.meta["discount"]))  # fmt: skip
        self.scale = float(policy.meta["max_action"])
        self.prior_temperature = prior_temperature

    @torch.no_grad()
    def act(self, obs: Observation) -> np.ndarray:
        z, g = self._encode(obs)  # [E, HW, D]
        table = self.table

        def step_fn(zz: Tensor, idx: Tensor) -> tuple[Tensor, Tensor]:
            nxt = self.model.step(zz, table[idx])
            return nxt, -goal_distance(nxt, g)

        def prior_fn(zz: Tensor) -> Tensor:
            a = _act(self.policy, zz, g)  # [E, A]
            d2 = ((a[:, None] - table[None]) / self.scale).square().sum(-1)  # [E, K]
            return torch.softmax(-d2 / self.prior_temperature, dim=-1)

        result = self.search.search(z, step_fn=step_fn, value_fn=lambda zz: self.policy.critic(zz, g),
                                    prior_fn=prior_fn)  # fmt: skip
        self.num_plans += 1
        a = table[result.action].cpu().numpy()
        return self._stop(a, z, g)
