"""Transformer building blocks shared by the encoder, the mask predictor and the dynamics predictor.

References:
    Dosovitskiy et al. 2021 (ViT); Assran et al. 2023 (I-JEPA); Bardes et al. 2024 (V-JEPA);
    Assran et al. 2025 (V-JEPA 2, 3D RoPE); Su et al. 2021 (RoPE).

Shape conventions:
    B batch, N tokens, D width, H heads, Dh head width. Video grids are (T, H, W) token grids flattened t-major,
    then row, then column: index = t * H * W + r * W + c. Image grids are (H, W), row-major.

Numeric conventions follow the official releases so their weights load and compute the same outputs
(the official code's conventions): LayerNorm eps 1e-6, fused qkv, `[sin | cos]` 1-D tables, the I-JEPA vs V-JEPA 2-D
channel order, the V-JEPA 3-D `uniform_power` split and the V-JEPA 2 RoPE frequency layout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

LN_EPS = 1e-6


# --------------------------------------------------------------------------------------------------------------------
# Fixed sin-cos position tables
# --------------------------------------------------------------------------------------------------------------------
def sincos_1d(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """1-D sin-cos table `[sin | cos]` (concatenated, not interleaved).

    Args:
        pos: positions, any shape `[...]`.
        dim: even number of channels.

    Returns:
        `[..., dim]` float64 table with omega_i = 1 / 10000^(i / (dim / 2)).
    """
    if dim % 2:
        raise ValueError(f"sin-cos dim must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega  # [dim/2]
    out = pos.to(torch.float64)[..., None] * omega  # [..., dim/2]
    return torch.cat([out.sin(), out.cos()], dim=-1)


def sincos_2d(grid_size: tuple[int, int], dim: int, *, layout: str = "vjepa") -> torch.Tensor:
    """2-D sin-cos table for an (H, W) grid, row-major tokens.

    Args:
        grid_size: (H, W) in tokens.
        dim: channels, divisible by 4.
        layout: "vjepa" puts the row code in the first half of the channels and the column code in the second;
            "ijepa" puts the column code first (what the I-JEPA release computes, whatever its variable names say).

    Returns:
        `[H * W, dim]` float32.
    """
    if layout not in ("ijepa", "vjepa"):
        raise ValueError(f"unknown sin-cos layout {layout!r}; expected 'ijepa' or 'vjepa'")
    rows, cols = torch.meshgrid(torch.arange(grid_size[0]), torch.arange(grid_size[1]), indexing="ij")
    first, second = (rows, cols) if layout == "vjepa" else (cols, rows)
    table = torch.cat([sincos_1d(first.flatten(), dim // 2), sincos_1d(second.flatten(), dim // 2)], dim=-1)
    return table.float()


def sincos_3d(grid_size: tuple[int, int, int], dim: int, *, uniform_power: bool = False) -> torch.Tensor:
    """3-D sin-cos table for a (T, H, W) grid with channels `[t | h | w]`, t-major tokens.

    Args:
        grid_size: (T, H, W) in tokens.
        dim: channels.
        uniform_power: give t, h and w `2 * ceil(dim / 6)` channels each (truncated to `dim`), as V-JEPA does;
            otherwise t gets dim / 2 and h, w get dim / 4 each.

    Returns:
        `[T * H * W, dim]` float32.
    """
    if uniform_power:
        dt = dh = dw = 2 * math.ceil(dim / 6)
    else:
        dt, dh, dw = dim // 2, dim // 4, dim // 4
    t, r, c = torch.meshgrid(*(torch.arange(n) for n in grid_size), indexing="ij")
    table = torch.cat([sincos_1d(t.flatten(), dt), sincos_1d(r.flatten(), dh), sincos_1d(c.flatten(), dw)], dim=-1)
    return table[:, :dim].float()


def sincos_table(grid_size: tuple[int, ...], dim: int, *, layout: str = "vjepa", uniform_power: bool = False):
    """Table for a 2-D or 3-D grid: `[prod(grid_size), dim]`."""
    if len(grid_size) == 2:
        return sincos_2d(grid_size, dim, layout=layout)
    if len(grid_size) == 3:
        return sincos_3d(grid_size, dim, uniform_power=uniform_power)
    raise ValueError(f"grid_size must have 2 or 3 entries, got {grid_size}")


def resize_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, ...], new_grid: tuple[int, ...]) -> torch.Tensor:
    """Interpolate a `[1, N, D]` table from one token grid to another (bicubic in 2-D, trilinear in 3-D).

    There is no CLS token to set aside (a known bug of the releases' interpolation assumed one).
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, *old_grid, dim).movedim(-1, 1)  # [1, D, *old_grid]
    mode = "bicubic" if len(old_grid) == 2 else "trilinear"
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode=mode, align_corners=False)
    return grid.movedim(1, -1).reshape(1, -1, dim).to(pos_embed.dtype)


