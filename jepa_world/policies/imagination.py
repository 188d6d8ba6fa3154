"""Imagined episodes in a world model's latent space, their goal-reaching reward, and the returns learned from them.

Ours is goal-conditioned and reward-free: the reward of a step is minus the latent distance to the goal after it,
`r_t = -d(z_{t+1}, g)` with `d` the mean L1 distance the planners minimise (`jepa_world.planning.costs.goal_distance`),
so the return is the planner's "sum" cost with the sign turned. The progress reward `d(z_t, g) - d(z_{t+1}, g)` looks
more natural but is a potential-based shaping of zero: with a value bootstrap its returns are `d_0 - d_T + V(z_T)`,
and a critic that (rightly) values far latents highly, as more progress is still to come, pays the actor for moving
away (measured on the point-mass test: the actor learned to leave the goal). The distance reward has no such
loophole.

References:
    Hafner et al. 2020 (Dreamer: lambda-returns over imagined rollouts, Eq. 6), 2023 (DreamerV3: returns normalised
    by the 5th-95th percentile range, a slow critic target).

Shapes: T imagined steps, N episodes; latents `[T + 1, N, ...]`, rewards and values `[T, N]` / `[T + 1, N]`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from jepa_world.planning.costs import goal_distance

StepFn = Callable[[Tensor, Tensor], Tensor]  # (z [N, ...], a [N, A]) -> z_next [N, ...]
Actor = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (z, z_goal) -> (a [N, A], entropy [N])


def imagine(step: StepFn, actor: Actor, z0: Tensor, z_goal: Tensor, horizon: int) -> tuple[Tensor, Tensor, Tensor]:
    """Roll `actor` out for `horizon` steps inside the world model (`step`), never touching an environment.

    Returns:
        latents `[T + 1, N, ...]` (z0 first), actions `[T, N, A]`, entropies `[T, N]`.
    """
    if not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
    zs, acts, ents = [z0], [], []
    z = z0
    for _ in range(horizon):
        a, ent = actor(z, z_goal)
        z = step(z, a)
        zs.append(z)
        acts.append(a)
        ents.append(ent)
    return torch.stack(zs), torch.stack(acts), torch.stack(ents)


def goal_rewards(latents: Tensor, z_goal: Tensor) -> tuple[Tensor, Tensor]:
    """Rewards `-d(z_{t+1}, g)` and the distances: latents `[T + 1, N, ...]` -> (`[T, N]`, `[T + 1, N]`)."""
    T1, N = latents.shape[:2]
    goal = z_goal[None].expand(T1, *z_goal.shape).flatten(0, 1)
    d = goal_distance(latents.flatten(0, 1), goal).reshape(T1, N)
    return -d[1:], d


def lambda_returns(rewards: Tensor, values: Tensor, *, discount: float, lam: float) -> Tensor:
    """TD(lambda) returns `R_t = r_t + discount * ((1 - lam) v_{t+1} + lam R_{t+1})`, bootstrapped with `v_T`.

    Args:
        rewards: `[T, N]`.
        values: `[T + 1, N]` value estimates of every latent (the last one bootstraps).
        discount: gamma in (0, 1].
        lam: lambda in [0, 1] (0: one-step TD targets, 1: Monte-Carlo plus the final value).

    Returns:
        `[T, N]`.
    """
    if values.shape[0] != rewards.shape[0] + 1 or values.shape[1:] != rewards.shape[1:]:
        got = f"{tuple(values.shape)} and {tuple(rewards.shape)}"
        raise ValueError(f"values must be [T + 1, N] for rewards [T, N], got {got}")
    out, R = [], values[-1]
    for t in reversed(range(rewards.shape[0])):
        R = rewards[t] + discount * ((1 - lam) * values[t + 1] + lam * R)
        out.append(R)
    return torch.stack(out[::-1])


class ReturnNormalizer(nn.Module):
    """DreamerV3's return scale: an EMA of the 5th-95th percentile range of the returns, floored at `floor`.

    The floor keeps tiny returns (goals almost reached) from being amplified into noise; DreamerV3 uses 1 for
    rewards of order one. Our rewards are latent-distance units, so the floor is a setting (`policy.return_floor`).
    """

    def __init__(self, *, decay: float = 0.99, floor: float = 1e-3):
        super().__init__()
        self.decay, self.floor = decay, floor
        self.register_buffer("scale", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, returns: Tensor) -> Tensor:
        """Fold a batch of returns into the running range; returns the scale to divide advantages by."""
        q = torch.quantile(returns.detach().float().flatten(), torch.tensor([0.05, 0.95], device=returns.device))
        rng = q[1] - q[0]
        new = torch.where(self.initialised, self.decay * self.scale + (1 - self.decay) * rng, rng)
        self.scale.copy_(new)
        self.initialised.fill_(True)
        return self.scale.clamp_min(self.floor)
