"""The `keypoints` readout: K soft-argmax keypoints over a frozen ViT's token grid (`wm.readout: {type: keypoints,
keypoints: 1}`).

References:
    Levine et al. 2016 ("deep spatial autoencoders"): a differentiable argmax of per-location scores gives keypoint
    coordinates.

One MLP shared by every token (BatchNorm over batch and tokens first) scores each token for K keypoints and proposes a
sub-patch offset; each keypoint is the softmax-weighted mean of its tokens' centres plus offsets, in [-1, 1] image
units, and the latent is their (x, y) coordinates. Weight sharing makes the head translation-equivariant: on the
cluttered Two-Rooms, fit to the position with 3,000 labelled frames, it finds the agent in frozen ViT tokens within
3.0-4.7 px RMSE where flattened-token probes, linear or MLP, stay at chance (docs/benchmarks.md). Trained by the world
model's loss it does not pick the agent out of the distractors: a fit does (`wm.readout.fit`: `labels`, `actions`).

Shapes: tokens `[B, N, D]` -> scores `[B, N, 3K]` -> keypoints `[B, K, 2]` -> latent `[B, 1, 2K]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jepa_world.config.parts import fail, register_part
from jepa_world.models.layers import Mlp
from jepa_world.models.readout import ReadoutConfig, TokenReadout


def token_centres(grid: tuple[int, int]) -> Tensor:
    """The (x, y) centres of a row-major `(H', W')` token grid in [-1, 1] image units: `[H' * W', 2]`."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([(2 * xs.flatten() + 1) / w - 1, (2 * ys.flatten() + 1) / h - 1], dim=-1).float()


def soft_argmax_keypoints(scores: Tensor, centres: Tensor, half_cell: Tensor) -> Tensor:
    """K keypoints from per-token scores: `scores [B, N, 3K]` (K logits, then K (dx, dy) offsets) -> `[B, K, 2]`.

    Keypoint k is the mean over tokens, weighted by the softmax of its logits, of each token's centre `[N, 2]` plus
    its offset (tanh, at most `half_cell` `[2]` each way): a differentiable argmax that can land between centres.
    """
    k = scores.shape[-1] // 3
    weights = scores[..., :k].softmax(dim=1)  # [B, N, K]
    offsets = torch.tanh(scores[..., k:].unflatten(-1, (k, 2))) * half_cell  # [B, N, K, 2]
    points = centres[None, :, None] + offsets  # [B, N, K, 2]
    return (weights[..., None] * points).sum(dim=1)  # [B, K, 2]


@register_part("readout", "keypoints")
class KeypointReadout(TokenReadout):
    """K soft-argmax keypoints over the token grid: `[B, C, H, W] -> [B, N, D] -> [B, 1, 2K]` (see `TokenReadout` for
    the backbone arguments).

    Args:
        keypoints: K; the latent width is 2K.
        hidden_dim: width of the MLP shared by every token.
    """

    @dataclass
    class Config(ReadoutConfig):
        """`wm.readout` with `type: keypoints`: `keypoints` is K (the latent is their 2K coordinates)."""

        type: str = "keypoints"
        keypoints: int = 1

        def check(self, key: str) -> None:
            super().check(key)
            if self.keypoints < 1:
                fail(f"{key}.keypoints", self.keypoints, "must be >= 1")

        def build(self, backbone: nn.Module, **train) -> KeypointReadout:
            return KeypointReadout(backbone=backbone, keypoints=self.keypoints, hidden_dim=self.hidden, **train)

    def __init__(
        self,
        *,
        backbone: nn.Module,
        keypoints: int = 1,
        hidden_dim: int = 256,
        freeze_backbone: bool = True,
        trainable_blocks: int = 0,
    ):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__", "backbone")}
        if not isinstance(keypoints, int) or keypoints < 1:
            raise ValueError(f"keypoints={keypoints!r}: a keypoint readout needs an int >= 1")
        super().__init__(
            backbone=backbone, embed_dim=2 * keypoints, freeze_backbone=freeze_backbone,
            trainable_blocks=trainable_blocks,
        )  # fmt: skip
        self.config = config  # the backbone keeps its own
        self.num_keypoints = keypoints
        self.input_norm = nn.BatchNorm1d(backbone.embed_dim, affine=False)  # over batch and tokens
        self.mlp = Mlp(dim=backbone.embed_dim, hidden_dim=hidden_dim, out_dim=3 * keypoints)
        rows, cols = self.grid
        self.register_buffer("centres", token_centres((rows, cols)), persistent=False)  # [N, 2]
        self.register_buffer("half_cell", torch.tensor([1 / cols, 1 / rows]), persistent=False)
        self.train(self.training)

    def head_modules(self) -> list[nn.Module]:
        return [self.input_norm, self.mlp]

    def read(self, tokens: Tensor) -> Tensor:
        scores = self.keypoint_scores(tokens)  # [B, N, 3K]
        return soft_argmax_keypoints(scores, self.centres, self.half_cell).flatten(1)[:, None]  # [B, 1, 2K]

    def normed_tokens(self, tokens: Tensor) -> Tensor:
        """Standardised tokens: `[B, N, D] -> [B, N, D]` (BatchNorm over batch and tokens)."""
        return self.input_norm(tokens.transpose(1, 2)).transpose(1, 2)

    def keypoint_scores(self, tokens: Tensor, *, normed: bool = False) -> Tensor:
        """Per-token logits and offsets: tokens `[B, N, D]` (`normed`: from `normed_tokens`) -> `[B, N, 3K]` (K
        logits, then K (dx, dy); `soft_argmax_keypoints` reads them)."""
        return self.mlp(tokens if normed else self.normed_tokens(tokens))
