"""Action-conditioned latent dynamics in the V-JEPA 2-AC shape: a block-causal transformer over per-frame tokens.

References:
    Assran et al. 2025 (V-JEPA 2-AC: per-frame [action, state, patch] tokens, block-causal attention, layer-normed
    predictions, 3-D RoPE).

Shapes:
    B batch, T frames, HW frame tokens (H' x W' patch grid, or 1 for a pooled latent), D encoder width, P predictor
    width, A action dim, S state dim (0 = no state token), k conditioning tokens per frame (action, state, extrinsics).
    Latents z `[B, T, HW, D]`; actions `[B, T, A]` with action t moving frame t to frame t+1; states `[B, T, S]`.

Sequence: per frame `[a_t, s_t, (e_t), z_t tokens]`, frames one after another, so N = T * (k + HW). A token sees every
token of its own and earlier frames; the output at frame t's patch tokens predicts frame t+1. Positions are 3-D RoPE
over (frame, row, col): conditioning tokens sit at (t, 0, 0). A zero angle is the identity, so this equals the
release, which rotates only their frame channels. RoPE (no position table) because rollouts run past the training
clip length. Block-causality makes incremental rollouts exact with a key/value cache (`RolloutCache`): each new frame
costs k + HW tokens instead of re-running the whole prefix.

The input checks and the rollout cache here are shared by every dynamics model (`jepa_world.models.small` too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepa_world.models.layers import (
    LN_EPS,
    Block,
    apply_rope,
    constructor_config,
    grid_coords,
    init_weights_,
    rescale_blocks_,
    rope_tables,
    run_blocks,
)
from jepa_world.registry import register_model


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------
def check_shape(x: Tensor | None, shape: tuple[int, ...], name: str) -> None:
    if x is None:
        raise ValueError(f"{name} is required (expected shape {shape})")
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")


def check_dims(**dims: tuple[int, int]) -> None:
    """Raise unless every `name=(value, low)` is an int (not a bool) >= low."""
    for name, (value, low) in dims.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def check_states(states: Tensor | None, shape: tuple[int, int, int], state_dim: int) -> bool:
    """Validate the states passed to a predictor built with `state_dim`; True when they are to be used."""
    if state_dim:
        check_shape(states, shape, "states")
        return True
    if states is not None:
        raise ValueError(f"states of shape {tuple(states.shape)} passed to a predictor built with state_dim=0")
    return False


def _frame_grid(hw: int, nominal: tuple[int, int]) -> tuple[int, int]:
    """Patch grid of a frame with `hw` tokens: the nominal one, (1, 1) for a pooled latent, else a square."""
    if nominal[0] * nominal[1] == hw:
        return nominal
    side = math.isqrt(hw)
    if side * side == hw:
        return side, side
    raise ValueError(f"frames have {hw} tokens, which fits neither grid_size={nominal} nor a square; pass grid_size")


def _token_coords(start: int, num_frames: int, k: int, grid: tuple[int, int], *, col_scale: float = 1.0) -> Tensor:
    """(t, row, col) of the tokens of frames start..start+T-1: float `[T * (k + HW), 3]`.

    Conditioning tokens sit at (t, 0, 0); patch columns are scaled by `col_scale` (see `ActionConditionedPredictor`).
    """
    t = torch.arange(start, start + num_frames)
    cond = torch.stack([t[:, None].expand(-1, k), *[torch.zeros(num_frames, k, dtype=torch.long)] * 2], -1)
    patches = grid_coords(torch.arange(grid[0] * grid[1]), grid)[None].repeat(num_frames, 1, 1)  # [T, HW, 3]
    patches[..., 0] = t[:, None]
    coords = torch.cat([cond, patches], dim=1).flatten(0, 1).float()
    coords[:, 2] *= col_scale
    return coords


def block_causal_mask(num_frames: int, tokens_per_frame: int, *, past_frames: int = 0) -> Tensor:
    """Boolean mask (True = may attend) of queries in frames past..past+T-1 over keys in frames 0..past+T-1.

    Returns:
        `[T * n, (past + T) * n]` with n = tokens_per_frame.
    """
    q_frame = torch.arange(past_frames, past_frames + num_frames).repeat_interleave(tokens_per_frame)
    k_frame = torch.arange(past_frames + num_frames).repeat_interleave(tokens_per_frame)
    return k_frame[None, :] <= q_frame[:, None]


def _block_step(
    blk: Block, x: Tensor, rope: tuple[Tensor, Tensor], mask: Tensor | None, kv: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """`Block.forward` for new tokens `x [B, n, P]` attending to cached keys/values too; returns (x, new kv)."""
    attn = blk.attn
    B, n, P = x.shape
    qkv = attn.qkv(blk.norm1(x)).view(B, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = apply_rope(qkv[0], *rope), apply_rope(qkv[1], *rope), qkv[2]  # [B, heads, n, Dh]
    if kv is not None:
        k, v = torch.cat([kv[0], k], dim=2), torch.cat([kv[1], v], dim=2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, heads, n, Dh]
    x = x + blk.drop_path(attn.proj(out.transpose(1, 2).reshape(B, n, P)))
    return x + blk.drop_path(blk.mlp(blk.norm2(x))), (k, v)


@dataclass
class RolloutCache:
    """Keys/values of every block for the frames seen so far (block-causal attention makes them final)."""

    kv: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    num_frames: int = 0


# --------------------------------------------------------------------------------------------------------------------
# The predictor
# --------------------------------------------------------------------------------------------------------------------
class ActionConditionedPredictor(nn.Module):
    """Block-causal transformer over `[action, state, (extrinsics), frame tokens]` per frame (V-JEPA 2-AC).

    With the released weights (`jepa_world.hub.load_predictor` on `vjepa2-ac-vitg.pt`) this computes what the
    release's `VisionTransformerPredictorAC` computes: same parameter names, token order per frame, block-causal
    mask, RoPE channel layout (per head: frame | row | column chunks of `2 * ((head_dim // 3) // 2)` channels, the
    release's `[f | f]` frequency tables on interleaved pairs; conditioning tokens rotate only their frame chunk,
    which equals position (t, 0, 0)), and output (patch tokens, `predictor_norm`, `predictor_proj`). At its nominal
    grid H' x W' the release multiplies column positions by H' / W' (1 for the released 16 x 16); so do we. The
    release runs only at its nominal grid and at most `num_frames / tubelet_size` frames; other grids (integer
    positions) and longer sequences are ours.

    Args:
        embed_dim: encoder width D (input and output).
        action_dim: A, taken from the data.
        state_dim: S, taken from the data; 0 builds no state encoder and no state token.
        extrinsics_dim: camera extrinsics width (release: 6); 0 builds none. The extrinsics token is only added when
            `extrinsics` is passed to `forward` (the released model has the layer but was trained without it).
        grid_size: nominal (H', W') patch grid of a frame; (1, 1) for pooled latents. Other square grids work.
        predictor_embed_dim: width P.
        depth: number of blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / P.
        qkv_bias: bias in the fused qkv projection.
        drop_path_rate: stochastic depth rate (linear over blocks).
        act_checkpoint: activation checkpointing in the full (uncached) pass.
        init_std: std of the truncated-normal init.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        action_dim: int,
        state_dim: int = 0,
        extrinsics_dim: int = 0,
        grid_size: tuple[int, int] = (1, 1),
        predictor_embed_dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        act_checkpoint: bool = False,
        init_std: float = 0.02,
    ):
        config = constructor_config(locals())
        super().__init__()
        self.config = config
        check_dims(embed_dim=(embed_dim, 1), action_dim=(action_dim, 1), state_dim=(state_dim, 0),
                    extrinsics_dim=(extrinsics_dim, 0))  # fmt: skip
        self.embed_dim, self.predictor_embed_dim = embed_dim, predictor_embed_dim
        self.action_dim, self.state_dim, self.extrinsics_dim = action_dim, state_dim, extrinsics_dim
        self.grid_size = tuple(grid_size)
        self.num_heads = num_heads
        self.act_checkpoint = act_checkpoint

        P = predictor_embed_dim
        self.predictor_embed = nn.Linear(embed_dim, P)
        self.action_encoder = nn.Linear(action_dim, P)
        self.state_encoder = nn.Linear(state_dim, P) if state_dim else None
        self.extrinsics_encoder = nn.Linear(extrinsics_dim, P) if extrinsics_dim else None
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.predictor_blocks = nn.ModuleList(
            Block(dim=P, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=p) for p in dpr
        )
        self.predictor_norm = nn.LayerNorm(P, eps=LN_EPS)
        self.predictor_proj = nn.Linear(P, embed_dim)
        init_weights_(self, std=init_std)
        rescale_blocks_(self.predictor_blocks)
        # (start frame, frames, conditioning tokens, grid, device, dtype) -> (rope, mask); not state, never saved.
        self._tables: dict[tuple, tuple[tuple[Tensor, Tensor], Tensor | None]] = {}

    def _rope_and_mask(
        self, start: int, num_frames: int, k: int, grid: tuple[int, int], x: Tensor
    ) -> tuple[tuple[Tensor, Tensor], Tensor | None]:
        key = (start, num_frames, k, grid, x.device, x.dtype)
        if key not in self._tables:
            if len(self._tables) > 256:  # rollouts of many lengths: keep the cache bounded
                self._tables.clear()
            # The release scales rows by H'/H and columns by H'/W (nominal H' x W', actual H x W), and only runs at its
            # nominal grid: rows x 1, columns x H'/W' (1 when square). Other grids keep integer positions.
            col_scale = self.grid_size[0] / self.grid_size[1] if grid == self.grid_size else 1.0
            coords = _token_coords(start, num_frames, k, grid, col_scale=col_scale).to(x.device)[None]  # [1, N, 3]
            cos, sin = rope_tables(coords, self.predictor_embed_dim // self.num_heads)
            mask = None
            if num_frames > 1:  # one new frame sees all cached frames and itself: no mask needed
                mask = block_causal_mask(num_frames, k + grid[0] * grid[1], past_frames=start).to(x.device)
            self._tables[key] = ((cos.to(x.dtype), sin.to(x.dtype)), mask)
        return self._tables[key]

    def forward(
        self,
        z: Tensor,
        actions: Tensor,
        states: Tensor | None = None,
        extrinsics: Tensor | None = None,
        *,
        grid_size: tuple[int, int] | None = None,
        cache: RolloutCache | None = None,
    ) -> Tensor:
        """Predict the next frame's features for every input frame.

        Args:
            z: `[B, T, HW, D]` frame features (layer-normed encoder output).
            actions: `[B, T, A]`; action t moves frame t to frame t+1.
            states: `[B, T, S]`, required iff the model has a state encoder.
            extrinsics: `[B, T, E]`, optional when the model has an extrinsics encoder.
            grid_size: (H', W') of the frames if not inferable from HW.
            cache: continue a rollout: these frames follow the `cache.num_frames` already seen, whose keys/values
                the cache holds; it is extended in place. None runs the T frames alone (training path).

        Returns:
            `[B, T, HW, D]`: output t predicts frame t+1 from frames <= t.
        """
        if z.ndim != 4 or z.shape[-1] != self.embed_dim:
            raise ValueError(f"z must have shape [B, T, HW, {self.embed_dim}], got {tuple(z.shape)}")
        B, T, HW, _ = z.shape
        check_shape(actions, (B, T, self.action_dim), "actions")
        cond = [self.action_encoder(actions)]  # each [B, T, P]
        if check_states(states, (B, T, self.state_dim), self.state_dim):
            cond.append(self.state_encoder(states))
        if extrinsics is not None:
            if self.extrinsics_encoder is None:
                raise ValueError("extrinsics passed to a predictor built with extrinsics_dim=0")
            check_shape(extrinsics, (B, T, self.extrinsics_dim), "extrinsics")
            cond.append(self.extrinsics_encoder(extrinsics))
        k = len(cond)
        grid = tuple(grid_size) if grid_size is not None else _frame_grid(HW, self.grid_size)
        x = torch.cat([torch.stack(cond, dim=2), self.predictor_embed(z)], dim=2)  # [B, T, k+HW, P]
        x = x.flatten(1, 2)  # [B, T*(k+HW), P]

        if cache is None:
            rope, mask = self._rope_and_mask(0, T, k, grid, x)
            x = run_blocks(self.predictor_blocks, x, rope=rope, attn_mask=mask, checkpoint=self.act_checkpoint)
        else:
            rope, mask = self._rope_and_mask(cache.num_frames, T, k, grid, x)
            first = not cache.kv
            for i, blk in enumerate(self.predictor_blocks):
                x, kv = _block_step(blk, x, rope, mask, None if first else cache.kv[i])
                if first:
                    cache.kv.append(kv)
                else:
                    cache.kv[i] = kv
            cache.num_frames += T
        x = x.view(B, T, k + HW, -1)[:, :, k:]  # drop the conditioning tokens
        return self.predictor_proj(self.predictor_norm(x))  # [B, T, HW, D]


# --------------------------------------------------------------------------------------------------------------------
# Presets. embed_dim / action_dim / state_dim come from the encoder and the data.
# --------------------------------------------------------------------------------------------------------------------
def _predictor(defaults: dict, kwargs: dict) -> ActionConditionedPredictor:
    return ActionConditionedPredictor(**{**defaults, **kwargs})


@register_model
def dynamics_nano(**kwargs) -> ActionConditionedPredictor:
    # Sized for CEM on CPU over pooled latents: see the module tests for the measured rollout time.
    return _predictor(dict(predictor_embed_dim=64, depth=3, num_heads=4), kwargs)


@register_model
def dynamics_small(**kwargs) -> ActionConditionedPredictor:
    return _predictor(dict(predictor_embed_dim=256, depth=6, num_heads=8), kwargs)


@register_model
def ac_predictor_vjepa2(**kwargs) -> ActionConditionedPredictor:
    # The released V-JEPA 2-AC predictor (~300M) over ViT-g features at 256 px (16 x 16 patches of 16 px).
    defaults = dict(
        embed_dim=1408, action_dim=7, state_dim=7, extrinsics_dim=6, grid_size=(16, 16),
        predictor_embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0,
    )  # fmt: skip
    return _predictor(defaults, kwargs)