# --------------------------------------------------------------------------------------------------------------------
# 3-D rotary position embedding (V-JEPA 2 layout)
# --------------------------------------------------------------------------------------------------------------------
def rope_chunk_dim(head_dim: int) -> int:
    """Channels rotated per axis (t, h, w): the largest even number <= head_dim / 3 (20 for head_dim 64)."""
    return 2 * ((head_dim // 3) // 2)


def grid_coords(idx: torch.Tensor, grid_size: tuple[int, ...]) -> torch.Tensor:
    """Token indices `[..., N]` -> grid coordinates `[..., N, 3]` as (t, row, col); images get t = 0."""
    h, w = grid_size[-2:]
    t, rem = idx.div(h * w, rounding_mode="floor"), idx.remainder(h * w)
    return torch.stack([t, rem.div(w, rounding_mode="floor"), rem.remainder(w)], dim=-1)


def rope_tables(coords: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos / sin tables for 3-D RoPE.

    Args:
        coords: `[B, N, 3]` (t, row, col) grid coordinates of each token (masked tokens keep their original ones).
        head_dim: per-head width.

    Returns:
        (cos, sin), each `[B, 1, N, 3 * d]` with d = rope_chunk_dim(head_dim); broadcast over heads.

    The d/2 frequencies are laid out as `[f0 .. f_{d/2-1}, f0 .. f_{d/2-1}]` while the rotation acts on interleaved
    pairs: this is not a clean RoPE but it is what the released V-JEPA 2 weights were trained with.
    """
    d = rope_chunk_dim(head_dim)
    omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float32, device=coords.device) / (d / 2.0))
    freq = coords.float()[..., None] * omega  # [B, N, 3, d/2]
    freq = torch.cat([freq, freq], dim=-1).flatten(-2)  # [B, N, 3 * d], per axis [f | f]
    return freq.cos()[:, None], freq.sin()[:, None]


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first `cos.shape[-1]` channels of `x [B, H, N, Dh]` in interleaved pairs; the rest pass through.

    The tables are built in float32 and applied in `x`'s dtype, so a bf16 model stays bf16 (and SDPA sees one dtype).
    """
    n = cos.shape[-1]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    xr, rest = x[..., :n], x[..., n:]
    pairs = xr.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return torch.cat([xr * cos + rotated * sin, rest], dim=-1)


# --------------------------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------------------------
class PatchEmbed(nn.Module):
    """Image `[B, C, H, W]` -> tokens `[B, H/p * W/p, D]` with a strided Conv2d."""

    def __init__(self, *, patch_size: int, in_chans: int = 3, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, D]


class PatchEmbed3D(nn.Module):
    """Video `[B, C, T, H, W]` -> tubelet tokens `[B, T/t * H/p * W/p, D]` with a strided Conv3d (t-major order)."""

    def __init__(self, *, patch_size: int, tubelet_size: int = 2, in_chans: int = 3, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, D]


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (names match the releases' checkpoints)."""

    def __init__(self, *, dim: int, hidden_dim: int, out_dim: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention with fused qkv, optional 3-D RoPE and attention mask, through SDPA."""

    def __init__(self, *, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [B, H, N, Dh]
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # [B, H, N, Dh]
        return self.proj(x.transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each with drop-path."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_eps: float = LN_EPS,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim=dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio))

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), rope=rope, attn_mask=attn_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_weights_(module: nn.Module, *, std: float = 0.02) -> None:
    """Release init: truncated normal for Linear/Conv weights, zero bias, LayerNorm (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.Conv3d):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def rescale_blocks_(blocks: nn.ModuleList) -> None:
    """Divide each block's residual output projections by sqrt(2 * (i + 1)) (release init, keeps depth stable)."""
    with torch.no_grad():
        for i, blk in enumerate(blocks):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))


def run_blocks(
    blocks: nn.ModuleList,
    x: torch.Tensor,
    *,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    attn_mask: torch.Tensor | None = None,
    checkpoint: bool = False,
) -> torch.Tensor:
    """Run blocks in order, optionally with activation checkpointing (recompute in backward, saves memory)."""
    for blk in blocks:
        if checkpoint and torch.is_grad_enabled():
            x = torch.utils.checkpoint.checkpoint(blk, x, rope, attn_mask, use_reentrant=False)
        else:
            x = blk(x, rope=rope, attn_mask=attn_mask)
    return x


# --------------------------------------------------------------------------------------------------------------------
# Small helpers every model uses
# --------------------------------------------------------------------------------------------------------------------
def constructor_config(local_vars: dict) -> dict:
    """The keyword arguments a constructor was called with: call as `constructor_config(locals())` first in `__init__`.

    Every model keeps this as `self.config`, so saving an architecture needs no introspection of its attributes.
    """
    return {k: v for k, v in local_vars.items() if k not in ("self", "__class__")}


def apply_masks(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather tokens by index along the token axis.

    Args:
        x: Tokens ``# [B, N, D]``.
        idx: Token indices ``# [B, K]`` or ``# [B, M, K]`` (int64) into ``[0, N)``.

    Returns:
        ``# [B, K, D]`` for a 2D ``idx``, ``# [B, M, K, D]`` for a 3D ``idx``.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be [B, N, D], got shape {tuple(x.shape)}")
    if idx.dim() not in (2, 3):
        raise ValueError(f"idx must be [B, K] or [B, M, K], got shape {tuple(idx.shape)}")
    if idx.shape[0] != x.shape[0]:
        raise ValueError(f"idx batch size {idx.shape[0]} does not match x batch size {x.shape[0]}")
    if idx.dtype != torch.long:
        raise TypeError(f"idx must be int64, got {idx.dtype}")
    B, _, D = x.shape
    flat = idx.reshape(B, -1)  # [B, M*K]
    out = torch.gather(x, 1, flat.unsqueeze(-1).expand(-1, -1, D))  # [B, M*K, D]
    return out.reshape(*idx.shape, D)
