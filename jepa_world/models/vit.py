"""Vision Transformer encoder for images (2-D patches) and videos (3-D tubelets), without a CLS token.

References:
    Dosovitskiy et al. 2021 (ViT); Assran et al. 2023 (I-JEPA); Bardes et al. 2024 (V-JEPA); Assran et al. 2025
    (V-JEPA 2: 3-D RoPE, ViT-g with 22 heads).

Shapes:
    images `[B, 3, H, W]`, videos `[B, 3, T, H, W]`; tokens `[B, N, D]` with N = (T/t) * (H/p) * (W/p), t-major.
    A mask `idx [B, K]` keeps K token indices: the context encoder only runs its blocks on those tokens, which is
    where I-JEPA / V-JEPA save compute (about 90% of video tokens are masked).

Parameter names match the official checkpoints (`patch_embed.proj`, `pos_embed`, `blocks.{i}.attn.qkv`, `norm`...),
so `jepa_world.hub` loads them without renaming.
"""

from __future__ import annotations

import torch
from torch import nn

from jepa_world.models.layers import (
    LN_EPS,
    Block,
    PatchEmbed,
    PatchEmbed3D,
    apply_masks,
    constructor_config,
    grid_coords,
    init_weights_,
    rescale_blocks_,
    resize_pos_embed,
    rope_tables,
    run_blocks,
    sincos_table,
)
from jepa_world.registry import register_model

POS_EMBED_KINDS = ("sincos", "rope")


def _pair_grid(img_size: int | tuple[int, int], patch_size: int) -> tuple[int, int]:
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    if h % patch_size or w % patch_size:
        raise ValueError(f"patch_size={patch_size} does not divide the input size {h}x{w}")
    return h // patch_size, w // patch_size


