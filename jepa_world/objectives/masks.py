"""Multi-block masks for JEPA pretraining: I-JEPA 2D blocks on images, V-JEPA 3D tubes on video.

A mask generator turns ``(batch_size, step)`` into a list of ``MaskSet``: index tensors into the flattened token grid
that say which tokens the context encoder sees (``context_idx``) and which tokens the predictor must predict
(``target_idx``). Masks are built in the DataLoader collate function, so they must be cheap and must not depend on the
data.

Shape conventions:
    - image grid ``(H, W)``, token index ``r * W + c`` (row-major), ``N = H * W``
    - video grid ``(T, H, W)``, token index ``t * H * W + r * W + c`` (t-major, then row, column), ``N = T * H * W``
    - ``context_idx`` ``# [B, Kc]`` int64, every row sorted ascending and unique
    - ``target_idx`` ``# [B, M, Kt]`` int64, M target sets predicted from the one context, every row sorted and unique

Reproducibility: every random draw comes from a ``torch.Generator`` seeded by a hash of ``(seed, step)``, never from the
global RNG. The same ``(batch_size, step)`` gives the same masks in any process, so DataLoader workers agree and a
resumed run replays the masks of the original one.

References:
    - Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture", 2023
      (I-JEPA multi-block masking: 4 targets, scale [0.15, 0.2], aspect [0.75, 1.5]; context scale [0.85, 1.0]).
    - Bardes et al., "Revisiting Feature Prediction for Learning Visual Representations from Video", 2024
      (V-JEPA 3D multi-block: 8 blocks at 0.15 and 2 blocks at 0.7 spatial scale, tubes through the clip).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from jepa_world.objectives.arg_checks import check_grid, check_int, check_range, check_scale
from jepa_world.objectives.mask_sampling import (
    box_union,
    mask_generator,
    sample_hw,
    sample_starts,
    shrink_to_volume,
    split_to_shortest,
    subset_to_shortest,
)

__all__ = [
    "TEMPORAL_ANCHORS",
    "VJEPA_MASKS",
    "BlockSpec",
    "MaskSet",
    "MultiBlock2DMasks",
    "MultiBlock3DMasks",
    "build_masks",
]

# Resampling rounds for samples whose context ends up smaller than ``min_keep``; after that a deterministic fallback
# takes over (see the generators), so a call never loops forever.
_MAX_TRIES = 20

# Where a V-JEPA box sits in time (`BlockSpec.temporal_anchor`).
TEMPORAL_ANCHORS = ("random", "end")


# ----------------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------------
# eq=False: a field-wise == on tensors is elementwise and would raise in ``bool()``; identity semantics are clearer.
@dataclass(frozen=True, eq=False)
class MaskSet:
    """One mask config for a batch: the context tokens the encoder sees and the target tokens the predictor predicts.

    Attributes:
        context_idx: ``# [B, Kc]`` int64, sorted ascending per row, indices into the flattened token grid.
        target_idx: ``# [B, M, Kt]`` int64, M target sets predicted from that one context, each row sorted.
    """

    context_idx: torch.Tensor
    target_idx: torch.Tensor

    def __post_init__(self) -> None:
        if self.context_idx.dim() != 2:
            raise ValueError(f"context_idx must be [B, Kc], got shape {tuple(self.context_idx.shape)}")
        if self.target_idx.dim() != 3:
            raise ValueError(f"target_idx must be [B, M, Kt], got shape {tuple(self.target_idx.shape)}")
        if self.context_idx.shape[0] != self.target_idx.shape[0]:
            raise ValueError(
                f"context_idx and target_idx batch sizes differ: {self.context_idx.shape[0]} vs "
                f"{self.target_idx.shape[0]}"
            )

    @property
    def batch_size(self) -> int:
        return self.context_idx.shape[0]

    def to(self, device: torch.device | str, *, non_blocking: bool = False, copy: bool = False) -> MaskSet:
        """Move both index tensors to ``device`` (``copy``: always as fresh tensors, never views of another one)."""
        return MaskSet(
            self.context_idx.to(device, non_blocking=non_blocking, copy=copy),
            self.target_idx.to(device, non_blocking=non_blocking, copy=copy),
        )

    def select(self, rows: slice) -> MaskSet:
        """Keep the batch rows ``rows`` (used to shard a global batch across processes)."""
        if not isinstance(rows, slice):
            raise TypeError(f"rows must be a slice, got {rows!r}")
        return MaskSet(self.context_idx[rows], self.target_idx[rows])


class MultiBlock2DMasks:
    """I-JEPA multi-block masks on an image token grid.

    Per batch, one target block size and one context block size are sampled (shared by every sample and every target
    block); per sample, ``num_targets`` target blocks and one context block are placed at random positions. The context
    is the context block minus the union of that sample's targets (unless ``allow_overlap``). A sample whose context
    keeps fewer than ``min_keep`` tokens is resampled; after ``_MAX_TRIES`` rounds its context falls back to the
    whole grid minus its targets, which always has ``>= min_keep`` tokens (the target size is shrunk up front if
    needed to guarantee it). Context rows are then cut to the shortest in the batch by a random subset; target rows
    never need a cut because every target block has the same size.

    Args:
        grid_size: ``(H, W)`` token grid.
        num_targets: Target blocks per sample (M).
        target_scale: Range of the target block area as a fraction of ``H * W``.
        target_aspect: Range of the target aspect ratio ``h / w``.
        context_scale: Range of the context block area as a fraction of ``H * W``.
        context_aspect: Range of the context aspect ratio ``h / w``.
        min_keep: Minimum number of context tokens per sample (>= 1).
        allow_overlap: If True, targets are not removed from the context.
        seed: Base seed; masks are a function of ``(seed, step, batch_size)`` only.
    """

    def __init__(
        self,
        *,
        grid_size: tuple[int, int],
        num_targets: int = 4,
        target_scale: tuple[float, float] = (0.15, 0.2),
        target_aspect: tuple[float, float] = (0.75, 1.5),
        context_scale: tuple[float, float] = (0.85, 1.0),
        context_aspect: tuple[float, float] = (1.0, 1.0),
        min_keep: int = 10,
        allow_overlap: bool = False,
        seed: int = 0,
    ) -> None:
        self.grid_size: tuple[int, int] = check_grid("grid_size", grid_size, 2)  # type: ignore[assignment]
        self.num_tokens = self.grid_size[0] * self.grid_size[1]
        self.num_targets = check_int("num_targets", num_targets, minimum=1)
        self.target_scale = check_range("target_scale", target_scale, upper=1.0)
        self.target_aspect = check_range("target_aspect", target_aspect, upper=None)
        self.context_scale = check_range("context_scale", context_scale, upper=1.0)
        self.context_aspect = check_range("context_aspect", context_aspect, upper=None)
        self.allow_overlap = bool(allow_overlap)
        self.min_keep = check_int("min_keep", min_keep, minimum=1)
        # Worst case the fallback context is the grid minus M one-token targets (or the whole grid with overlap).
        max_keep = self.num_tokens if self.allow_overlap else self.num_tokens - self.num_targets
        if self.min_keep > max_keep:
            raise ValueError(
                f"min_keep must be <= {max_keep} for grid_size={self.grid_size} and num_targets={self.num_targets}, "
                f"got {self.min_keep}"
            )
        self.seed = check_int("seed", seed)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(grid_size={self.grid_size}, num_targets={self.num_targets}, "
            f"target_scale={self.target_scale}, target_aspect={self.target_aspect}, "
            f"context_scale={self.context_scale}, context_aspect={self.context_aspect}, min_keep={self.min_keep}, "
            f"allow_overlap={self.allow_overlap}, seed={self.seed})"
        )

    def __call__(self, batch_size: int, *, step: int) -> list[MaskSet]:
        """Sample the masks of one batch.

        Args:
            batch_size: Number of samples (B >= 1).
            step: Non-negative batch counter; with ``seed`` it fully determines the masks.

        Returns:
            A list with one ``MaskSet``: context ``# [B, Kc]``, targets ``# [B, num_targets, h * w]``.
        """
        B = check_int("batch_size", batch_size, minimum=1)
        step = check_int("step", step, minimum=0)
        g = mask_generator(self.seed, step)
        H, W = grid = self.grid_size
        M = self.num_targets

        t_size = sample_hw(g, self.target_scale, self.target_aspect, grid)
        c_size = sample_hw(g, self.context_scale, self.context_aspect, grid)
        if not self.allow_overlap:
            # Guarantees the fallback (grid minus targets) keeps min_keep tokens; only bites in extreme configs.
            t_size = tuple(shrink_to_volume(list(t_size), (self.num_tokens - self.min_keep) // M))

        t_starts = sample_starts(g, (B, M), t_size, grid)  # [B, M, 2]
        c_starts = sample_starts(g, (B,), c_size, grid)  # [B, 2]
        targets = box_union(t_starts, t_size, grid)  # [B, H, W] union of the targets
        context = box_union(c_starts[:, None], c_size, grid)  # [B, H, W]
        if not self.allow_overlap:
            context &= ~targets
        bad = context.flatten(1).sum(dim=1) < self.min_keep  # [B]

        # Resampling cannot help when the context block itself is smaller than min_keep: go straight to the fallback.
        tries = _MAX_TRIES if c_size[0] * c_size[1] >= self.min_keep else 0
        for _ in range(tries):
            if not bad.any():
                break
            rows = bad.nonzero().squeeze(1)
            t_starts[rows] = sample_starts(g, (len(rows), M), t_size, grid)
            c_starts[rows] = sample_starts(g, (len(rows),), c_size, grid)
            targets[rows] = box_union(t_starts[rows], t_size, grid)
            context[rows] = box_union(c_starts[rows, None], c_size, grid)
            if not self.allow_overlap:
                context[rows] &= ~targets[rows]
            bad[rows] = context[rows].flatten(1).sum(dim=1) < self.min_keep
        if bad.any():
            context[bad] = ~targets[bad] if not self.allow_overlap else True

        context_idx = subset_to_shortest(context.flatten(1), torch.rand(B, H * W, generator=g))  # [B, Kc]
        # Target blocks are full rectangles of one shared size: their indices come straight from the corners, already
        # sorted because rows and columns both ascend.
        th, tw = t_size
        rows_ = t_starts[..., 0, None] + torch.arange(th)  # [B, M, th]
        cols_ = t_starts[..., 1, None] + torch.arange(tw)  # [B, M, tw]
        target_idx = (rows_[..., :, None] * W + cols_[..., None, :]).reshape(B, M, th * tw)  # [B, M, Kt]
        return [MaskSet(context_idx, target_idx)]


@dataclass(frozen=True)
class BlockSpec:
    """One V-JEPA mask config: ``num_blocks`` boxes whose union is the target, the rest of the clip is the context.

    Attributes:
        num_blocks: Boxes per sample.
        spatial_scale: Fraction of the ``H * W`` grid covered by ONE box.
        temporal_scale: Fraction of the ``T`` grid covered by one box; 1.0 makes tubes through the whole clip.
        aspect_ratio: Range of the box aspect ratio ``h / w``.
        temporal_anchor: Where the boxes sit in time: ``"random"`` (V-JEPA) or ``"end"`` (every box ends at the last
            time step, so the context holds the whole past of the clip and the target lies in its future: with
            ``temporal_scale=0.5`` the predictor predicts the second half of the clip from the first).
    """

    num_blocks: int
    spatial_scale: float
    temporal_scale: float = 1.0
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    temporal_anchor: str = "random"

    def __post_init__(self) -> None:
        # Normalise config values (lists from YAML, ints) so specs compare and hash consistently.
        object.__setattr__(self, "num_blocks", check_int("num_blocks", self.num_blocks, minimum=1))
        object.__setattr__(self, "spatial_scale", check_scale("spatial_scale", self.spatial_scale))
        object.__setattr__(self, "temporal_scale", check_scale("temporal_scale", self.temporal_scale))
        object.__setattr__(self, "aspect_ratio", check_range("aspect_ratio", self.aspect_ratio, upper=None))
        if self.temporal_anchor not in TEMPORAL_ANCHORS:
            raise ValueError(f"temporal_anchor must be one of {TEMPORAL_ANCHORS}, got {self.temporal_anchor!r}")


VJEPA_MASKS = (BlockSpec(num_blocks=8, spatial_scale=0.15), BlockSpec(num_blocks=2, spatial_scale=0.7))


class MultiBlock3DMasks:
    """V-JEPA 3D multi-block masks (tubes when ``temporal_scale == 1``) on a video token grid.

    For every spec: one box size per batch (spatial area ``spatial_scale * H * W`` with a sampled aspect ratio,
    temporal extent ``max(1, round(temporal_scale * T))``); per sample, ``num_blocks`` boxes at random positions
    (in time too, or ending at the last time step with ``temporal_anchor='end'``: the future predicted from the past).
    The target is the union of the boxes and the context its complement, so the two are always disjoint. A sample whose
    context keeps fewer than ``min_keep`` tokens is resampled; after ``_MAX_TRIES`` rounds its last boxes are dropped
    one by one until the context is large enough (a single box always leaves ``>= min_keep`` tokens, the box size is
    shrunk up front if needed). Context and target rows are then cut to the shortest in the batch by random subsets.

    Args:
        grid_size: ``(T, H, W)`` token grid.
        specs: One ``BlockSpec`` (or a mapping of its fields) per mask config; each gives one ``MaskSet``.
        min_keep: Minimum number of context tokens per sample (>= 1).
        seed: Base seed; masks are a function of ``(seed, step, batch_size)`` only.
    """

    def __init__(
        self,
        *,
        grid_size: tuple[int, int, int],
        specs: Sequence[BlockSpec] = VJEPA_MASKS,
        min_keep: int = 1,
        seed: int = 0,
    ) -> None:
        self.grid_size: tuple[int, int, int] = check_grid("grid_size", grid_size, 3)  # type: ignore[assignment]
        self.num_tokens = math.prod(self.grid_size)
        if isinstance(specs, (BlockSpec, Mapping)) or not isinstance(specs, Sequence) or len(specs) == 0:
            raise ValueError(f"specs must be a non-empty sequence of BlockSpec, got {specs!r}")
        parsed = []
        for spec in specs:
            if isinstance(spec, Mapping):
                spec = BlockSpec(**spec)
            if not isinstance(spec, BlockSpec):
                raise ValueError(f"specs entries must be BlockSpec or mappings, got {spec!r}")
            parsed.append(spec)
        self.specs: tuple[BlockSpec, ...] = tuple(parsed)
        self.min_keep = check_int("min_keep", min_keep, minimum=1)
        if self.min_keep > self.num_tokens - 1:
            raise ValueError(
                f"min_keep must be <= {self.num_tokens - 1} for grid_size={self.grid_size}, got {min_keep}"
            )
        self.seed = check_int("seed", seed)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(grid_size={self.grid_size}, specs={self.specs}, min_keep={self.min_keep}, "
            f"seed={self.seed})"
        )

    def __call__(self, batch_size: int, *, step: int) -> list[MaskSet]:
        """Sample the masks of one batch.

        Args:
            batch_size: Number of samples (B >= 1).
            step: Non-negative batch counter; with ``seed`` it fully determines the masks.

        Returns:
            One ``MaskSet`` per spec, in order: context ``# [B, Kc]``, target ``# [B, 1, Kt]``.
        """
        B = check_int("batch_size", batch_size, minimum=1)
        step = check_int("step", step, minimum=0)
        g = mask_generator(self.seed, step)
        return [self._sample_spec(g, spec, B) for spec in self.specs]

    def _sample_spec(self, g: torch.Generator, spec: BlockSpec, B: int) -> MaskSet:
        T, H, W = grid = self.grid_size
        n = spec.num_blocks
        t = min(max(1, round(spec.temporal_scale * T)), T)
        h, w = sample_hw(g, (spec.spatial_scale, spec.spatial_scale), spec.aspect_ratio, (H, W))
        size = shrink_to_volume([t, h, w], self.num_tokens - self.min_keep)

        starts = self._starts(g, (B, n), size, spec)  # [B, n, 3]
        targets = box_union(starts, size, grid).flatten(1)  # [B, N]
        bad = targets.sum(dim=1) > self.num_tokens - self.min_keep  # [B]
        for _ in range(_MAX_TRIES):
            if not bad.any():
                break
            rows = bad.nonzero().squeeze(1)
            starts[rows] = self._starts(g, (len(rows), n), size, spec)
            targets[rows] = box_union(starts[rows], size, grid).flatten(1)
            bad[rows] = targets[rows].sum(dim=1) > self.num_tokens - self.min_keep
        for b in bad.nonzero().flatten().tolist():
            # Drop the last boxes of this sample until the context is large enough; one box always is.
            for keep in range(n - 1, 0, -1):
                targets[b] = box_union(starts[b : b + 1, :keep], size, grid).flatten()
                if targets[b].sum() <= self.num_tokens - self.min_keep:
                    break

        context_idx, target_idx = split_to_shortest(g, targets)  # [B, Kc], [B, Kt]
        return MaskSet(context_idx, target_idx.unsqueeze(1))

    def _starts(self, g: torch.Generator, shape: tuple[int, int], size: list[int], spec: BlockSpec) -> torch.Tensor:
        starts = sample_starts(g, shape, size, self.grid_size)  # [*shape, 3] (t, row, col)
        if spec.temporal_anchor == "end":  # the same draws as "random", then every box pinned to the clip's end
            starts[..., 0] = self.grid_size[0] - size[0]
        return starts


def build_masks(*, grid_size: tuple[int, ...], seed: int, **kwargs: Any) -> MultiBlock2DMasks | MultiBlock3DMasks:
    """Build a mask generator from its grid: ``(H, W)`` gives I-JEPA 2D blocks, ``(T, H, W)`` V-JEPA 3D tubes.

    Args:
        grid_size: Token grid, 2 or 3 positive ints.
        seed: Base seed of the generator.
        **kwargs: The remaining keyword arguments of ``MultiBlock2DMasks`` or ``MultiBlock3DMasks``.
    """
    try:
        grid = tuple(grid_size)
    except TypeError:
        raise ValueError(f"grid_size must be a tuple of 2 or 3 positive ints, got {grid_size!r}") from None
    if len(grid) == 2:
        return MultiBlock2DMasks(grid_size=grid, seed=seed, **kwargs)  # type: ignore[arg-type]
    if len(grid) == 3:
        return MultiBlock3DMasks(grid_size=grid, seed=seed, **kwargs)  # type: ignore[arg-type]
    raise ValueError(f"grid_size must have 2 (image) or 3 (video) entries, got {grid_size!r}")
