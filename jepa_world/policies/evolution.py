"""World Models' evolved controller, goal-conditioned: CMA-ES on imagined episodes of a frozen world model.

References:
    Ha & Schmidhuber 2018 (World Models: a linear controller evolved with CMA-ES "inside the dream"); Hansen 2016
    (CMA-ES, `policies/cmaes.py`).

One training step (`forward`) is one CMA-ES generation: `population` parameter vectors of a `LinearController` act
for `horizon` steps inside the world model from the same batch of start / goal latents (frames of the world model's
training episodes); the fitness of a candidate is the mean over the batch of the planner's own cost on its imagined
trajectory (last-step latent distance to the goal plus the mean over the horizon); the distribution is updated and
its mean becomes the deployed controller. No gradients (the training loop runs it as a gradient-free task). Guard
against exploiting model errors: the horizon is the one the CEM planner already trusts (40 steps), and the
controller is linear (little capacity to find narrow exploits).

Shapes: P candidates, N episodes, T = horizon; latents `[N, HW, D]`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jepa_world.planning.costs import goal_distance
from jepa_world.policies.cmaes import CMAES
from jepa_world.policies.networks import LinearController


class EvolvedController(nn.Module):
    """A `LinearController` and its CMA-ES search state; `forward(batch) -> (fitness, metrics)` runs one generation.

    Args:
        world_model: the frozen world model (eval mode; not a checkpoint part).
        controller: the controller whose `theta` is evolved.
        horizon: imagined steps per candidate episode.
        sigma: initial CMA-ES step size (0.1: larger steps jumped on the point-mass test into a plateau of bang-bang
            gains, 48% reached against 100% from 0.1 or 0.05).
        population: candidates per generation (None: CMA-ES's default `4 + 3 ln n`).
    """

    def __init__(
        self,
        *,
        world_model: nn.Module,
        controller: LinearController,
        horizon: int = 40,
        sigma: float = 0.1,
        population: int | None = None,
    ):
        super().__init__()
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"policy.horizon must be an int >= 1, got {horizon!r}")
        self.world_model = world_model.requires_grad_(False).eval()
        self.controller = controller
        self.cma = CMAES(num_params=controller.num_params, sigma=sigma, population=population)
        self.horizon = horizon

    def train(self, mode: bool = True) -> EvolvedController:
        super().train(mode)
        self.world_model.eval()
        return self

    @torch.no_grad()
    def fitness(self, theta: Tensor, z0: Tensor, z_goal: Tensor) -> Tensor:
        """Mean imagined cost of each candidate `theta` `[P, n]` from starts / goals `[N, ...]` -> `[P]`."""
        P, N = theta.shape[0], z0.shape[0]
        z = z0[None].expand(P, *z0.shape).flatten(0, 1)  # [P*N, ...]
        g = z_goal[None].expand(P, *z_goal.shape).flatten(0, 1)
        total = torch.zeros(P * N, device=z0.device)
        for _ in range(self.horizon):
            a = self.controller(z.unflatten(0, (P, N)), g.unflatten(0, (P, N)), theta)  # [P, N, A]
            z = self.world_model.step(z, a.flatten(0, 1))
            d = goal_distance(z, g)  # [P*N]
            total += d
        cost = d + total / self.horizon  # the planner's "last+mean" cost
        return torch.nan_to_num(cost.reshape(P, N).mean(dim=1), nan=float("inf"))

    @torch.no_grad()
    def forward(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """One CMA-ES generation on `batch` ({"z0", "z_goal"}: `[N, HW, D]` each); deploys the new mean."""
        z0, g = batch["z0"], batch["z_goal"]
        theta = self.cma.ask().to(torch.float32)  # [P, n]
        f = self.fitness(theta, z0, g)
        self.cma.tell(theta, f)
        self.controller.theta.copy_(self.cma.mean.to(self.controller.theta.dtype))
        start = goal_distance(z0, g).mean()
        metrics = {
            "loss": f.min(),
            "fitness_best": f.min(),
            "fitness_mean": f[torch.isfinite(f)].mean() if torch.isfinite(f).any() else f.min(),
            "start_distance": start,
            "sigma": self.cma.sigma.float(),
        }
        return metrics["loss"], metrics