class VisionTransformer(nn.Module):
    """ViT encoder; video if `num_frames > 1` (tubelets), image otherwise.

    Args:
        img_size: nominal input size (H = W, or (H, W)); other sizes work by interpolating the position table.
        patch_size: spatial patch size p.
        num_frames: nominal clip length; 1 builds an image encoder.
        tubelet_size: frames per tubelet t (video only).
        in_chans: input channels.
        embed_dim: width D.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / D.
        qkv_bias: bias in the fused qkv projection.
        drop_path_rate: stochastic depth, linearly increasing over blocks up to this rate.
        pos_embed: "sincos" (fixed table, I-JEPA / V-JEPA) or "rope" (3-D rotary, V-JEPA 2; no table).
        sincos_layout: 2-D channel order, "vjepa" (row first) or "ijepa" (column first).
        uniform_power: 3-D table split of V-JEPA (t, h, w get equal channels).
        act_checkpoint: recompute block activations in backward (activation checkpointing).
        init_std: std of the truncated-normal init.
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        num_frames: int = 1,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        pos_embed: str = "sincos",
        sincos_layout: str = "vjepa",
        uniform_power: bool = False,
        norm_eps: float = LN_EPS,
        act_checkpoint: bool = False,
        init_std: float = 0.02,
    ):
        config = constructor_config(locals())
        super().__init__()
        self.config = config
        if pos_embed not in POS_EMBED_KINDS:
            raise ValueError(f"pos_embed={pos_embed!r}; expected one of {POS_EMBED_KINDS}")
        # Library callers (`create_model`) get the same named errors as the CLI's config checks, not a crash inside.
        sizes = tuple(img_size) if isinstance(img_size, tuple | list) else (img_size, img_size)
        for name, value in (
            *(("img_size", size) for size in sizes),
            ("patch_size", patch_size),
            ("num_frames", num_frames),
            ("tubelet_size", tubelet_size),
            ("in_chans", in_chans),
            ("embed_dim", embed_dim),
            ("depth", depth),
            ("num_heads", num_heads),
        ):
            if isinstance(value, bool) or not hasattr(value, "__index__") or value < 1:
                shown = img_size if name == "img_size" else value
                raise ValueError(f"{name}={shown!r}: must be an integer >= 1")
        if len(sizes) != 2:
            raise ValueError(f"img_size={img_size!r}: expected one size or (height, width)")
        if sizes[0] % patch_size or sizes[1] % patch_size:
            raise ValueError(f"patch_size={patch_size} does not divide img_size={img_size!r}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        if not 0 < mlp_ratio < float("inf"):
            raise ValueError(f"mlp_ratio={mlp_ratio!r}: must be a finite number > 0")
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f"drop_path_rate={drop_path_rate!r}: must be in [0, 1)")
        if num_frames < 1 or (num_frames > 1 and num_frames % tubelet_size):
            raise ValueError(f"num_frames={num_frames} must be 1 (image) or a multiple of tubelet_size={tubelet_size}")
        self.is_video = num_frames > 1
        self.embed_dim = self.num_features = embed_dim
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        self.pos_embed_kind = pos_embed
        self.sincos_layout = sincos_layout
        self.uniform_power = uniform_power
        self.act_checkpoint = act_checkpoint

        spatial = _pair_grid(img_size, patch_size)
        self.grid_size = (num_frames // tubelet_size, *spatial) if self.is_video else spatial
        if self.is_video:
            self.patch_embed = PatchEmbed3D(
                patch_size=patch_size, tubelet_size=tubelet_size, in_chans=in_chans, embed_dim=embed_dim
            )
        else:
            self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        if pos_embed == "sincos":
            # A fixed table, stored as a frozen parameter because that is where the official checkpoints keep it.
            table = sincos_table(self.grid_size, embed_dim, layout=sincos_layout, uniform_power=uniform_power)
            self.pos_embed = nn.Parameter(table[None], requires_grad=False)  # [1, N, D]
        else:
            self.pos_embed = None

        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=dpr[i],
                norm_eps=norm_eps,
            )
            for i in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)

        init_weights_(self, std=init_std)
        rescale_blocks_(self.blocks)

    # -- input handling -----------------------------------------------------------------------------------------------
    @property
    def input_size(self) -> tuple[int, int]:
        """`(H, W)` in pixels of the nominal input (the size of the stored position table)."""
        return self.grid_size[-2] * self.patch_size, self.grid_size[-1] * self.patch_size

    @property
    def num_frames(self) -> int:
        """Frames of the nominal input clip (1 for an image encoder)."""
        return self.grid_size[0] * self.tubelet_size if self.is_video else 1

    def token_grid(self, x: torch.Tensor) -> tuple[int, ...]:
        """Token grid (T', H', W') or (H', W') for an input of this shape (validates divisibility)."""
        spatial = _pair_grid(tuple(x.shape[-2:]), self.patch_size)
        if not self.is_video:
            return spatial
        if x.shape[2] % self.tubelet_size:
            raise ValueError(f"clip length {x.shape[2]} is not a multiple of tubelet_size={self.tubelet_size}")
        return (x.shape[2] // self.tubelet_size, *spatial)

    def _as_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_video and x.ndim == 4:
            # An image fed to a video encoder is repeated over one tubelet (as the V-JEPA releases do).
            x = x.unsqueeze(2).expand(-1, -1, self.tubelet_size, -1, -1)
        expected = 5 if self.is_video else 4
        if x.ndim != expected:
            kind = "[B, C, T, H, W] video" if self.is_video else "[B, C, H, W] image"
            raise ValueError(f"expected a {kind} input, got shape {tuple(x.shape)}")
        return x

    def position_table(self, grid: tuple[int, ...]) -> torch.Tensor:
        """`[1, N, D]` sin-cos table for a token grid, interpolated from the stored one if the grid differs."""
        return resize_pos_embed(self.pos_embed, self.grid_size, grid)

    # -- forward ------------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Encode the whole input, or only the kept tokens.

        Args:
            x: `[B, C, H, W]` or `[B, C, T, H, W]`.
            idx: optional `[B, K]` token indices to keep (context mask).

        Returns:
            `[B, N, D]` (or `[B, K, D]` with idx) normalised token features.
        """
        x = self._as_input(x)
        grid = self.token_grid(x)
        z = self._embed(x, grid)  # [B, N, D]
        rope = self._rope(z, grid, idx)
        if idx is not None:
            z = apply_masks(z, idx)  # [B, K, D]
        z = run_blocks(self.blocks, z, rope=rope, checkpoint=self.act_checkpoint)
        return self.norm(z)

    def forward_features(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Alias of forward (timm naming): `[B, N, D]` token features."""
        return self.forward(x, idx)

    def forward_prefix(self, x: torch.Tensor, num_blocks: int) -> tuple[torch.Tensor, tuple[int, ...]]:
        """The first `num_blocks` blocks on the whole input: `(z [B, N, D] before the final norm, token grid)`.

        With `forward_suffix(z, num_blocks, grid)` it gives `forward(x)`: a model that trains only the last blocks
        can compute the frozen first ones once (`TokenReadout`).
        """
        if not 0 <= num_blocks <= len(self.blocks):
            raise ValueError(f"num_blocks={num_blocks} must be in [0, depth={len(self.blocks)}]")
        x = self._as_input(x)
        grid = self.token_grid(x)
        z = self._embed(x, grid)
        z = run_blocks(self.blocks[:num_blocks], z, rope=self._rope(z, grid, None), checkpoint=self.act_checkpoint)
        return z, grid

    def forward_suffix(self, z: torch.Tensor, start: int, grid: tuple[int, ...]) -> torch.Tensor:
        """Blocks `start..depth-1` and the final norm on all tokens `z [B, N, D]` of a `grid` (see forward_prefix)."""
        if not 0 <= start <= len(self.blocks):
            raise ValueError(f"start={start} must be in [0, depth={len(self.blocks)}]")
        z = run_blocks(self.blocks[start:], z, rope=self._rope(z, grid, None), checkpoint=self.act_checkpoint)
        return self.norm(z)

    def _embed(self, x: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        z = self.patch_embed(x)  # [B, N, D]
        if self.pos_embed is not None:
            z = z + self.position_table(grid).to(z.dtype)
        return z

    def _rope(
        self, z: torch.Tensor, grid: tuple[int, ...], idx: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.pos_embed_kind != "rope":
            return None
        ids = torch.arange(z.shape[1], device=z.device)[None].expand(z.shape[0], -1) if idx is None else idx
        return rope_tables(grid_coords(ids, grid), self.embed_dim // self.num_heads)


# --------------------------------------------------------------------------------------------------------------------
# Size presets (widths / depths / heads of the releases; `vit_nano` is ours, sized for CPU tests and demos)
# --------------------------------------------------------------------------------------------------------------------
def _vit(defaults: dict, kwargs: dict) -> VisionTransformer:
    return VisionTransformer(**{**defaults, **kwargs})


@register_model
def vit_nano(**kwargs) -> VisionTransformer:
    return _vit(dict(embed_dim=128, depth=4, num_heads=4), kwargs)


@register_model
def vit_tiny(**kwargs) -> VisionTransformer:
    return _vit(dict(embed_dim=192, depth=12, num_heads=3), kwargs)


@register_model
def vit_small(**kwargs) -> VisionTransformer:
    return _vit(dict(embed_dim=384, depth=12, num_heads=6), kwargs)


@register_model
def vit_base(**kwargs) -> VisionTransformer:
    return _vit(dict(embed_dim=768, depth=12, num_heads=12), kwargs)


@register_model
def vit_large(**kwargs) -> VisionTransformer:
    return _vit(dict(embed_dim=1024, depth=24, num_heads=16), kwargs)


@register_model
def vit_huge(**kwargs) -> VisionTransformer:
    return _vit(dict(embed_dim=1280, depth=32, num_heads=16), kwargs)


@register_model
def vit_giant(**kwargs) -> VisionTransformer:
    # MLP hidden 6144 = 1408 * 48 / 11. V-JEPA 2's released ViT-g uses 22 heads: pass num_heads=22 for those.
    return _vit(dict(embed_dim=1408, depth=40, num_heads=16, mlp_ratio=48 / 11), kwargs)
