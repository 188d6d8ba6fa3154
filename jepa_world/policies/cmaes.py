"""CMA-ES: the covariance matrix adaptation evolution strategy, (mu/mu_w, lambda) with rank-one and rank-mu updates.

References:
    Hansen 2016, "The CMA Evolution Strategy: A Tutorial" (arXiv:1604.00772): the default strategy parameters and the
    update equations below follow its Figure 6 / Appendix A; Ha & Schmidhuber 2018 (World Models) evolve their
    controller with it.

The state (mean, step size, covariance, evolution paths, generation) lives in buffers, so `state_dict` checkpoints
it and a resumed run continues exactly. Sampling draws from the torch RNG (seeded per step by the training loop) or
a given generator. Minimisation; shapes: `n` parameters, `lam` candidates `[lam, n]`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class CMAES(nn.Module):
    """Minimise a black-box function of `num_params` variables: `ask()` candidates, `tell(candidates, fitness)`.

    Args:
        num_params: dimension n.
        sigma: initial step size (> 0).
        population: candidates per generation lambda (default `4 + floor(3 ln n)`).
        mean: initial mean `[n]` (default zeros).
    """

    def __init__(
        self, *, num_params: int, sigma: float = 0.5, population: int | None = None, mean: Tensor | None = None
    ):
        super().__init__()
        if not isinstance(num_params, int) or num_params < 1:
            raise ValueError(f"num_params must be an int >= 1, got {num_params!r}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        n = num_params
        lam = population if population is not None else 4 + int(3 * math.log(n))
        if not isinstance(lam, int) or lam < 2:
            raise ValueError(f"population must be an int >= 2, got {population!r}")
        mu = lam // 2
        w = math.log((lam + 1) / 2) - torch.log(torch.arange(1, mu + 1, dtype=torch.float64))
        w = w / w.sum()
        self.n, self.lam, self.mu = n, lam, mu
        self.mu_eff = float(1.0 / (w**2).sum())
        me = self.mu_eff
        self.c_c = (4 + me / n) / (n + 4 + 2 * me / n)
        self.c_s = (me + 2) / (n + me + 5)
        self.c_1 = 2 / ((n + 1.3) ** 2 + me)
        self.c_mu = min(1 - self.c_1, 2 * (me - 2 + 1 / me) / ((n + 2) ** 2 + me))
        self.d_s = 1 + 2 * max(0.0, math.sqrt((me - 1) / (n + 1)) - 1) + self.c_s
        self.chi_n = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n**2))
        self.register_buffer("weights", w)
        m = torch.zeros(n, dtype=torch.float64) if mean is None else mean.detach().double().flatten().clone()
        if m.shape != (n,):
            raise ValueError(f"mean must have {n} elements, got shape {tuple(mean.shape)}")
        self.register_buffer("mean", m)
        self.register_buffer("sigma", torch.tensor(float(sigma), dtype=torch.float64))
        self.register_buffer("C", torch.eye(n, dtype=torch.float64))
        self.register_buffer("p_c", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("p_s", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("generation", torch.zeros((), dtype=torch.long))

    def _factor(self) -> tuple[Tensor, Tensor]:
        """B and D of C = B diag(D^2) B^T (eigen-decomposition; C is re-symmetrised first)."""
        C = (self.C + self.C.T) / 2
        eigval, B = torch.linalg.eigh(C)
        return B, eigval.clamp_min(1e-20).sqrt()

    def ask(self, generator: torch.Generator | None = None) -> Tensor:
        """`lam` candidates `[lam, n]` (float64) drawn from N(mean, sigma^2 C)."""
        B, D = self._factor()
        z = torch.randn(self.lam, self.n, generator=generator, dtype=torch.float64, device=self.mean.device)
        return self.mean + self.sigma * (z * D) @ B.T

    @torch.no_grad()
    def tell(self, candidates: Tensor, fitness: Tensor) -> None:
        """Update the distribution from the candidates of `ask` and their fitness `[lam]` (lower is better)."""
        x, f = candidates.double(), fitness.double().flatten()
        if x.shape != (self.lam, self.n) or f.shape != (self.lam,):
            raise ValueError(
                f"tell needs candidates [{self.lam}, {self.n}] and fitness [{self.lam}], got {tuple(x.shape)} and "
                f"{tuple(f.shape)}"
            )
        f = torch.nan_to_num(f, nan=math.inf)  # a diverged candidate ranks last
        order = torch.argsort(f)[: self.mu]
        y = (x[order] - self.mean) / self.sigma  # [mu, n]
        y_w = self.weights @ y  # [n]
        self.mean += self.sigma * y_w
        B, D = self._factor()
        c_inv_sqrt_y = B @ ((B.T @ y_w) / D)  # C^-1/2 y_w
        self.p_s.mul_(1 - self.c_s).add_(math.sqrt(self.c_s * (2 - self.c_s) * self.mu_eff) * c_inv_sqrt_y)
        g = int(self.generation) + 1
        ps_norm = float(self.p_s.norm())
        h_s = ps_norm / math.sqrt(1 - (1 - self.c_s) ** (2 * g)) < (1.4 + 2 / (self.n + 1)) * self.chi_n
        self.p_c.mul_(1 - self.c_c)
        if h_s:
            self.p_c.add_(math.sqrt(self.c_c * (2 - self.c_c) * self.mu_eff) * y_w)
        delta = (1 - float(h_s)) * self.c_c * (2 - self.c_c)
        rank_mu = (y.T * self.weights) @ y
        self.C.mul_(1 - self.c_1 - self.c_mu + self.c_1 * delta)
        self.C.add_(self.c_1 * torch.outer(self.p_c, self.p_c) + self.c_mu * rank_mu)
        self.sigma *= math.exp((self.c_s / self.d_s) * (ps_norm / self.chi_n - 1))
        self.generation += 1
