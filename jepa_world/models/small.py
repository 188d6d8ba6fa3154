"""Small CPU-friendly encoders of one latent per frame: a pooled-pixel encoder and a readout of a ViT's tokens (the
residual-MLP dynamics over those latents: `mlp_dynamics.py`).

References:
    Sobal et al. 2025 (PLDM) and the EB-JEPA Two-Rooms setup: a small encoder trained jointly with Markov latent
    dynamics over one pooled latent per frame, the practical choice for planning on a CPU.

Shapes:
    frames `[B, C, H, W]` -> latents `[B, 1, D]` (a readout also reads a frozen backbone's tokens `[B, N, E]`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepa_world.models.ac_predictor import check_dims
from jepa_world.models.layers import Mlp, constructor_config
from jepa_world.registry import register_model

READOUT_HEADS = ("mlp", "keypoints")


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


class PooledEncoder(nn.Module):
    """CPU-friendly frame encoder: average-pool, flatten, standardise, MLP to one vector. `[B, C, H, W] -> [B, 1, D]`.

    Args:
        img_size: input side (H = W).
        in_chans: input channels.
        pool: average-pool factor applied first (64 px -> 32 px with 2).
        hidden_dim: MLP hidden width.
        embed_dim: output width D.
        input_norm: standardise every pooled pixel over the batch (BatchNorm without affine; running statistics in
            eval mode). It removes the static background, which otherwise swamps the few pixels that move: measured
            on Two-Rooms, without it even a supervised inverse-dynamics head on this encoder does not learn (MSE
            0.88 after 600 steps, latent std falling to 6e-4), with it the MSE reaches 0.19.
    """

    def __init__(
        self,
        *,
        img_size: int = 64,
        in_chans: int = 3,
        pool: int = 2,
        hidden_dim: int = 256,
        embed_dim: int = 64,
        input_norm: bool = True,
    ):
        config = constructor_config(locals())
        super().__init__()
        self.config = config
        if img_size % pool:
            raise ValueError(f"pool={pool} does not divide img_size={img_size}")
        self.img_size, self.pool, self.embed_dim = img_size, pool, embed_dim
        dim = in_chans * (img_size // pool) ** 2
        self.input_norm = nn.BatchNorm1d(dim, affine=False) if input_norm else None
        self.mlp = Mlp(dim=dim, hidden_dim=hidden_dim, out_dim=embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"expected [B, C, {self.img_size}, {self.img_size}] frames, got {tuple(x.shape)}")
        x = F.avg_pool2d(x, self.pool) if self.pool > 1 else x
        x = x.flatten(1)  # [B, C * H/pool * W/pool]
        if self.input_norm is not None:
            x = self.input_norm(x)
        return self.mlp(x)[:, None]  # [B, 1, D]


class TokenReadout(nn.Module):
    """One latent per frame from a (frozen) backbone's tokens: `[B, C, H, W] -> tokens [B, N, D] -> [B, 1, E]`.

    The readout keeps where things are: the N x D tokens are standardised over the batch (BatchNorm without affine, as
    `PooledEncoder` does for pixels: it removes the static background) and mapped by an MLP whose first layer has its
    own weights for every token position. Mean-pooling the tokens instead keeps where a dot sits inside a patch and
    loses which patch it is in (measured on Two-Rooms: a minimum of the goal cost in every patch).

    What of the backbone trains: nothing (`freeze_backbone`), all of it, or only its last `trainable_blocks` blocks
    and final norm. Whatever is frozen is a fixed function of the frame, so its output (`frozen_features`) can be
    computed once per frame and passed to `forward` in place of the pixels (`jepa_world.data.feature_cache`).

    Args:
        backbone: a ViT encoder (its `grid_size` and `embed_dim` fix N and D; a video ViT gives N = H' * W' tokens per
            frame, the frame repeated over one tubelet).
        embed_dim: output latent width E.
        hidden_dim: MLP hidden width.
        freeze_backbone: no gradient to the backbone, kept in eval mode (its features are computed under no_grad).
        trainable_blocks: with `freeze_backbone=False`, train only the last k blocks and the final norm (0: all).
        head: "mlp" (the per-position MLP above) or "keypoints": one MLP shared by every token (BatchNorm over
            batch and tokens first) scores each token for `embed_dim / 2` keypoints and proposes a sub-patch offset;
            each keypoint is the softmax-weighted mean of its tokens' centres plus offsets, in [-1, 1] image units,
            and the latent is their (x, y) coordinates (`soft_argmax_keypoints`; Levine et al. 2016, "deep spatial
            autoencoders"). Weight sharing makes the head translation-equivariant: on the cluttered Two-Rooms,
            fit to the position with 3,000 labelled frames, it finds the agent in frozen ViT tokens within 3.0-4.7 px
            RMSE where flattened-token probes, linear or MLP, stay at chance (docs/notes/cluttered-two-rooms.md, "Where
            the cluttered agent is in the tokens"). Trained by the world model's loss it does not pick the agent out of
            the distractors; `wm.readout_labels` fits it on a few labelled frames before the world model trains
            (`training.readout_fit`), `wm.readout_from_actions` to the actions alone (`training.readout_actions`).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        embed_dim: int = 32,
        hidden_dim: int = 256,
        freeze_backbone: bool = True,
        trainable_blocks: int = 0,
        head: str = "mlp",
    ):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__", "backbone")}
        super().__init__()
        self.config = config  # the backbone keeps its own
        grid = getattr(backbone, "grid_size", None)
        if grid is None or not hasattr(backbone, "embed_dim"):
            raise TypeError(f"backbone is a {type(backbone).__name__}; TokenReadout needs a ViT (grid_size, embed_dim)")
        depth = len(getattr(backbone, "blocks", ()))
        if trainable_blocks and (freeze_backbone or not 0 < trainable_blocks <= depth):
            raise ValueError(
                f"trainable_blocks={trainable_blocks} needs freeze_backbone=False and 1 <= k <= the backbone's depth "
                f"{depth}"
            )
        # A video backbone reads one frame as one tubelet (the frame repeated): one time step of its (T, H, W) grid.
        num_tokens = math.prod(grid[-2:])
        self._frame_grid = (1, *grid[-2:]) if getattr(backbone, "is_video", False) else tuple(grid[-2:])
        self.backbone, self.embed_dim, self.freeze_backbone = backbone, embed_dim, freeze_backbone
        # Blocks [0, frozen_blocks) and the embeddings never train: all when frozen, all but the last k when partly.
        if freeze_backbone:
            self.frozen_blocks = depth
        else:
            self.frozen_blocks = depth - trainable_blocks if trainable_blocks else 0
        if head not in READOUT_HEADS:
            raise ValueError(f"head={head!r}; expected one of {READOUT_HEADS}")
        self.head = head
        if head == "keypoints":
            if embed_dim % 2:
                raise ValueError(f"a keypoint readout's embed_dim is 2 x its keypoints; got an odd {embed_dim}")
            self.num_keypoints = embed_dim // 2
            self.input_norm = nn.BatchNorm1d(backbone.embed_dim, affine=False)  # over batch and tokens
            self.mlp = Mlp(dim=backbone.embed_dim, hidden_dim=hidden_dim, out_dim=3 * self.num_keypoints)
            rows, cols = grid[-2:]
            self.register_buffer("centres", token_centres((rows, cols)), persistent=False)  # [N, 2]
            self.register_buffer("half_cell", torch.tensor([1 / cols, 1 / rows]), persistent=False)
        else:
            self.input_norm = nn.BatchNorm1d(num_tokens * backbone.embed_dim, affine=False)
            self.mlp = Mlp(dim=num_tokens * backbone.embed_dim, hidden_dim=hidden_dim, out_dim=embed_dim)
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        elif trainable_blocks:
            for name, p in self.backbone.named_parameters():
                p.requires_grad_(p.requires_grad and self._trains(name))
        self.train(self.training)

    def head_modules(self) -> list[nn.Module]:
        """The readout's own modules (everything but the backbone): what trains at the readout's LR or is fit."""
        return [self.input_norm, self.mlp]

    @property
    def caches_features(self) -> bool:
        """Whether part of the backbone is frozen, so `frozen_features` of a frame never change."""
        return self.freeze_backbone or self.frozen_blocks > 0

    def _trains(self, name: str) -> bool:
        if name.startswith("norm."):
            return True
        parts = name.split(".")
        return parts[0] == "blocks" and int(parts[1]) >= self.frozen_blocks

    def train(self, mode: bool = True) -> TokenReadout:
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()  # a frozen feature extractor has no drop-path noise
        else:
            for block in self.backbone.blocks[: self.frozen_blocks]:
                block.eval()
        return self

    @torch.no_grad()
    def frozen_features(self, x: Tensor) -> Tensor:
        """What the frozen part of the backbone makes of frames `[B, C, H, W]`: tokens `[B, N, D]`."""
        if self.freeze_backbone:
            return self.backbone(x)
        return self.backbone.forward_prefix(x, self.frozen_blocks)[0]

    def forward(self, x: Tensor) -> Tensor:
        """Frames `[B, C, H, W]`, or their `frozen_features` `[B, N, D]` computed earlier -> latents `[B, 1, E]`."""
        if x.ndim == 3 and not self.caches_features:
            raise ValueError(f"tokens {tuple(x.shape)} in place of frames need a frozen backbone (or frozen blocks)")
        if self.freeze_backbone:
            tokens = x if x.ndim == 3 else self.frozen_features(x)
        elif self.frozen_blocks:  # frozen first blocks, trained last ones
            z = x if x.ndim == 3 else self.frozen_features(x)
            tokens = self.backbone.forward_suffix(z, self.frozen_blocks, self._frame_grid)
        else:
            tokens = self.backbone(x)  # [B, N, D]
        if self.head == "keypoints":
            scores = self.keypoint_scores(tokens)  # [B, N, 3K]
            return soft_argmax_keypoints(scores, self.centres, self.half_cell).flatten(1)[:, None]  # [B, 1, 2K]
        return self.mlp(self.input_norm(tokens.flatten(1)))[:, None]  # [B, 1, E]

    def normed_tokens(self, tokens: Tensor) -> Tensor:
        """A keypoint head's standardised tokens: `[B, N, D] -> [B, N, D]` (BatchNorm over batch and tokens)."""
        return self.input_norm(tokens.transpose(1, 2)).transpose(1, 2)

    def keypoint_scores(self, tokens: Tensor, *, normed: bool = False) -> Tensor:
        """A keypoint head's per-token logits and offsets: tokens `[B, N, D]` (`normed`: from `normed_tokens`) ->
        `[B, N, 3K]` (K logits, then K (dx, dy); `soft_argmax_keypoints` reads them)."""
        if self.head != "keypoints":
            raise ValueError(f"keypoint_scores needs head='keypoints', this readout's is {self.head!r}")
        return self.mlp(tokens if normed else self.normed_tokens(tokens))


class LiftedReadout(nn.Module):
    """A frozen readout's few coordinates, lifted by a trained MLP to a wider latent: `[B, C, H, W] -> [B, 1, E]`.

    A keypoint readout fit to the agent's position (`wm.readout_labels`) gives its (x, y); planning on those makes
    CEM minimise the straight-line distance to the goal, which stops at a wall between the rooms (CEM with that
    cost on the true simulator: 76% / 88% on Two-Rooms). Trained with the dynamics and the temporal smoothness term,
    a wider latent of the same coordinates can follow the geodesic around the wall instead, as the pixel-trained
    latents of the plain arena do (PLDM). The readout (and its backbone) stays frozen in eval mode, so its output is
    a fixed function of the frame: `frozen_features` are those outputs, computed once per frame by the feature cache.

    Args:
        readout: a `TokenReadout` with a frozen backbone (fit first, frozen here).
        embed_dim: latent width E; 0: no lift, the readout's coordinates are the latent (E = the readout's width).
        hidden_dim: width of the lift's two hidden layers.
    """

    caches_features = True

    def __init__(self, *, readout: TokenReadout, embed_dim: int = 32, hidden_dim: int = 128):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__", "readout")}
        super().__init__()
        self.config = config  # the readout keeps its own
        if not readout.freeze_backbone:
            raise ValueError("LiftedReadout freezes its readout: pass one with freeze_backbone=True")
        check_dims(embed_dim=(embed_dim, 0), hidden_dim=(hidden_dim, 1))
        self.readout = readout.requires_grad_(False)
        self.in_dim = readout.embed_dim
        self.embed_dim = embed_dim or readout.embed_dim
        mlp = Mlp(dim=hidden_dim, hidden_dim=hidden_dim, out_dim=embed_dim) if embed_dim else None
        self.lift = (
            nn.Sequential(nn.Linear(self.in_dim, hidden_dim), nn.GELU(), mlp) if mlp is not None else nn.Identity()
        )
        self.train(self.training)

    def head_modules(self) -> list[nn.Module]:
        """What trains with the dynamics: the lift (nothing without one)."""
        return [self.lift]

    def train(self, mode: bool = True) -> LiftedReadout:
        super().train(mode)
        self.readout.eval()  # frozen: its BatchNorm keeps the statistics of its fit
        return self

    @torch.no_grad()
    def frozen_features(self, x: Tensor) -> Tensor:
        """The frozen readout's coordinates of frames `[B, C, H, W]`, or of its backbone's tokens `[B, N, D]`:
        `[B, 1, E_readout]`."""
        return self.readout(x)

    def forward(self, x: Tensor) -> Tensor:
        """Frames `[B, C, H, W]`, or their `frozen_features` `[B, 1, E_readout]` computed earlier -> `[B, 1, E]`."""
        if x.ndim == 3 and x.shape[1:] != (1, self.in_dim):
            raise ValueError(
                f"a LiftedReadout reads frames or its readout's outputs [B, 1, {self.in_dim}], got {tuple(x.shape)} "
                "(backbone tokens: pass them through frozen_features first)"
            )
        z = x if x.ndim == 3 else self.frozen_features(x)  # [B, 1, E_readout]
        return self.lift(z)


def pixel_encoder(encoder: nn.Module) -> nn.Module:
    """The module that reads the pixels: the ViT under a `TokenReadout` (lifted or not), else `encoder` itself."""
    encoder = encoder.readout if isinstance(encoder, LiftedReadout) else encoder
    return encoder.backbone if isinstance(encoder, TokenReadout) else encoder


# --------------------------------------------------------------------------------------------------------------------
# Presets.
# --------------------------------------------------------------------------------------------------------------------
@register_model
def pooled_encoder(**kwargs) -> PooledEncoder:
    return PooledEncoder(**kwargs)
