"""Mask predictor: a narrow ViT that predicts target-token embeddings from context tokens and mask tokens.

References:
    Assran et al. 2023 (I-JEPA predictor, one mask token); Bardes et al. 2024 (V-JEPA, one mask token per mask
    config); Assran et al. 2025 (V-JEPA 2, RoPE predictor).

Shapes:
    z `[B, Kc, D]` context features from the encoder, context_idx `[B, Kc]`, target_idx `[B, M, Kt]` (M target
    blocks predicted from the same context, as the 4 blocks of I-JEPA). Output `[B, M, Kt, D]`.

The predictor works at width P (384 in the releases): context tokens are projected D -> P and get their positions;
each target slot is a learned mask token plus the target's position; `[context, targets]` run through the blocks
together and only the target slots are projected back P -> D.

Two ways to predict M target blocks from one context:
    - per block (the releases, default): M sequences `[context, block m]`, full attention in each: the context runs
      through the blocks M times, and its tokens also attend to that block's mask tokens.
    - single pass (`single_pass=True`, a faster recipe; different math from the releases): one sequence
      `[context, block 1, ..., block M]` with a block-sparse attention mask (`single_pass_mask`): the context attends
      to the context only, each block to the context and itself. The context runs through the blocks once, and no
      block sees another. Each block's prediction equals the per-block one with context-to-target attention removed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from jepa_world.models.layers import (
    LN_EPS,
    Block,
    apply_masks,
    apply_rope,
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


def single_pass_mask(num_context: int, num_blocks: int, block_len: int, device=None) -> torch.Tensor:
    """Boolean attention mask `[L, L]` (True = may attend), L = Kc + M * Kt, for `[context, block 1, ..., block M]`.

    Context rows see the context columns only; the rows of block m see the context and block m.
    """
    group = torch.cat([torch.zeros(num_context, dtype=torch.long, device=device),
                       torch.arange(1, num_blocks + 1, device=device).repeat_interleave(block_len)])  # fmt: skip
    return (group[None, :] == 0) | (group[:, None] == group[None, :])  # [L, L]


def _single_pass_block(
    blk: Block, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None, num_context: int, num_blocks: int
) -> torch.Tensor:
    """`blk(x, attn_mask=single_pass_mask(...))` computed without the mask: the same function, faster on CPU.

    x is `[B, Kc + M * Kt, P]`. One qkv / MLP pass over every token; attention in two dense calls: the context over
    itself, and each block (folded into the batch) over `[context, itself]`.
    """
    attn = blk.attn
    B, L, P = x.shape
    Kc, M = num_context, num_blocks
    Kt = (L - Kc) // M
    q, k, v = attn.qkv(blk.norm1(x)).view(B, L, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)  # [B,H,L,Dh]
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)

    def blocks(t: torch.Tensor) -> torch.Tensor:  # [B, H, M*Kt, Dh] -> [B*M, H, Kt, Dh]
        return t[:, :, Kc:].unflatten(2, (M, Kt)).transpose(1, 2).flatten(0, 1)

    ctx = F.scaled_dot_product_attention(q[:, :, :Kc], k[:, :, :Kc], v[:, :, :Kc])  # [B, H, Kc, Dh]
    k_t = torch.cat([k[:, :, :Kc].repeat_interleave(M, dim=0), blocks(k)], dim=2)  # [B*M, H, Kc+Kt, Dh]
    v_t = torch.cat([v[:, :, :Kc].repeat_interleave(M, dim=0), blocks(v)], dim=2)
    tgt = F.scaled_dot_product_attention(blocks(q), k_t, v_t)  # [B*M, H, Kt, Dh]
    tgt = tgt.unflatten(0, (B, M)).transpose(1, 2).flatten(2, 3)  # [B, H, M*Kt, Dh]
    out = torch.cat([ctx, tgt], dim=2).transpose(1, 2).reshape(B, L, P)
    x = x + blk.drop_path(attn.proj(out))
    return x + blk.drop_path(blk.mlp(blk.norm2(x)))


class MaskPredictor(nn.Module):
    """Narrow ViT with mask tokens.

    Args:
        grid_size: token grid of the encoder, (T', H', W') or (H', W').
        embed_dim: encoder width D (input and output).
        predictor_embed_dim: predictor width P.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / P.
        qkv_bias: bias in the fused qkv projection.
        num_mask_tokens: one learned mask token per mask config (V-JEPA uses 2; I-JEPA 1).
        drop_path_rate: stochastic depth rate (linear over blocks).
        pos_embed: "sincos" (fixed table) or "rope" (3-D rotary on the original grid positions).
        sincos_layout: 2-D channel order ("vjepa" or "ijepa").
        uniform_power: V-JEPA 3-D channel split.
        norm_eps: LayerNorm epsilon (1e-6 in the releases).
        zero_init_mask_tokens: start mask tokens at 0 (releases' default) instead of trunc-normal.
        single_pass: predict all target blocks in one sequence with a block-sparse mask (see the module docstring).
        act_checkpoint: activation checkpointing in the blocks.
        init_std: std of the truncated-normal init.
    """

    def __init__(
        self,
        *,
        grid_size: tuple[int, ...],
        embed_dim: int,
        predictor_embed_dim: int = 384,
        depth: int = 6,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        num_mask_tokens: int = 1,
        drop_path_rate: float = 0.0,
        pos_embed: str = "sincos",
        sincos_layout: str = "vjepa",
        uniform_power: bool = False,
        norm_eps: float = LN_EPS,
        zero_init_mask_tokens: bool = True,
        single_pass: bool = False,
        act_checkpoint: bool = False,
        init_std: float = 0.02,
    ):
        config = constructor_config(locals())
        super().__init__()
        self.config = config
        if pos_embed not in ("sincos", "rope"):
            raise ValueError(f"pos_embed={pos_embed!r}; expected 'sincos' or 'rope'")
        if num_mask_tokens < 1:
            raise ValueError(f"num_mask_tokens={num_mask_tokens} must be >= 1")
        # Library callers (`create_model`) get the same named errors as the CLI's config checks, not a crash inside.
        if len(tuple(grid_size)) not in (2, 3) or any(
            isinstance(g, bool) or not hasattr(g, "__index__") or g < 1 for g in grid_size
        ):
            raise ValueError(
                f"grid_size={tuple(grid_size)!r}: expected 2 or 3 integers >= 1 (the encoder's token grid)"
            )
        for name, value in (
            ("embed_dim", embed_dim),
            ("predictor_embed_dim", predictor_embed_dim),
            ("depth", depth),
            ("num_heads", num_heads),
        ):
            if isinstance(value, bool) or not hasattr(value, "__index__") or value < 1:
                raise ValueError(f"{name}={value!r}: must be an integer >= 1")
        if predictor_embed_dim % num_heads:
            raise ValueError(f"predictor_embed_dim={predictor_embed_dim} is not divisible by num_heads={num_heads}")
        if not 0 < mlp_ratio < float("inf"):
            raise ValueError(f"mlp_ratio={mlp_ratio!r}: must be a finite number > 0")
        if not 0 <= drop_path_rate < 1:
            raise ValueError(f"drop_path_rate={drop_path_rate!r}: must be in [0, 1)")
        self.grid_size = tuple(grid_size)
        self.embed_dim = embed_dim
        self.predictor_embed_dim = predictor_embed_dim
        self.num_heads = num_heads
        self.pos_embed_kind = pos_embed
        self.single_pass = single_pass
        self.act_checkpoint = act_checkpoint

        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, predictor_embed_dim)) for _ in range(num_mask_tokens)
        )
        if pos_embed == "sincos":
            table = sincos_table(self.grid_size, predictor_embed_dim, layout=sincos_layout, uniform_power=uniform_power)
            self.predictor_pos_embed = nn.Parameter(table[None], requires_grad=False)  # [1, N, P]
        else:
            self.predictor_pos_embed = None
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.predictor_blocks = nn.ModuleList(
            Block(
                dim=predictor_embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=p,
                norm_eps=norm_eps,
            )
            for p in dpr
        )
        self.predictor_norm = nn.LayerNorm(predictor_embed_dim, eps=norm_eps)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)

        init_weights_(self, std=init_std)
        rescale_blocks_(self.predictor_blocks)
        if not zero_init_mask_tokens:
            for token in self.mask_tokens:
                nn.init.trunc_normal_(token, std=init_std)

    def forward(
        self,
        z: torch.Tensor,
        context_idx: torch.Tensor,
        target_idx: torch.Tensor,
        *,
        mask_index: int = 0,
        grid_size: tuple[int, ...] | None = None,
    ) -> torch.Tensor:
        """Predict target-token features.

        Args:
            z: `[B, Kc, D]` context features.
            context_idx: `[B, Kc]` grid indices of the context tokens.
            target_idx: `[B, M, Kt]` grid indices of M target blocks (or `[B, Kt]` for one).
            mask_index: which mask token to use (the mask config this batch comes from).
            grid_size: token grid of this input if it differs from the nominal one.

        Returns:
            `[B, M, Kt, D]` (or `[B, Kt, D]` for a 2-D target_idx).
        """
        if not 0 <= mask_index < len(self.mask_tokens):
            raise ValueError(f"mask_index={mask_index} but the predictor has {len(self.mask_tokens)} mask tokens")
        single = target_idx.ndim == 2
        if single:
            target_idx = target_idx[:, None]
        B, M, Kt = target_idx.shape
        Kc = z.shape[1]
        grid = tuple(grid_size) if grid_size is not None else self.grid_size

        z = self.predictor_embed(z)  # [B, Kc, P]
        if self.single_pass:  # one sequence [context, block 1, ..., block M]; no batch folding
            ctx_ids, tgt_ids, rows = context_idx, target_idx.flatten(1), B  # [B, Kc], [B, M*Kt]
        else:  # every target block is predicted from the same context: fold the M blocks into the batch
            z = z.repeat_interleave(M, dim=0)  # [B*M, Kc, P]
            ctx_ids, tgt_ids, rows = context_idx.repeat_interleave(M, dim=0), target_idx.flatten(0, 1), B * M
        queries = self.mask_tokens[mask_index].to(z.dtype).expand(rows, tgt_ids.shape[1], -1)  # [rows, Kq, P]
        rope = None
        if self.predictor_pos_embed is not None:
            pos = resize_pos_embed(self.predictor_pos_embed, self.grid_size, grid).to(z.dtype)
            pos = pos.expand(rows, -1, -1)  # [rows, N, P]
            z = z + apply_masks(pos, ctx_ids)
            queries = queries + apply_masks(pos, tgt_ids)
        else:
            # Tokens keep their original grid positions for the rotation.
            ids = torch.cat([ctx_ids, tgt_ids], dim=1)  # [rows, Kc+Kq]
            rope = rope_tables(grid_coords(ids, grid), self.predictor_embed_dim // self.num_heads)
        x = torch.cat([z, queries], dim=1)  # [rows, Kc+Kq, P]
        if self.single_pass and M > 1:  # the block-sparse mask of `single_pass_mask`, as two dense attentions
            for blk in self.predictor_blocks:
                if self.act_checkpoint and torch.is_grad_enabled():
                    x = checkpoint(_single_pass_block, blk, x, rope, Kc, M, use_reentrant=False)
                else:
                    x = _single_pass_block(blk, x, rope, Kc, M)
        else:
            x = run_blocks(self.predictor_blocks, x, rope=rope, checkpoint=self.act_checkpoint)
        x = self.predictor_proj(self.predictor_norm(x[:, Kc:]))  # [rows, Kq, D]
        x = x.reshape(B, M, Kt, -1)
        return x[:, 0] if single else x


# --------------------------------------------------------------------------------------------------------------------
# Presets: the releases' predictor (width 384) and narrow ones for CPU. grid_size / embed_dim come from the encoder.
# --------------------------------------------------------------------------------------------------------------------
def _predictor(defaults: dict, kwargs: dict) -> MaskPredictor:
    return MaskPredictor(**{**defaults, **kwargs})


@register_model
def predictor_nano(**kwargs) -> MaskPredictor:
    return _predictor(dict(predictor_embed_dim=96, depth=4, num_heads=4), kwargs)


@register_model
def predictor_tiny(**kwargs) -> MaskPredictor:
    return _predictor(dict(predictor_embed_dim=192, depth=6, num_heads=6), kwargs)


@register_model
def predictor_small(**kwargs) -> MaskPredictor:
    # The releases' shape: width 384, depth 6 for I-JEPA ViT-S experiments; depth 12 for ViT-H / V-JEPA.
    return _predictor(dict(predictor_embed_dim=384, depth=6, num_heads=12), kwargs)


@register_model
def predictor_base(**kwargs) -> MaskPredictor:
    return _predictor(dict(predictor_embed_dim=384, depth=12, num_heads=12), kwargs)
