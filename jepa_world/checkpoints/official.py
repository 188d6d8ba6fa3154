"""Official release checkpoints: which release wrote a state dict, and the architecture its tensors imply.

Official I-JEPA (`.pth.tar`), V-JEPA and V-JEPA 2 (`.pt`) training checkpoints and bare state dicts: the architecture
is inferred from the tensor shapes (width, depth, patch, tubelet, MLP ratio, RoPE or table, grid, mask tokens), the
release from the key names and prefixes; what weights cannot tell (heads, clip length) comes from a table keyed by
release and width, overridable with `num_heads=` / `num_frames=`. The V-JEPA 2-AC action-conditioned predictor
(`vjepa2-ac-vitg.pt`, keys `action_encoder.*` ...): widths and action / state / extrinsics dims from the shapes, heads
(16) and frame grid (16 x 16) from the release, overridable with `num_heads=` / `grid_size=`. Stored position tables
are copied as they are (never recomputed). Key names and conventions: docs/hub.md.

Shapes: encoder `pos_embed [1, N, D]`, predictor `predictor_pos_embed [1, N, P]`, mask tokens `[1, 1, P]`; video
patch weights `[D, C, t, p, p]`, image `[D, C, p, p]`.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from jepa_world.checkpoints.io import CheckpointError
from jepa_world.checkpoints.state_dict import PREFIXES, abbrev, strip_key, strip_prefixes
from jepa_world.models.layers import sincos_table

RELEASES = ("ijepa", "vjepa", "vjepa2", "generic")

# Heads are not stored in the weights. Widths of the releases' presets (docs/hub.md); V-JEPA 2's ViT-g / ViT-G
# ("xformers" variants) use head width 64, i.e. 22 / 26 heads, where the earlier releases use 16.
HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16, 1664: 16}
HEADS_BY_WIDTH_VJEPA2 = {**HEADS_BY_WIDTH, 1408: 22, 1664: 26}
VJEPA2_PREDICTOR_HEADS = 12
# V-JEPA 2-AC (vjepa2-ac-vitg.pt): VisionTransformerPredictorAC's default heads, and its 256 px / patch 16 frame grid.
AC_PREDICTOR_HEADS = 16
AC_PREDICTOR_GRID = (16, 16)
_AC_PREFIXES = ("action_encoder.", "state_encoder.", "extrinsics_encoder.")
DEFAULT_NUM_FRAMES = 16  # clip length of the video releases (the grid's time axis cannot be read from a table)
_ROPE_IMG_SIZE = {"vjepa2": 256}  # nominal size only: RoPE models take any size, nothing numeric depends on it

# Position settings of each release (V-JEPA pretrain configs set uniform_power: true).
_RELEASE_POS = {
    "ijepa": dict(sincos_layout="ijepa", uniform_power=False),
    "vjepa": dict(sincos_layout="vjepa", uniform_power=True),
    "vjepa2": dict(sincos_layout="vjepa", uniform_power=True),
}


def mlp_ratio_for(hidden: int, dim: int) -> float:
    # Blocks build int(dim * ratio) hidden units; make sure the float ratio gives back exactly `hidden`.
    ratio = hidden / dim
    return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


def _sincos_settings(table: torch.Tensor, grid: tuple[int, ...], dim: int) -> dict:
    """Which layout / uniform_power reproduces a stored sin-cos table ({} if none does: a learned or custom table)."""
    candidates = (
        [dict(sincos_layout="vjepa", uniform_power=False), dict(sincos_layout="ijepa", uniform_power=False)]
        if len(grid) == 2
        else [dict(sincos_layout="vjepa", uniform_power=True), dict(sincos_layout="vjepa", uniform_power=False)]
    )
    table = table.detach().float().reshape(-1, dim)
    for cand in candidates:
        try:
            ref = sincos_table(grid, dim, layout=cand["sincos_layout"], uniform_power=cand["uniform_power"])
        except (ValueError, AssertionError, RuntimeError):  # a width this layout cannot split
            continue
        if ref.shape == table.shape and torch.allclose(ref, table.cpu(), atol=1e-4):
            return cand
    return {}


def default_num_heads(width: int, release: str = "generic", *, predictor: bool = False) -> int:
    """Heads the releases use for a width (heads are not stored in weights).

    Args:
        width: encoder width D (also for a predictor: I-JEPA / V-JEPA predictors use the encoder's heads).
        release: "ijepa", "vjepa", "vjepa2" or "generic".
        predictor: heads of the mask predictor (V-JEPA 2: 12) instead of the encoder.

    Raises:
        CheckpointError: unknown width; pass `num_heads=` explicitly.
    """
    if predictor and release == "vjepa2":
        return VJEPA2_PREDICTOR_HEADS
    table = HEADS_BY_WIDTH_VJEPA2 if release == "vjepa2" else HEADS_BY_WIDTH
    if width not in table:
        what = "the predictor of an encoder" if predictor else "an encoder"
        raise CheckpointError(
            f"cannot infer num_heads for {what} of width {width} (heads are not stored in the weights; known widths "
            f"{sorted(table)}); pass num_heads=..."
        )
    return table[width]


def _key_prefixes(state_dict: Mapping[str, Any]) -> set[str]:
    return {k[: len(k) - len(strip_key(k, PREFIXES))] for k in state_dict}


def detect_release(state_dict: Mapping[str, Any]) -> str:
    """Which release wrote a component's state dict (keys as stored, prefixes included).

    `backbone.` (V-JEPA's wrapper) means V-JEPA; no position table then means V-JEPA 2 (RoPE). I-JEPA keys carry
    `module.` only, and its predictor has one `mask_token`. Anything else is "generic" (e.g. a stripped state dict).
    """
    prefixes = _key_prefixes(state_dict)
    keys = set(strip_prefixes(state_dict))
    is_predictor = "predictor_embed.weight" in keys
    pos_key = "predictor_pos_embed" if is_predictor else "pos_embed"
    if any("backbone." in p for p in prefixes):
        return "vjepa" if pos_key in keys else "vjepa2"
    if "mask_token" in keys:
        return "ijepa"
    if not is_predictor and any("module." in p for p in prefixes) and pos_key in keys:
        patch = strip_prefixes(state_dict).get("patch_embed.proj.weight")
        if patch is not None and patch.ndim == 4:
            return "ijepa"
    return "generic"


def _count_blocks(keys: set[str], prefix: str) -> int:
    ids = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)(\.|$)", k))}
    if ids != set(range(len(ids))):
        raise CheckpointError(f"{prefix}{{i}} blocks are not numbered 0..n-1: found {sorted(ids)}")
    return len(ids)


def _require(state_dict: Mapping, keys: tuple[str, ...], what: str, kind: str) -> None:
    absent = [k for k in keys if k not in state_dict]
    if absent:
        raise CheckpointError(
            f"{what} is not {kind} state dict: no {abbrev(absent)}; its first keys are {abbrev(list(state_dict), 8)}"
        )


def _video_grids(n_tokens: int) -> list[tuple[int, int, int]]:
    """Every (time steps, side, side) grid with side >= 2 that holds `n_tokens` tokens."""
    grids = []
    for steps in range(1, n_tokens + 1):
        side = math.isqrt(n_tokens // steps) if n_tokens % steps == 0 else 0
        if side >= 2 and steps * side * side == n_tokens:
            grids.append((steps, side, side))
    return grids


def _grid_from_table(
    table: torch.Tensor, *, video: bool, tubelet: int, num_frames: int | None, what: str, key: str
) -> tuple[int, ...]:
    """Token grid of a stored `[1, N, D]` table: square spatial grid, and for video its time steps.

    With `num_frames` given, the time axis is num_frames / tubelet. Without it, a video table fits several grids
    (128 tokens: 2 x 8 x 8 or 8 x 4 x 4); a sin-cos table says which, because it equals the table of exactly one of
    them. A table that matches none (learned, or a custom layout) falls back on the releases' 16 frames with a warning
    naming the other grids and the override; if 16 frames do not fit, it is an error naming them.
    """
    n_tokens, dim = table.shape[1], table.shape[-1]
    if not video:
        side = math.isqrt(n_tokens)
        if side * side != n_tokens:
            raise CheckpointError(f"{what}: {key} holds {n_tokens} tokens, not a square grid; pass img_size=(H, W)")
        return (side, side)
    if num_frames is None:
        candidates = _video_grids(n_tokens)
        matched = [g for g in candidates if _sincos_settings(table, g, dim)]
        if len(matched) == 1:
            return matched[0]
        default = next((g for g in candidates if g[0] * tubelet == DEFAULT_NUM_FRAMES), None)
        listing = ", ".join(f"{g[0] * tubelet} frames at {g[1]}x{g[2]} tokens" for g in candidates)
        if default is not None and len(candidates) > 1:
            warnings.warn(
                f"{what}: {key} holds {n_tokens} tokens, which fit several clip shapes ({listing}), and the table is "
                f"not a sin-cos table that tells them apart; assuming the releases' {DEFAULT_NUM_FRAMES} frames. Pass "
                "num_frames= (and img_size=) if the model was trained on other clips: a wrong guess gives wrong "
                "features without any other error",
                stacklevel=4,
            )
        if default is not None:
            return default
        raise CheckpointError(
            f"{what}: {key} holds {n_tokens} tokens, which is not {DEFAULT_NUM_FRAMES // tubelet} time steps (the "
            f"releases' {DEFAULT_NUM_FRAMES} frames / tubelet {tubelet}) x a square grid"
            + (f"; it fits {listing}" if candidates else "")
            + "; pass num_frames= (the clip length the model was trained with)"
        )
    steps = num_frames // tubelet
    side = math.isqrt(n_tokens // steps) if steps and n_tokens % steps == 0 else 0
    if side == 0 or steps * side * side != n_tokens:
        raise CheckpointError(
            f"{what}: {key} holds {n_tokens} tokens, which is not {steps} time steps (num_frames={num_frames} / "
            f"tubelet {tubelet}) x a square grid; pass num_frames= (the clip length the model was trained with)"
        )
    return (steps, side, side)


def infer_encoder_kwargs(
    state_dict: Mapping[str, torch.Tensor], *, release: str = "generic", what: str = "state dict", **overrides
) -> dict:
    """VisionTransformer kwargs from a (prefix-stripped) encoder state dict; `overrides` win and guide the grid.

    Width from `norm.weight`, depth from the block count, patch / tubelet / channels from `patch_embed.proj.weight`
    (4-D image, 5-D video), MLP ratio from `fc1`, RoPE iff there is no `pos_embed`, the grid from `pos_embed`'s N,
    heads from `default_num_heads`, the sin-cos layout from the release.
    """
    needed = ("patch_embed.proj.weight", "norm.weight", "blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight")
    _require(state_dict, needed, what, "a ViT encoder")
    if "blocks.0.mlp.fc3.weight" in state_dict:
        raise CheckpointError(f"{what}: SwiGLU MLPs (fc1/fc2/fc3, the releases' use_silu=True) are not supported")
    keys = set(state_dict)
    patch = state_dict["patch_embed.proj.weight"]
    if patch.ndim not in (4, 5) or patch.shape[-1] != patch.shape[-2]:
        raise CheckpointError(
            f"{what}: patch_embed.proj.weight has shape {tuple(patch.shape)}; expected square patches"
        )
    width = state_dict["norm.weight"].shape[0]
    video = patch.ndim == 5
    tubelet = int(patch.shape[2]) if video else 2
    patch_size = int(patch.shape[-1])
    kwargs: dict[str, Any] = dict(
        patch_size=patch_size,
        tubelet_size=tubelet,
        in_chans=int(patch.shape[1]),
        embed_dim=int(width),
        depth=_count_blocks(keys, "blocks."),
        mlp_ratio=mlp_ratio_for(state_dict["blocks.0.mlp.fc1.weight"].shape[0], width),
        qkv_bias="blocks.0.attn.qkv.bias" in keys,
    )
    num_frames = overrides.get("num_frames")
    kwargs["num_frames"] = (num_frames or DEFAULT_NUM_FRAMES) if video else 1
    pos = state_dict.get("pos_embed")
    if pos is not None and video and num_frames is None and "img_size" not in overrides:
        # The table's grid gives the clip length (ambiguous grids: see _grid_from_table).
        grid = _grid_from_table(pos, video=True, tubelet=tubelet, num_frames=None, what=what, key="pos_embed")
        kwargs["num_frames"], num_frames = (grid[0] * tubelet,) * 2
    if pos is None:
        kwargs["pos_embed"] = "rope"
        kwargs["img_size"] = _ROPE_IMG_SIZE.get(release, 224) // patch_size * patch_size
        kwargs.update(_RELEASE_POS.get(release, {}))
    else:
        kwargs["pos_embed"] = "sincos"
        if "img_size" not in overrides:
            grid = _grid_from_table(
                pos, video=video, tubelet=tubelet, num_frames=num_frames, what=what, key="pos_embed"
            )
            kwargs["img_size"] = grid[-1] * patch_size
        grid = (kwargs["num_frames"] // tubelet,) if video else ()
        img = overrides.get("img_size", kwargs.get("img_size"))
        h, w = (img, img) if isinstance(img, int) else img
        grid = (*grid, h // patch_size, w // patch_size)
        kwargs.update(_RELEASE_POS.get(release) or _sincos_settings(pos, grid, width))
    if "num_heads" not in overrides:
        kwargs["num_heads"] = default_num_heads(width, release)
    return {**kwargs, **overrides}


def infer_predictor_kwargs(
    state_dict: Mapping[str, torch.Tensor],
    *,
    release: str = "generic",
    encoder_state_dict: Mapping[str, torch.Tensor] | None = None,
    what: str = "state dict",
    **overrides,
) -> dict:
    """MaskPredictor kwargs from a (prefix-stripped, `mask_token` renamed) predictor state dict.

    Widths from `predictor_embed.weight [P, D]`, depth from the block count, mask tokens from `mask_tokens.{i}`, the
    grid from `predictor_pos_embed` (video or image, patch and tubelet from the encoder of the same checkpoint when
    given, else from the release). `num_frames=` (clip length) guides the video grid; other overrides are
    MaskPredictor kwargs and win.
    """
    if is_ac_predictor(state_dict):
        raise CheckpointError(
            f"{what} is a V-JEPA 2-AC action-conditioned predictor, not a mask predictor; use "
            "infer_ac_predictor_kwargs (load_predictor / load_ac_predictor do)"
        )
    needed = (
        "predictor_embed.weight",
        "predictor_proj.weight",
        "predictor_norm.weight",
        "predictor_blocks.0.attn.qkv.weight",
        "predictor_blocks.0.mlp.fc1.weight",
    )
    _require(state_dict, needed, what, "a mask predictor")
    overrides = dict(overrides)
    num_frames = overrides.pop("num_frames", None)
    keys = set(state_dict)
    width, enc_width = (int(n) for n in state_dict["predictor_embed.weight"].shape)
    num_tokens = _count_blocks(keys, "mask_tokens.")
    if num_tokens == 0:
        raise CheckpointError(f"{what}: no mask_tokens.{{i}} (or I-JEPA mask_token); first keys {abbrev(list(keys))}")
    kwargs: dict[str, Any] = dict(
        embed_dim=enc_width,
        predictor_embed_dim=width,
        depth=_count_blocks(keys, "predictor_blocks."),
        mlp_ratio=mlp_ratio_for(state_dict["predictor_blocks.0.mlp.fc1.weight"].shape[0], width),
        qkv_bias="predictor_blocks.0.attn.qkv.bias" in keys,
        num_mask_tokens=num_tokens,
    )
    patch = (encoder_state_dict or {}).get("patch_embed.proj.weight")
    # Without an encoder alongside: the V-JEPA family is video, I-JEPA images.
    video = patch.ndim == 5 if patch is not None else (release in ("vjepa", "vjepa2") or (num_frames or 1) > 1)
    tubelet = int(patch.shape[2]) if patch is not None and video else 2
    patch_size = int(patch.shape[-1]) if patch is not None else 16
    pos = state_dict.get("predictor_pos_embed")
    if pos is None:
        kwargs["pos_embed"] = "rope"
        side = _ROPE_IMG_SIZE.get(release, 224) // patch_size
        kwargs["grid_size"] = ((num_frames or DEFAULT_NUM_FRAMES) // tubelet, side, side) if video else (side, side)
        kwargs.update(_RELEASE_POS.get(release, {}))
    else:
        kwargs["pos_embed"] = "sincos"
        grid = overrides.get("grid_size") or _grid_from_table(
            pos, video=video, tubelet=tubelet, num_frames=num_frames, what=what, key="predictor_pos_embed"
        )
        kwargs["grid_size"] = tuple(grid)
        kwargs.update(_RELEASE_POS.get(release) or _sincos_settings(pos, tuple(grid), width))
    if "num_heads" not in overrides:
        kwargs["num_heads"] = default_num_heads(enc_width, release, predictor=True)
    return {**kwargs, **overrides}


def is_ac_predictor(state_dict: Mapping[str, Any]) -> bool:
    """Whether a predictor state dict (prefixes allowed) is a V-JEPA 2-AC action-conditioned predictor."""
    return any(strip_key(k, PREFIXES).startswith(_AC_PREFIXES) for k in state_dict)


def infer_ac_predictor_kwargs(state_dict: Mapping[str, torch.Tensor], *, what: str = "state dict", **overrides) -> dict:
    """ActionConditionedPredictor kwargs from a (prefix-stripped) V-JEPA 2-AC predictor state dict.

    From the shapes: `predictor_embed.weight [P, D]` gives the widths, `action_encoder.weight [P, A]`,
    `state_encoder.weight [P, S]` and `extrinsics_encoder.weight [P, E]` the input dims (an absent encoder gives 0:
    our world models may have no state token; the release always stores all three), the block count the depth,
    `fc1` the MLP ratio, `attn.qkv.bias` the qkv bias. Not in the weights: heads (16, the release's; a width that
    16 does not divide needs `num_heads=`) and the frame grid (16 x 16: 256 px / patch 16; `grid_size=`). Overrides
    are ActionConditionedPredictor kwargs and win.
    """
    needed = (
        "predictor_embed.weight",
        "action_encoder.weight",
        "predictor_proj.weight",
        "predictor_norm.weight",
        "predictor_blocks.0.attn.qkv.weight",
        "predictor_blocks.0.mlp.fc1.weight",
    )
    _require(state_dict, needed, what, "a V-JEPA 2-AC predictor")
    if "predictor_blocks.0.mlp.fc3.weight" in state_dict:
        raise CheckpointError(f"{what}: SwiGLU MLPs (fc1/fc2/fc3, the release's use_pred_silu=True) are not supported")
    keys = set(state_dict)
    width, enc_width = (int(n) for n in state_dict["predictor_embed.weight"].shape)

    def in_dim(name: str) -> int:
        weight = state_dict.get(f"{name}.weight")
        return 0 if weight is None else int(weight.shape[1])

    kwargs: dict[str, Any] = dict(
        embed_dim=enc_width,
        action_dim=in_dim("action_encoder"),
        state_dim=in_dim("state_encoder"),
        extrinsics_dim=in_dim("extrinsics_encoder"),
        grid_size=AC_PREDICTOR_GRID,
        predictor_embed_dim=width,
        depth=_count_blocks(keys, "predictor_blocks."),
        mlp_ratio=mlp_ratio_for(state_dict["predictor_blocks.0.mlp.fc1.weight"].shape[0], width),
        qkv_bias="predictor_blocks.0.attn.qkv.bias" in keys,
    )
    if "num_heads" not in overrides:
        if width % AC_PREDICTOR_HEADS:
            raise CheckpointError(
                f"{what}: cannot infer num_heads for a V-JEPA 2-AC predictor of width {width} (heads are not stored "
                f"in the weights; the release uses {AC_PREDICTOR_HEADS}, which does not divide {width}); "
                "pass num_heads=..."
            )
        kwargs["num_heads"] = AC_PREDICTOR_HEADS
    if "grid_size" in overrides:
        overrides = {**overrides, "grid_size": tuple(overrides["grid_size"])}
    return {**kwargs, **overrides}


def official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes and rename I-JEPA's single `mask_token` to our `mask_tokens.0`."""
    out = strip_prefixes(state_dict)
    if "mask_token" in out:
        out["mask_tokens.0"] = out.pop("mask_token")
    return out
