"""Goal-conditioned networks on world-model latents: the actor, the critic, and the evolved linear controller.

References:
    Hafner et al. 2020-2023 (Dreamer V1-V3: a tanh-squashed Gaussian actor and a value critic on imagined latents);
    Ha & Schmidhuber 2018 (World Models: a linear controller evolved with CMA-ES).

Every network reads a latent and a goal latent, flattened: `z` `[N, F]` and `z_goal` `[N, F]` with F = HW x D of
`WorldModel.encode`, as the features `[z, z_goal, z_goal - z]` (`goal_features`). Actions are bounded displacements:
each component squashed by tanh to `max_action`, then the vector shrunk to an L2 norm of at most `max_action` (the
Two-Rooms action set).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from jepa_world.models.layers import constructor_config

LOG_STD_MIN, LOG_STD_MAX = -5.0, 1.0


def goal_features(z: Tensor, z_goal: Tensor) -> Tensor:
    """`[z, z_goal, z_goal - z]` of flattened latents: `[N, ...]`, `[N, ...]` -> `[N, 3F]`."""
    z, g = z.flatten(1), z_goal.flatten(1)
    if z.shape != g.shape:
        raise ValueError(f"latent {tuple(z.shape)} and goal {tuple(g.shape)} differ in size")
    return torch.cat([z, g, g - z], dim=1)


def bound_action(u: Tensor, max_action: float, *, squash: bool = True) -> Tensor:
    """Map pre-activations `[..., A]` into the action set: tanh per component (`squash`), then norm <= `max_action`."""
    a = max_action * torch.tanh(u) if squash else u
    norm = a.norm(dim=-1, keepdim=True)
    return a * (max_action / norm.clamp_min(1e-12)).clamp(max=1.0)


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)]
    dim = in_dim
    for _ in range(depth):
        layers += [nn.Linear(dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.SiLU()]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class GoalActor(nn.Module):
    """A tanh-squashed Gaussian policy `pi(a | z, z_goal)` (Dreamer's continuous actor).

    Args:
        latent_dim: F, the flattened latent size.
        action_dim: A.
        max_action: bound of each component and of the action norm.
        hidden_dim: MLP width.
        depth: hidden layers.
    """

    def __init__(
        self, *, latent_dim: int, action_dim: int, max_action: float = 1.0, hidden_dim: int = 256, depth: int = 2
    ):
        config = constructor_config(locals())
        super().__init__()
        self.config = config
        if latent_dim < 1 or action_dim < 1 or not max_action > 0:
            raise ValueError(f"need latent_dim, action_dim >= 1 and max_action > 0, got {config}")
        self.latent_dim, self.action_dim, self.max_action = latent_dim, action_dim, float(max_action)
        self.net = _mlp(3 * latent_dim, hidden_dim, 2 * action_dim, depth)
        nn.init.zeros_(self.net[-1].weight)  # start near the zero action with unit std: no early bias
        nn.init.zeros_(self.net[-1].bias)

    def distribution(self, z: Tensor, z_goal: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std `[N, A]` of the pre-squash Gaussian."""
        mean, log_std = self.net(goal_features(z, z_goal)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()

    def forward(self, z: Tensor, z_goal: Tensor, *, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        """A reparameterised action `[N, A]` and the entropy `[N]` of the pre-squash Gaussian (Dreamer's estimate).

        Args:
            z: latents `[N, ...]`.
            z_goal: goal latents `[N, ...]`.
            deterministic: the squashed mean (acting), no sampling.
        """
        mean, std = self.distribution(z, z_goal)
        u = mean if deterministic else mean + std * torch.randn_like(mean)
        entropy = (0.5 * math.log(2 * math.pi * math.e) + std.log()).sum(dim=-1)
        return bound_action(u, self.max_action), entropy


class GoalCritic(nn.Module):
    """State value `V(z, z_goal)` `[N]`: minus the discounted latent distances to the goal still to come.

    Args:
        latent_dim: F, the flattened latent size.
        hidden_dim: MLP width.
        depth: hidden layers.
    """

    def __init__(self, *, latent_dim: int, hidden_dim: int = 256, depth: int = 2):
        config = constructor_config(locals())
        super().__init__()
        self.config = config
        self.latent_dim = latent_dim
        self.net = _mlp(3 * latent_dim, hidden_dim, 1, depth)

    def forward(self, z: Tensor, z_goal: Tensor) -> Tensor:
        return self.net(goal_features(z, z_goal))[:, 0]


class LinearController(nn.Module):
    """World Models' controller: `a = W [z, z_goal, z_goal - z] + b` shrunk to the norm bound; weights for CMA-ES.

    No tanh (World Models squash with one): a linear map clipped by norm can express "move straight at the goal and
    stop on it", while per-component tanh of a linear map cannot stop precisely (measured on the point-mass test:
    40% reached with tanh, the evolved gains growing into bang-bang control).

    `forward` takes a population of parameter vectors at once: `theta` `[P, n_params]` with inputs `[P, N, ...]`.

    Args:
        latent_dim: F.
        action_dim: A.
        max_action: action bound (see `bound_action`).
    """

    def __init__(self, *, latent_dim: int, action_dim: int, max_action: float = 1.0):
        config = constructor_config(locals())
        super().__init__()
        self.config = config
        self.latent_dim, self.action_dim, self.max_action = latent_dim, action_dim, float(max_action)
        self.num_params = (3 * latent_dim + 1) * action_dim
        self.register_buffer("theta", torch.zeros(self.num_params))  # the deployed parameters (CMA-ES mean)

    def forward(self, z: Tensor, z_goal: Tensor, theta: Tensor | None = None) -> Tensor:
        """Actions: `[N, A]` with the deployed `theta`, or `[P, N, A]` for a population `theta` `[P, n_params]`."""
        if theta is None:
            return self.forward(z[None], z_goal[None], self.theta[None])[0]
        P, N = z.shape[:2]
        x = goal_features(z.flatten(0, 1), z_goal.flatten(0, 1)).unflatten(0, (P, N))  # [P, N, 3F]
        W = theta[:, : -self.action_dim].reshape(P, 3 * self.latent_dim, self.action_dim)
        b = theta[:, -self.action_dim :]
        return bound_action(torch.baddbmm(b[:, None], x, W), self.max_action, squash=False)  # [P, N, A]
