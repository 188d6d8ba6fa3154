"""Residual-MLP latent dynamics: the Markov predictor the CPU planners roll out thousands of times per replan.

References:
    Sobal et al. 2025 (PLDM) and the EB-JEPA Two-Rooms setup: Markov dynamics over one pooled latent per frame,
    `z_{t+1} = z_t + f([z_t, a_t])`, the practical choice for planning on a CPU.

Shapes: frames `[B, T, 1, D]` with actions `[B, T, A]` (the call of `ActionConditionedPredictor`, so `WorldModel`
uses either); the planner's rollout works on rows: z0 `[N, D]`, actions `[N, H, A]` -> latents `[N, H, D]`.

Speed: a Two-Rooms replan rolls out 100 samples x 40 steps x 4 iterations, each step a handful of `[100, hidden]`
products. At that size the per-op dispatch costs as much as the arithmetic, so `forward` and `rollout` share one
functional step (`_delta`) over weights fetched (and transposed) once per call, and `rollout` skips the
transformer's cache bookkeeping. The arithmetic is the modules' own (`addmm` with the same operands as `nn.Linear`),
so the outputs are bit-identical to calling the modules (tested). `plan.compile` compiles the world model's rollout
for planning (`jepa_world.planning.costs.compile_rollout`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepa_world.models.ac_predictor import RolloutCache, check_dims, check_shape, check_states
from jepa_world.models.layers import LN_EPS, Mlp, constructor_config, init_weights_
from jepa_world.registry import register_model

Weights = tuple  # (w_in, b_in, blocks, (ln_w, ln_b, w_out, b_out)): what `_delta` reads, fetched once per call


class ResidualMlpDynamics(nn.Module):
    """Markov latent dynamics for one pooled latent per frame: `z_{t+1} = z_t + f([z_t, a_t, (s_t)])`.

    The practical predictor for planning on CPU (PLDM-style): a CEM step over thousands of sequences costs a few
    small matrix products, against a transformer pass per frame for `ActionConditionedPredictor`. Same call as that
    predictor (frames `[B, T, 1, D]`, output t predicts frame t+1, optional rollout cache), so `WorldModel` and the
    planners use either. Each output depends on its own frame only, which is block-causal by construction.

    Args:
        embed_dim: latent width D (input and output).
        action_dim: A, taken from the data.
        state_dim: S, taken from the data; 0 = no state input.
        hidden_dim: width of the residual MLP.
        depth: residual blocks (LayerNorm -> Linear -> GELU -> Linear).
        init_std: std of the truncated-normal init (the last layer of each block and the output start at zero, so
            the untrained model predicts "nothing moves").
    """

    grid_size = (1, 1)

    def __init__(
        self,
        *,
        embed_dim: int,
        action_dim: int,
        state_dim: int = 0,
        hidden_dim: int = 256,
        depth: int = 2,
        init_std: float = 0.02,
    ):
        config = constructor_config(locals())
        super().__init__()
        self.config = config
        check_dims(embed_dim=(embed_dim, 1), action_dim=(action_dim, 1), state_dim=(state_dim, 0),
                    hidden_dim=(hidden_dim, 1), depth=(depth, 0))  # fmt: skip
        self.embed_dim, self.action_dim, self.state_dim = embed_dim, action_dim, state_dim
        self.inp = nn.Linear(embed_dim + action_dim + state_dim, hidden_dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden_dim, eps=LN_EPS), Mlp(dim=hidden_dim, hidden_dim=hidden_dim))
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden_dim, eps=LN_EPS), nn.GELU(), nn.Linear(hidden_dim, embed_dim))
        init_weights_(self, std=init_std)
        with torch.no_grad():
            for blk in self.blocks:
                blk[1].fc2.weight.zero_()
            self.out[-1].weight.zero_()

    def _weights(self) -> Weights:
        blocks = [(ln.weight, ln.bias, mlp.fc1.weight.t(), mlp.fc1.bias, mlp.fc2.weight.t(), mlp.fc2.bias)
                  for ln, mlp in self.blocks]  # fmt: skip
        norm, lin = self.out[0], self.out[2]
        return self.inp.weight.t(), self.inp.bias, blocks, (norm.weight, norm.bias, lin.weight.t(), lin.bias)

    @staticmethod
    def _delta(x: Tensor, weights: Weights) -> Tensor:
        """`f` on input rows `[N, D + A (+ S)]` -> `[N, D]`: the modules' arithmetic, op for op."""
        w_in, b_in, blocks, (ln_w, ln_b, w_out, b_out) = weights
        h = torch.addmm(b_in, x, w_in)  # [N, hidden]
        for bn_w, bn_b, w1, b1, w2, b2 in blocks:
            y = F.layer_norm(h, (h.shape[-1],), bn_w, bn_b, LN_EPS)
            h = h + torch.addmm(b2, F.gelu(torch.addmm(b1, y, w1)), w2)
        y = F.gelu(F.layer_norm(h, (h.shape[-1],), ln_w, ln_b, LN_EPS))
        return torch.addmm(b_out, y, w_out)  # [N, D]

    def forward(
        self, z: Tensor, actions: Tensor, states: Tensor | None = None, *, cache: RolloutCache | None = None
    ) -> Tensor:
        """Predict the next latent of every input frame.

        Args:
            z: `[B, T, 1, D]` frame latents.
            actions: `[B, T, A]`; action t moves frame t to frame t+1.
            states: `[B, T, S]`, required iff state_dim > 0.
            cache: rollout bookkeeping (only its frame count changes: the model is Markov).

        Returns:
            `[B, T, 1, D]`: output t predicts frame t+1 from frame t.
        """
        if z.ndim != 4 or z.shape[2] != 1 or z.shape[-1] != self.embed_dim:
            raise ValueError(
                f"z must have shape [B, T, 1, {self.embed_dim}] (one pooled latent per frame; use a transformer "
                f"preset such as dynamics_nano for patch tokens), got {tuple(z.shape)}"
            )
        B, T = z.shape[:2]
        check_shape(actions, (B, T, self.action_dim), "actions")
        parts = [z[:, :, 0], actions.to(z.dtype)]
        if check_states(states, (B, T, self.state_dim), self.state_dim):
            parts.append(states.to(z.dtype))
        x = torch.cat(parts, dim=-1).flatten(0, 1)  # [B*T, D + A (+ S)]
        if cache is not None:
            cache.num_frames += T
        return (z[:, :, 0] + self._delta(x, self._weights()).unflatten(0, (B, T)))[:, :, None]  # [B, T, 1, D]

    def rollout(self, z0: Tensor, actions: Tensor, *, norm: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Feed the predictions back for H steps: z0 `[N, D]`, actions `[N, H, A]` -> latents `[N, H, D]`.

        The same numbers as H one-frame calls of `forward`, each prediction passed through `norm` before it is fed
        back (`WorldModel` passes its latent norm), at a fraction of the dispatch. Differentiable (policies
        backpropagate through it). Models with a state input roll out through `WorldModel.rollout`, which fills the
        states.
        """
        if self.state_dim:
            raise ValueError("rollout needs the states of every step for a model with state_dim > 0; use WorldModel")
        if z0.ndim != 2 or z0.shape[-1] != self.embed_dim:
            raise ValueError(f"z0 must have shape [N, {self.embed_dim}], got {tuple(z0.shape)}")
        if actions.ndim != 3 or actions.shape[0] != z0.shape[0] or actions.shape[2] != self.action_dim:
            want = f"[{z0.shape[0]}, H, {self.action_dim}]"
            raise ValueError(f"actions must have shape {want}, got {tuple(actions.shape)}")
        weights, a = self._weights(), actions.to(z0.dtype)
        z, out = z0, []
        for t in range(a.shape[1]):
            z = z + self._delta(torch.cat([z, a[:, t]], dim=-1), weights)  # [N, D]
            if norm is not None:
                z = norm(z)
            out.append(z)
        return torch.stack(out, dim=1)  # [N, H, D]


# --------------------------------------------------------------------------------------------------------------------
# Presets. embed_dim / action_dim / state_dim of the dynamics come from the encoder and the data.
# --------------------------------------------------------------------------------------------------------------------
@register_model
def dynamics_mlp(**kwargs) -> ResidualMlpDynamics:
    # Markov residual MLP over one pooled latent: the CPU planning choice (CEM over 5,000 x 40-step rollouts).
    return ResidualMlpDynamics(**{**dict(hidden_dim=128, depth=2), **kwargs})
