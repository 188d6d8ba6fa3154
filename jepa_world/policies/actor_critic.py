"""Dreamer's actor-critic, goal-conditioned, trained entirely on imagined rollouts of a frozen world model.

References:
    Hafner et al. 2020 (Dreamer V1: lambda-returns, actor gradients backpropagated through the learned dynamics),
    2023 (DreamerV3: returns normalised by their percentile range, a slow critic target).

One training step (`forward`): from a batch of start and goal latents (frames of the world model's own training
episodes), the actor acts for `horizon` steps inside the world model (`WorldModel.step`, no simulator); the reward is
minus the latent distance to the goal (`imagination.goal_rewards`); lambda-returns bootstrap with the slow critic;
the actor ascends the normalised returns by backpropagating through the frozen dynamics (reparameterised actions),
the critic regresses the returns. Guard against exploiting model errors: a short imagination horizon (25 steps of the
40 the CEM planner trusts; the world model is trained on 4-step rollouts of 16-step windows), with the critic carrying
the value beyond it. No ensemble: one world model per run, so its disagreement is not available.

Shapes: N episodes, T = horizon; latents `[N, HW, D]`, imagined `[T + 1, N, HW, D]`.
"""

from __future__ import annotations

import copy
from typing import Protocol

import torch
from torch import Tensor, nn

from jepa_world.policies.imagination import ReturnNormalizer, goal_rewards, imagine, lambda_returns
from jepa_world.policies.networks import GoalActor, GoalCritic


class Steps(Protocol):
    """What the learners need of a world model: one latent step (see `WorldModel.step`)."""

    def step(self, z: Tensor, action: Tensor) -> Tensor: ...


class ImaginedActorCritic(nn.Module):
    """Actor + critic + slow critic, `forward(batch) -> (loss, metrics)` on imagined rollouts.

    Args:
        world_model: the frozen world model (kept in eval mode, no gradients to its weights; not a checkpoint part).
        actor: a `GoalActor`.
        critic: a `GoalCritic`.
        horizon: imagined steps per rollout.
        discount: gamma.
        lam: lambda of the returns.
        entropy_weight: weight of the actor's entropy bonus.
        critic_ema: slow critic <- critic_ema * slow + (1 - critic_ema) * critic, once per optimizer step.
        return_floor: floor of the return scale (see `ReturnNormalizer`).
    """

    def __init__(
        self,
        *,
        world_model: nn.Module,
        actor: GoalActor,
        critic: GoalCritic,
        horizon: int = 25,
        discount: float = 0.99,
        lam: float = 0.95,
        entropy_weight: float = 3e-4,
        critic_ema: float = 0.98,
        return_floor: float = 1e-3,
    ):
        super().__init__()
        for name, val, lo, hi in (("discount", discount, 0, 1), ("lam", lam, 0, 1), ("critic_ema", critic_ema, 0, 1)):
            if not lo <= val <= hi or (name == "discount" and val == 0):
                raise ValueError(f"policy.{name} must be in ({lo}, {hi}], got {val}")
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"policy.horizon must be an int >= 1, got {horizon!r}")
        self.world_model = world_model.requires_grad_(False).eval()
        self.actor, self.critic = actor, critic
        self.slow_critic = copy.deepcopy(critic).requires_grad_(False)
        self.normalizer = ReturnNormalizer(floor=return_floor)
        self.horizon, self.discount, self.lam = horizon, discount, lam
        self.entropy_weight, self.critic_ema = entropy_weight, critic_ema

    def train(self, mode: bool = True) -> ImaginedActorCritic:
        super().train(mode)
        self.world_model.eval()  # a frozen model: no batch statistics, no dropout
        return self

    def _values(self, critic: nn.Module, zs: Tensor, z_goal: Tensor) -> Tensor:
        T1, N = zs.shape[:2]
        return critic(zs.flatten(0, 1), z_goal[None].expand(T1, *z_goal.shape).flatten(0, 1)).reshape(T1, N)

    def forward(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Imagine, then the actor and critic losses.

        Args:
            batch: {"z0": start latents `[N, HW, D]`, "z_goal": goal latents `[N, HW, D]`}.

        Returns:
            (loss, metrics): "loss", "loss_actor", "loss_critic", "return" (mean lambda-return), "progress" (mean
            latent distance gained over the horizon), "start_distance", "final_distance", "entropy", "action_norm",
            "return_scale".
        """
        z0, g = batch["z0"], batch["z_goal"]
        zs, actions, entropy = imagine(self.world_model.step, self.actor, z0, g, self.horizon)  # [T+1, N, ...]
        rewards, dist = goal_rewards(zs, g)  # [T, N], [T+1, N]
        v_slow = self._values(self.slow_critic, zs, g)  # [T+1, N]
        returns = lambda_returns(rewards, v_slow, discount=self.discount, lam=self.lam)
        scale = self.normalizer.update(returns) if self.training else self.normalizer.scale.clamp_min(1e-3)
        T = self.horizon
        weight = self.discount ** torch.arange(T, device=z0.device, dtype=returns.dtype)[:, None]  # [T, 1]
        loss_actor = -(weight * returns).mean() / scale - self.entropy_weight * (weight * entropy).mean()
        v = self._values(self.critic, zs[:-1].detach(), g)  # [T, N]
        loss_critic = 0.5 * (v - returns.detach()).square().mean()
        loss = loss_actor + loss_critic
        metrics = {
            "loss": loss.detach(),
            "loss_actor": loss_actor.detach(),
            "loss_critic": loss_critic.detach(),
            "return": returns.detach().mean(),
            "progress": (dist[0] - dist[-1]).detach().mean(),
            "start_distance": dist[0].detach().mean(),
            "final_distance": dist[-1].detach().mean(),
            "entropy": entropy.detach().mean(),
            "action_norm": actions.detach().norm(dim=-1).mean(),
            "return_scale": scale.detach(),
        }
        return loss, metrics

    @torch.no_grad()
    def update_slow_critic(self) -> dict[str, float]:
        """The slow critic's EMA step (once per optimizer step: the training loop's `after_step`)."""
        for slow, p in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
            slow.lerp_(p, 1 - self.critic_ema)
        return {}
