"""The `attentive` readout: a few learned queries attend over a frozen ViT's tokens, each returning where it looked and
what it saw (`wm.readout: {type: attentive, queries: 4, dim: 32}`).

References:
    Bardes et al. 2024 (V-JEPA: an attentive probe, a learned query cross-attending over frozen tokens); Levine et al.
    2016 (soft-argmax keypoints); Locatello et al. 2020 (slots: several objects, one vector each).

Why: a scene with several small objects (Push-T: a round agent of a few pixels and a T-shaped block whose position and
angle both matter) loses the small one under mean-pooling and spreads it over every weight of a per-position MLP.
Each query here is a soft selection over the tokens: its softmax weights give a keypoint (the weighted mean of the
token centres, in [-1, 1] image units) and a weighted mean of the tokens' projected values; the latent is an MLP of
all queries' (keypoint, value) pairs. The tokens are standardised over batch and tokens first (BatchNorm without
affine, as the keypoint readout does).

Shapes: tokens `[B, N, D]` -> attention `[B, Q, N]` -> per query (x, y) `[B, Q, 2]` and values `[B, Q, V]` ->
latent `[B, 1, E]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jepa_world.config.parts import fail, register_part
from jepa_world.models.layers import Mlp
from jepa_world.models.readout import ReadoutConfig, TokenReadout
from jepa_world.models.readout_keypoints import token_centres


@register_part("readout", "attentive")
class AttentiveReadout(TokenReadout):
    """Q learned queries over the token grid, each giving a keypoint and a value: `[B, C, H, W] -> [B, N, D] ->
    [B, 1, E]` (see `TokenReadout` for the backbone arguments).

    Args:
        embed_dim: output latent width E.
        queries: Q, the number of learned queries.
        key_dim: width of the keys and queries.
        value_dim: width V of each query's value.
        hidden_dim: hidden width of the MLP from the Q x (2 + V) readings to the latent.
    """

    @dataclass
    class Config(ReadoutConfig):
        """`wm.readout` with `type: attentive`: `queries` learned queries, a latent of width `dim`."""

        type: str = "attentive"
        dim: int = 32
        queries: int = 4
        key_dim: int = 32
        value_dim: int = 16

        def check(self, key: str) -> None:
            super().check(key)
            for name in ("dim", "queries", "key_dim", "value_dim"):
                if getattr(self, name) < 1:
                    fail(f"{key}.{name}", getattr(self, name), "must be >= 1")

        def build(self, backbone: nn.Module, **train) -> AttentiveReadout:
            return AttentiveReadout(backbone=backbone, embed_dim=self.dim, queries=self.queries, key_dim=self.key_dim,
                                    value_dim=self.value_dim, hidden_dim=self.hidden, **train)  # fmt: skip

    def __init__(
        self,
        *,
        backbone: nn.Module,
        embed_dim: int = 32,
        queries: int = 4,
        key_dim: int = 32,
        value_dim: int = 16,
        hidden_dim: int = 256,
        freeze_backbone: bool = True,
        trainable_blocks: int = 0,
    ):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__", "backbone")}
        for name in ("embed_dim", "queries", "key_dim", "value_dim", "hidden_dim"):
            if not isinstance(config[name], int) or config[name] < 1:
                raise ValueError(f"{name}={config[name]!r}: an attentive readout needs an int >= 1")
        super().__init__(
            backbone=backbone, embed_dim=embed_dim, freeze_backbone=freeze_backbone, trainable_blocks=trainable_blocks
        )
        self.config = config  # the backbone keeps its own
        width = backbone.embed_dim
        self.num_queries, self.key_dim = queries, key_dim
        self.input_norm = nn.BatchNorm1d(width, affine=False)  # over batch and tokens
        self.queries = nn.Embedding(queries, key_dim)  # the learned queries: its weight [Q, K]
        nn.init.normal_(self.queries.weight, std=0.02)
        self.keys = nn.Linear(width, key_dim)
        self.values = nn.Linear(width, value_dim)
        self.mlp = Mlp(dim=queries * (2 + value_dim), hidden_dim=hidden_dim, out_dim=embed_dim)
        self.register_buffer("centres", token_centres(self.grid), persistent=False)  # [N, 2]
        self.train(self.training)

    def head_modules(self) -> list[nn.Module]:
        return [self.input_norm, self.queries, self.keys, self.values, self.mlp]

    def attention(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Each query's softmax weights over the tokens `[B, Q, N]`, and the standardised tokens `[B, N, D]`."""
        normed = self.input_norm(tokens.transpose(1, 2)).transpose(1, 2)  # [B, N, D]
        logits = torch.einsum("qk,bnk->bqn", self.queries.weight, self.keys(normed)) / math.sqrt(self.key_dim)
        return logits.softmax(dim=-1), normed

    def read(self, tokens: Tensor) -> Tensor:
        weights, normed = self.attention(tokens)  # [B, Q, N], [B, N, D]
        where = weights @ self.centres  # [B, Q, 2]: each query's keypoint
        what = weights @ self.values(normed)  # [B, Q, V]: what it saw there
        return self.mlp(torch.cat([where, what], dim=-1).flatten(1))[:, None]  # [B, 1, E]
