"""The `mlp` readout: a per-position MLP over all of a frozen ViT's tokens (`wm.readout: {type: mlp, dim: 32}`).

The readout keeps where things are: the N x D tokens are standardised over the batch (BatchNorm without affine, as
`PooledEncoder` does for pixels: it removes the static background) and mapped by an MLP whose first layer has its own
weights for every token position. Mean-pooling the tokens instead keeps where a dot sits inside a patch and loses
which patch it is in (measured on Two-Rooms: a minimum of the goal cost in every patch).

Shapes: tokens `[B, N, D]` -> flattened `[B, N * D]` -> latent `[B, 1, E]`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from jepa_world.config.parts import fail, register_part
from jepa_world.models.layers import Mlp
from jepa_world.models.readout import ReadoutConfig, TokenReadout


@register_part("readout", "mlp")
class MlpReadout(TokenReadout):
    """A per-position MLP over all tokens: `[B, C, H, W] -> [B, N, D] -> [B, 1, E]` (see `TokenReadout` for the
    backbone arguments).

    Args:
        embed_dim: output latent width E.
        hidden_dim: MLP hidden width.
    """

    @dataclass
    class Config(ReadoutConfig):
        """`wm.readout` with `type: mlp`: `dim` is the latent width."""

        type: str = "mlp"
        dim: int = 32

        def check(self, key: str) -> None:
            super().check(key)
            if self.dim < 1:
                fail(f"{key}.dim", self.dim, "must be >= 1")

        def build(self, backbone: nn.Module, **train) -> MlpReadout:
            return MlpReadout(backbone=backbone, embed_dim=self.dim, hidden_dim=self.hidden, **train)

    def __init__(
        self,
        *,
        backbone: nn.Module,
        embed_dim: int = 32,
        hidden_dim: int = 256,
        freeze_backbone: bool = True,
        trainable_blocks: int = 0,
    ):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__", "backbone")}
        super().__init__(
            backbone=backbone, embed_dim=embed_dim, freeze_backbone=freeze_backbone, trainable_blocks=trainable_blocks
        )
        self.config = config  # the backbone keeps its own
        self.input_norm = nn.BatchNorm1d(self.num_tokens * backbone.embed_dim, affine=False)
        self.mlp = Mlp(dim=self.num_tokens * backbone.embed_dim, hidden_dim=hidden_dim, out_dim=embed_dim)
        self.train(self.training)

    def head_modules(self) -> list[nn.Module]:
        return [self.input_norm, self.mlp]

    def read(self, tokens: Tensor) -> Tensor:
        return self.mlp(self.input_norm(tokens.flatten(1)))[:, None]  # [B, 1, E]
