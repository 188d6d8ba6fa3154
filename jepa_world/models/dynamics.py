"""Action-conditioned latent dynamics (V-JEPA 2-AC shape) and the world-model verbs planners need.

References:
    Assran et al. 2025 (V-JEPA 2-AC: per-frame [action, state, patch] tokens, block-causal attention, L1 teacher
    forcing + rollout loss, layer-normed predictions); Sobal et al. 2025 (PLDM) and the EB-JEPA Two-Rooms setup
    (end-to-end training with variance / covariance regularisation and an inverse-dynamics head); Hansen et al. 2024
    (TD-MPC2: a world model exposed as verbs). Facts: `shared/reference/world-models.md`.

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

The world model's latent space is the affine-free LayerNorm of the encoder output (after mean-pooling if `pool`);
`predict` and `rollout` return layer-normed predictions in that same space, and feed them back as the release does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepa_world.losses import covariance_loss, feature_std, jepa_loss, variance_loss
from jepa_world.models.layers import (
    LN_EPS,
    Block,
    Mlp,
    apply_rope,
    grid_coords,
    init_weights_,
    rescale_blocks_,
    rope_tables,
    run_blocks,
)
from jepa_world.planning import CostFn, latent_distance
from jepa_world.registry import register_model

STATE_UPDATES = ("hold", "add")


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------
def _check_shape(x: Tensor | None, shape: tuple[int, ...], name: str) -> None:
    if x is None:
        raise ValueError(f"{name} is required (expected shape {shape})")
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")


def _check_dims(**dims: tuple[int, int]) -> None:
    """Raise unless every `name=(value, low)` is an int (not a bool) >= low."""
    for name, (value, low) in dims.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _check_states(states: Tensor | None, shape: tuple[int, int, int], state_dim: int) -> bool:
    """Validate the states passed to a predictor built with `state_dim`; True when they are to be used."""
    if state_dim:
        _check_shape(states, shape, "states")
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
# Small modules
# --------------------------------------------------------------------------------------------------------------------
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
        super().__init__()
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


class InverseDynamics(nn.Module):
    """Predict the action between two latents (PLDM's anti-collapse head): `(z_t, z_t1) [..., HW, D] -> [..., A]`."""

    def __init__(self, *, embed_dim: int, action_dim: int, hidden_dim: int = 256):
        super().__init__()
        self.mlp = Mlp(dim=2 * embed_dim, hidden_dim=hidden_dim, out_dim=action_dim)

    def forward(self, z_t: Tensor, z_t1: Tensor) -> Tensor:
        return self.mlp(torch.cat([z_t.mean(-2), z_t1.mean(-2)], dim=-1))


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
        super().__init__()
        _check_dims(embed_dim=(embed_dim, 1), action_dim=(action_dim, 1), state_dim=(state_dim, 0),
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
        _check_shape(actions, (B, T, self.action_dim), "actions")
        parts = [z[:, :, 0], actions.to(z.dtype)]
        if _check_states(states, (B, T, self.state_dim), self.state_dim):
            parts.append(states.to(z.dtype))
        x = self.inp(torch.cat(parts, dim=-1))  # [B, T, hidden]
        for blk in self.blocks:
            x = x + blk(x)
        if cache is not None:
            cache.num_frames += T
        return (z[:, :, 0] + self.out(x))[:, :, None]  # [B, T, 1, D]


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
        super().__init__()
        _check_dims(embed_dim=(embed_dim, 1), action_dim=(action_dim, 1), state_dim=(state_dim, 0),
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
        _check_shape(actions, (B, T, self.action_dim), "actions")
        cond = [self.action_encoder(actions)]  # each [B, T, P]
        if _check_states(states, (B, T, self.state_dim), self.state_dim):
            cond.append(self.state_encoder(states))
        if extrinsics is not None:
            if self.extrinsics_encoder is None:
                raise ValueError("extrinsics passed to a predictor built with extrinsics_dim=0")
            _check_shape(extrinsics, (B, T, self.extrinsics_dim), "extrinsics")
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
# The world model
# --------------------------------------------------------------------------------------------------------------------
class WorldModel(nn.Module):
    """Encoder + action-conditioned predictor with the verbs `encode`, `predict`, `rollout`, and a training loss.

    Args:
        encoder: frame encoder `[B, 3, H, W] -> [B, N, D]` with an `embed_dim` attribute (a `VisionTransformer`, or
            a `PooledEncoder`); each frame is encoded alone.
        predictor: an `ActionConditionedPredictor` (or, for pooled latents, a `ResidualMlpDynamics`) whose
            `embed_dim` equals the encoder's.
        pool: mean-pool each frame's tokens to one latent (the practical choice on CPU).
        freeze_encoder: no gradient to the encoder (kept in eval mode); targets are then computed under no_grad.
            When False, encoder and predictor train jointly, with the anti-collapse terms below.
        rollout_steps: autoregressive steps of the rollout loss from frame 0 (release: 2; clamped to T - 1; 0 = off).
        loss: regression loss, "l1" (release), "smooth_l1" or "mse".
        tf_weight: weight of the teacher-forcing loss.
        rollout_weight: weight of the rollout loss.
        var_weight: VICReg variance weight on the per-frame latents (joint training only).
        cov_weight: VICReg covariance weight (joint training only).
        idm_weight: inverse-dynamics MSE weight (joint training only; 0 builds no head).
        smooth_weight: temporal-smoothness weight, mean squared latent step `|z_{t+1} - z_t|^2` (joint training only;
            PLDM): keeps the latent of a small move small, which shapes the planner's landscape.
        idm_hidden_dim: inverse-dynamics MLP width.
        state_update: how `rollout` fills states of predicted frames when only context states are given: "hold" (repeat
            the last state), "add" (s + a: delta-pose actions with A == S, as the Franka sample's derived actions), or
            a callable `(s [N, 1, S], a [N, 1, A]) -> [N, 1, S]`.
    """

    def __init__(
        self,
        *,
        encoder: nn.Module,
        predictor: ActionConditionedPredictor | ResidualMlpDynamics,
        pool: bool = False,
        freeze_encoder: bool = True,
        rollout_steps: int = 2,
        loss: str = "l1",
        tf_weight: float = 1.0,
        rollout_weight: float = 1.0,
        var_weight: float = 1.0,
        cov_weight: float = 1.0,
        idm_weight: float = 1.0,
        smooth_weight: float = 0.0,
        idm_hidden_dim: int = 256,
        state_update: str | Callable[[Tensor, Tensor], Tensor] = "hold",
    ):
        super().__init__()
        enc_dim = getattr(encoder, "embed_dim", None)
        if enc_dim != predictor.embed_dim:
            raise ValueError(f"encoder width {enc_dim} differs from the predictor's embed_dim={predictor.embed_dim}")
        if not isinstance(rollout_steps, int) or rollout_steps < 0:
            raise ValueError(f"rollout_steps must be an int >= 0, got {rollout_steps!r}")
        if not callable(state_update) and state_update not in STATE_UPDATES:
            raise ValueError(f"state_update={state_update!r}; expected one of {STATE_UPDATES} or a callable")
        if state_update == "add" and predictor.state_dim and predictor.state_dim != predictor.action_dim:
            raise ValueError(
                f"state_update='add' needs state_dim == action_dim, got {predictor.state_dim} and "
                f"{predictor.action_dim}"
            )
        jepa_loss(torch.zeros(1), torch.zeros(1), kind=loss)  # fail at construction on an unknown loss name
        self.encoder, self.predictor = encoder, predictor
        self.pool, self.freeze_encoder, self.rollout_steps, self.loss_kind = pool, freeze_encoder, rollout_steps, loss
        self.tf_weight, self.rollout_weight = tf_weight, rollout_weight
        self.var_weight, self.cov_weight, self.idm_weight = var_weight, cov_weight, idm_weight
        self.smooth_weight = smooth_weight
        self.state_update = state_update
        self.inverse_dynamics = None
        if not freeze_encoder and idm_weight > 0:
            self.inverse_dynamics = InverseDynamics(
                embed_dim=enc_dim, action_dim=predictor.action_dim, hidden_dim=idm_hidden_dim
            )
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    def train(self, mode: bool = True) -> WorldModel:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # no drop-path noise in a frozen feature extractor
        return self

    # -- verbs --------------------------------------------------------------------------------------------------------
    def encode(self, frames: Tensor) -> Tensor:
        """Encode each frame alone: `[B, T, 3, H, W]` or `[B, 3, H, W]` -> `[B, T, HW, D]` (T = 1 for one image)."""
        if frames.ndim == 4:
            frames = frames[:, None]
        if frames.ndim != 5:
            raise ValueError(f"frames must be [B, T, C, H, W] or [B, C, H, W], got {tuple(frames.shape)}")
        B, T = frames.shape[:2]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            h = self.encoder(frames.flatten(0, 1))  # [B*T, N, D]
        if self.pool:
            h = h.mean(dim=1, keepdim=True)  # [B*T, 1, D]
        return self._norm(h).unflatten(0, (B, T))

    def _norm(self, z: Tensor) -> Tensor:
        # Frozen (pretrained) encoders: layer-normed latents and predictions, as V-JEPA 2-AC. Joint training keeps
        # raw latents (as PLDM): a layer norm there lets the static background dominate every latent, and the
        # variance term cannot pull the normalised latents apart (measured: collapse to std ~1e-5).
        return F.layer_norm(z, (z.shape[-1],)) if self.freeze_encoder else z

    def _states(self, states: Tensor | None) -> Tensor | None:
        # Verbs ignore states when the predictor has no state token, so callers can pass what the data holds.
        return states if self.predictor.state_dim else None

    def predict(self, z: Tensor, actions: Tensor, states: Tensor | None = None) -> Tensor:
        """Teacher-forced one-step predictions: z `[B, T, HW, D]`, actions `[B, T, A]`, states `[B, T, S]`.

        Returns:
            `[B, T, HW, D]` layer-normed predictions of frames 1..T (output t from frames <= t).
        """
        z_next = self.predictor(z, actions, self._states(states))
        return self._norm(z_next)

    def rollout(self, z0: Tensor, actions: Tensor, states: Tensor | None = None) -> Tensor:
        """Autoregressive rollout that feeds its own predictions back (key/value cached, exact).

        Leading batch dims broadcast: z0 `[E, 1, T0, HW, D]` with actions `[E, S, L, A]` rolls out E*S sequences in
        one batched call per step.

        Args:
            z0: `[*batch, T0, HW, D]` context latents (T0 = 1: the current frame).
            actions: `[*batch, L, A]` with L = T0 - 1 + H: the T0 - 1 actions between context frames, then the H
                actions to roll out.
            states: `[*batch, T0, S]` context states (later ones filled by `state_update`) or `[*batch, >= L, S]`
                states of every input frame (the first L are used); ignored when the model has no state token.

        Returns:
            `[*batch, H, HW, D]` predicted latents of the H future frames.
        """
        T0, L = z0.shape[-3], actions.shape[-2]
        H = L - T0 + 1
        if H < 1:
            raise ValueError(f"actions has {L} steps but {T0} context frames need at least {T0} (T0 - 1 + H)")
        states = self._states(states)
        shapes = [z0.shape[:-3], actions.shape[:-2]] + ([] if states is None else [states.shape[:-2]])
        batch = torch.broadcast_shapes(*shapes)
        z = z0.expand(*batch, *z0.shape[-3:]).flatten(0, len(batch) - 1) if batch else z0[None]
        a = actions.expand(*batch, *actions.shape[-2:]).reshape(-1, *actions.shape[-2:])
        s = None
        if states is not None:
            if states.shape[-2] != T0 and states.shape[-2] < L:
                raise ValueError(f"states must have {T0} (context) or >= {L} steps, got {tuple(states.shape)}")
            s = states.expand(*batch, *states.shape[-2:]).reshape(-1, *states.shape[-2:])

        cache, outs = RolloutCache(), []
        for _ in range(H):
            f0, n = cache.num_frames, z.shape[1]  # frames seen, frames fed now
            if s is not None and s.shape[1] < f0 + n:
                s = torch.cat([s, self._next_state(s[:, -1:], a[:, f0 - 1 : f0])], dim=1)
            s_k = None if s is None else s[:, f0 : f0 + n]
            y = self.predictor(z, a[:, f0 : f0 + n], s_k, cache=cache)[:, -1:]  # [N, 1, HW, D]
            z = self._norm(y)
            outs.append(z)
        return torch.cat(outs, dim=1).reshape(*batch, H, *z0.shape[-2:])

    def _next_state(self, s: Tensor, a: Tensor) -> Tensor:
        if callable(self.state_update):
            return self.state_update(s, a)
        return s + a if self.state_update == "add" else s

    def make_cost(
        self,
        z0: Tensor,
        z_goal: Tensor,
        *,
        states: Tensor | None = None,
        p: int = 1,
        reduce: str = "last",
    ) -> CostFn:
        """A planner cost: roll sampled actions `[E, S, H, A]` out from z0 and measure the latent distance to a goal.

        Args:
            z0: `[E, 1, HW, D]` current latents (from `encode`).
            z_goal: `[E, HW, D]` or `[E, 1, HW, D]` goal latents.
            states: `[E, 1, S]` current states (filled forward by `state_update`), if the model uses states.
            p: 1 for L1 (V-JEPA 2-AC), 2 for MSE.
            reduce: "last", "sum" or "last+mean" over the horizon (see `planning.latent_distance`).

        Returns:
            `cost_fn(a [E, S, H, A]) -> [E, S]`.
        """
        z_goal = z_goal[:, 0] if z_goal.ndim == z0.ndim else z_goal
        s = None if states is None else states[:, None]

        def cost_fn(a: Tensor) -> Tensor:
            z = self.rollout(z0[:, None], a.to(z0.dtype), s)  # [E, S, H, HW, D]
            return latent_distance(z, z_goal, p=p, reduce=reduce)

        return cost_fn

    # -- training -----------------------------------------------------------------------------------------------------
    def forward(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Teacher forcing + rollout loss (+ VICReg and inverse dynamics when the encoder trains).

        Args:
            batch: {"x": `[B, T, 3, H, W]`, "actions": `[B, T-1, A]`, optional "states": `[B, T, S]`}.

        Returns:
            (loss, metrics): "loss", "loss_tf", "loss_rollout", "rollout_err_{k}" (L1 at step k), "latent_std", and
            in joint training "loss_var", "loss_cov", "loss_idm" (and "loss_smooth").
        """
        x, actions = batch["x"], batch["actions"]
        if x.ndim != 5 or x.shape[1] < 2:
            raise ValueError(f"batch['x'] must be [B, T >= 2, C, H, W], got {tuple(x.shape)}")
        B, T = x.shape[:2]
        _check_shape(actions, (B, T - 1, self.predictor.action_dim), "batch['actions']")
        states = self._states(batch.get("states"))
        if self.predictor.state_dim:
            _check_shape(states, (B, T, self.predictor.state_dim), "batch['states']")

        z = self.encode(x)  # [B, T, HW, D]; with grad only in joint training
        h = z.detach() if self.freeze_encoder else z  # targets; PLDM backpropagates into them when joint
        metrics: dict[str, Tensor] = {}
        z_tf = self.predict(z[:, :-1], actions, None if states is None else states[:, :-1])  # [B, T-1, HW, D]
        loss_tf = jepa_loss(z_tf, h[:, 1:], kind=self.loss_kind)
        loss = self.tf_weight * loss_tf
        metrics["loss_tf"] = loss_tf.detach()

        R = min(self.rollout_steps, T - 1)
        if R > 0:
            s_r = None if states is None else states[:, :R]
            z_ar = self.rollout(z[:, :1], actions[:, :R], s_r)  # [B, R, HW, D]
            loss_ar = jepa_loss(z_ar, h[:, 1 : R + 1], kind=self.loss_kind)
            loss = loss + self.rollout_weight * loss_ar
            metrics["loss_rollout"] = loss_ar.detach()
            per_step = (z_ar - h[:, 1 : R + 1]).detach().abs().flatten(2).mean(dim=(0, 2))  # [R]
            metrics.update({f"rollout_err_{i + 1}": e for i, e in enumerate(per_step)})

        if not self.freeze_encoder:
            # Per-frame statistics over the batch (PLDM): a latent that only varies over time still collapses.
            frames = z.transpose(0, 1).flatten(1, 2)  # [T, B*HW, D]
            loss_var = torch.stack([variance_loss(f) for f in frames]).mean()
            loss_cov = torch.stack([covariance_loss(f) for f in frames]).mean()
            loss = loss + self.var_weight * loss_var + self.cov_weight * loss_cov
            metrics["loss_var"], metrics["loss_cov"] = loss_var.detach(), loss_cov.detach()
            if self.smooth_weight > 0:
                loss_smooth = (z[:, 1:] - z[:, :-1]).pow(2).sum(-1).mean()
                loss = loss + self.smooth_weight * loss_smooth
                metrics["loss_smooth"] = loss_smooth.detach()
            if self.inverse_dynamics is not None:
                loss_idm = F.mse_loss(self.inverse_dynamics(z[:, :-1], z[:, 1:]), actions)
                loss = loss + self.idm_weight * loss_idm
                metrics["loss_idm"] = loss_idm.detach()
        metrics["loss"] = loss.detach()
        metrics["latent_std"] = feature_std(h.detach())
        return loss, metrics


# --------------------------------------------------------------------------------------------------------------------
# Presets. embed_dim / action_dim / state_dim come from the encoder and the data.
# --------------------------------------------------------------------------------------------------------------------
def _predictor(defaults: dict, kwargs: dict) -> ActionConditionedPredictor:
    return ActionConditionedPredictor(**{**defaults, **kwargs})


@register_model
def pooled_encoder(**kwargs) -> PooledEncoder:
    return PooledEncoder(**kwargs)


@register_model
def dynamics_nano(**kwargs) -> ActionConditionedPredictor:
    # Sized for CEM on CPU over pooled latents: see the module tests for the measured rollout time.
    return _predictor(dict(predictor_embed_dim=64, depth=3, num_heads=4), kwargs)


@register_model
def dynamics_mlp(**kwargs) -> ResidualMlpDynamics:
    # Markov residual MLP over one pooled latent: the CPU planning choice (CEM over 5,000 x 40-step rollouts).
    return ResidualMlpDynamics(**{**dict(hidden_dim=128, depth=2), **kwargs})


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
