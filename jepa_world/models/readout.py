"""Readouts: one latent per frame from a pretrained ViT's tokens, as parts of a world model chosen by `wm.readout.type`.

References:
    Assran et al. 2025 (V-JEPA 2-AC: a world model on a frozen JEPA encoder's tokens); Levine et al. 2016 (deep
    spatial autoencoders: soft-argmax keypoints); Kumar et al. 2022 (LP-FT: fit a head on frozen features first).

This file holds what every readout shares: `ReadoutConfig` (the keys of every `wm.readout` section), `TokenReadout`
(the backbone and which of its blocks train; a subclass adds the head that reads the tokens) and `LiftedReadout` (a
readout fit first, then frozen, its coordinates lifted to a wider latent). The heads, each registered by name with a
config of its own: `readout_mlp.py` (`mlp`), `readout_keypoints.py` (`keypoints`).

Shapes:
    frames `[B, C, H, W]` -> backbone tokens `[B, N, D]` -> latent `[B, 1, E]`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from jepa_world.config.parts import NONE, fail, part_type
from jepa_world.models.ac_predictor import check_dims
from jepa_world.models.layers import Mlp


@dataclass
class ReadoutConfig:
    """The keys every `wm.readout` section has (a head adds its own).

    Attributes:
        type: the registered head (`mlp`, `keypoints`).
        hidden: width of the head's MLP.
        fit: `{type: none}` (the readout trains with the dynamics), or a fit that sets it up before the dynamics train
            and then freezes it (`{type: labels, labels: 500}`, `{type: actions}`: `jepa_world.training.readout_fit`,
            `readout_actions`).
        lift: with a fit, the width of the MLP that lifts the frozen readout's output, trained with the dynamics (0:
            plan on the readout's output itself).
    """

    type: str = NONE
    hidden: int = 256
    fit: dict[str, Any] = field(default_factory=lambda: {"type": NONE})
    lift: int = 0
    nested_parts: ClassVar[dict[str, str]] = {"fit": "fit"}  # `fit` is a part of its own (registered as kind "fit")

    @property
    def fit_type(self) -> str:
        return part_type(self.fit)

    def check(self, key: str) -> None:
        if self.hidden < 1:
            fail(f"{key}.hidden", self.hidden, "must be >= 1")
        if self.lift < 0:
            fail(f"{key}.lift", self.lift, "must be >= 0")
        if self.lift and self.fit_type == NONE:
            fail(f"{key}.lift", self.lift, f"lifts a fit readout: set {key}.fit.type (labels or actions)")


class TokenReadout(nn.Module):
    """The backbone half of a readout: a ViT whose tokens a head (a subclass) reads. `[B, C, H, W] -> [B, 1, E]`.

    What of the backbone trains: nothing (`freeze_backbone`), all of it, or only its last `trainable_blocks` blocks
    and final norm. Whatever is frozen is a fixed function of the frame, so its output (`frozen_features`) can be
    computed once per frame and passed to `forward` in place of the pixels (`jepa_world.data.feature_cache`).

    Subclasses build their head in `__init__` (after this one) and implement `read(tokens [B, N, D]) -> [B, 1, E]`
    and `head_modules()`.

    Args:
        backbone: a ViT encoder (its `grid_size` and `embed_dim` fix N and D; a video ViT gives N = H' * W' tokens per
            frame, the frame repeated over one tubelet).
        embed_dim: output latent width E.
        freeze_backbone: no gradient to the backbone, kept in eval mode (its features are computed under no_grad).
        trainable_blocks: with `freeze_backbone=False`, train only the last k blocks and the final norm (0: all).
    """

    part_children = ("backbone",)  # the constructor arguments that are parts (a checkpoint stores their tree)

    def __init__(self, *, backbone: nn.Module, embed_dim: int, freeze_backbone: bool = True, trainable_blocks: int = 0):
        super().__init__()
        grid = getattr(backbone, "grid_size", None)
        if grid is None or not hasattr(backbone, "embed_dim"):
            raise TypeError(f"backbone is a {type(backbone).__name__}; a readout needs a ViT (grid_size, embed_dim)")
        depth = len(getattr(backbone, "blocks", ()))
        if trainable_blocks and (freeze_backbone or not 0 < trainable_blocks <= depth):
            raise ValueError(
                f"trainable_blocks={trainable_blocks} needs freeze_backbone=False and 1 <= k <= the backbone's depth "
                f"{depth}"
            )
        # A video backbone reads one frame as one tubelet (the frame repeated): one time step of its (T, H, W) grid.
        self.grid = tuple(grid[-2:])  # (rows, cols) of one frame's tokens
        self.num_tokens = math.prod(self.grid)
        self._frame_grid = (1, *self.grid) if getattr(backbone, "is_video", False) else self.grid
        self.backbone, self.embed_dim, self.freeze_backbone = backbone, embed_dim, freeze_backbone
        # Blocks [0, frozen_blocks) and the embeddings never train: all when frozen, all but the last k when partly.
        if freeze_backbone:
            self.frozen_blocks = depth
        else:
            self.frozen_blocks = depth - trainable_blocks if trainable_blocks else 0
        if freeze_backbone:
            self.backbone.requires_grad_(False)
        elif trainable_blocks:
            for name, p in self.backbone.named_parameters():
                p.requires_grad_(p.requires_grad and self._trains(name))

    def head_modules(self) -> list[nn.Module]:
        """The readout's own modules (everything but the backbone): what trains at the readout's LR or is fit."""
        raise NotImplementedError

    def read(self, tokens: Tensor) -> Tensor:
        """The head: backbone tokens `[B, N, D]` -> latents `[B, 1, E]`."""
        raise NotImplementedError

    def parameter_roles(self) -> list[tuple[list[nn.Module], str]]:
        """What trains and how: the head is `new` (full LR), the backbone `pretrained` (the fine-tuning LR scale;
        only its parameters that train count)."""
        return [(self.head_modules(), "new"), ([self.backbone], "pretrained")]

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

    fit_features = frozen_features  # what a fit of the readout reads (the same tokens)

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
        return self.read(tokens)


class LiftedReadout(nn.Module):
    """A frozen readout's few coordinates, lifted by a trained MLP to a wider latent: `[B, C, H, W] -> [B, 1, E]`.

    A keypoint readout fit to the agent's position (`wm.readout.fit`) gives its (x, y); planning on those makes CEM
    minimise the straight-line distance to the goal, which stops at a wall between the rooms (CEM with that cost on
    the true simulator: 76% / 88% on Two-Rooms). Trained with the dynamics and the temporal smoothness term, a wider
    latent of the same coordinates can follow the geodesic around the wall instead, as the pixel-trained latents of
    the plain arena do (PLDM). The readout (and its backbone) stays frozen in eval mode, so its output is a fixed
    function of the frame: `frozen_features` are those outputs, computed once per frame by the feature cache.

    Args:
        readout: a `TokenReadout` with a frozen backbone (fit first, frozen here).
        embed_dim: latent width E; 0: no lift, the readout's coordinates are the latent (E = the readout's width).
        hidden_dim: width of the lift's two hidden layers.
    """

    caches_features = True
    part_children = ("readout",)

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

    def parameter_roles(self) -> list[tuple[list[nn.Module], str]]:
        """Only the lift trains (at the full LR); the fit readout and its backbone stay frozen."""
        return [([self.lift], "new")]

    def train(self, mode: bool = True) -> LiftedReadout:
        super().train(mode)
        self.readout.eval()  # frozen: its BatchNorm keeps the statistics of its fit
        return self

    @torch.no_grad()
    def frozen_features(self, x: Tensor) -> Tensor:
        """The frozen readout's coordinates of frames `[B, C, H, W]`, or of its backbone's tokens `[B, N, D]`:
        `[B, 1, E_readout]`."""
        return self.readout(x)

    def fit_features(self, x: Tensor) -> Tensor:
        """What the fit of the readout reads: its backbone's tokens `[B, N, D]` of frames `[B, C, H, W]`."""
        return self.readout.frozen_features(x)

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
    """The module that reads the pixels: the ViT under a readout (lifted or not), else `encoder` itself."""
    while len(getattr(encoder, "part_children", ())) == 1:  # a readout names the one part it wraps
        encoder = getattr(encoder, encoder.part_children[0])
    return encoder
