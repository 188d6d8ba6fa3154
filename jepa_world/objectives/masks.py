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

import hashlib
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
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


# ----------------------------------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------------------------------
def _check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_grid(name: str, grid_size: Any, ndim: int) -> tuple[int, ...]:
    error = ValueError(f"{name} must be a tuple of {ndim} positive ints, got {grid_size!r}")
    try:
        grid = tuple(grid_size)
        if any(isinstance(v, bool) for v in grid):
            raise error
        grid = tuple(operator.index(v) for v in grid)
    except TypeError:
        raise error from None
    if len(grid) != ndim or min(grid) < 1:
        raise error
    return grid


def _check_range(name: str, value: Any, *, upper: float | None) -> tuple[float, float]:
    """A ``(lo, hi)`` pair with ``0 < lo <= hi`` (and ``hi <= upper`` when given)."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (lo, hi) pair of numbers, got {value!r}") from None
    ok = math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo <= hi and (upper is None or hi <= upper)
    if not ok:
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must satisfy 0 < lo <= hi{bound}, got {value!r}")
    return lo, hi


def _check_scale(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------------------------------------------
# Sampling helpers
# ----------------------------------------------------------------------------------------------------------------------
def _generator(seed: int, step: int) -> torch.Generator:
    # A hash rather than ``seed * C + step``: nearby (seed, step) pairs never collide and the result always fits the
    # 63 bits that ``manual_seed`` accepts, whatever the sign or size of seed.
    # The key names the module's first home, jepa_world.masks: renaming it would change every mask stream.
    digest = hashlib.blake2b(f"jepa_world.masks:{seed}:{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + float(torch.rand((), generator=g)) * (hi - lo)


def _sample_hw(
    g: torch.Generator, scale: tuple[float, float], aspect: tuple[float, float], grid_hw: tuple[int, int]
) -> tuple[int, int]:
    """Sample one block size ``(h, w)``: area ``scale * H * W`` and aspect ratio ``h / w``, clamped to the grid."""
    H, W = grid_hw
    area = _uniform(g, *scale) * H * W
    # Log-uniform so that a range like (0.75, 1.5) is symmetric between tall and wide blocks.
    ar = math.exp(_uniform(g, math.log(aspect[0]), math.log(aspect[1])))
    h = min(max(round(math.sqrt(area * ar)), 1), H)
    # w from the rounded h keeps h * w closer to the requested area than rounding both sides independently.
    w = min(max(round(area / h), 1), W)
    return h, w


def _shrink_to_volume(size: list[int], max_volume: int) -> list[int]:
    """Shrink a block ``[h, w]`` or ``[t, h, w]`` until it has <= max_volume (>= 1) tokens.

    The larger spatial side goes first; the temporal side only once the block is a single spatial token.
    """
    size = list(size)
    while math.prod(size) > max_volume:
        h_dim, w_dim = len(size) - 2, len(size) - 1
        d = h_dim if size[h_dim] >= size[w_dim] else w_dim
        if size[d] == 1:
            d = 0  # 3D only: in 2D a 1x1 block has volume 1 <= max_volume
        size[d] -= 1
    return size


def _sample_starts(
    g: torch.Generator, shape: tuple[int, ...], size: Sequence[int], grid: Sequence[int]
) -> torch.Tensor:
    """Uniform top-left(-front) corners of blocks of ``size`` that fit inside ``grid``: ``# [*shape, D]`` int64."""
    return torch.stack([torch.randint(0, n - s + 1, shape, generator=g) for s, n in zip(size, grid)], dim=-1)


def _intervals(starts: torch.Tensor, size: Sequence[int], grid: Sequence[int]) -> list[torch.Tensor]:
    """Per-axis 0/1 indicators of the blocks: starts ``# [B, n, D]`` -> D tensors ``# [B, n, grid[d]]`` (float)."""
    out = []
    for d, (s, g) in enumerate(zip(size, grid)):
        pos = torch.arange(g)
        start = starts[..., d, None]  # [B, n, 1]
        out.append(((pos >= start) & (pos < start + s)).float())
    return out


def _box_union(starts: torch.Tensor, size: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
    """Boolean grid covered by the union of n boxes per sample: starts ``# [B, n, D]`` -> ``# [B, *grid]``.

    A box is the outer product of one interval per axis, so the number of boxes covering each cell is a sum over n of
    outer products: one batched matmul over the last axis instead of materialising ``[B, n, *grid]`` booleans.
    """
    B = starts.shape[0]
    axes = _intervals(starts, size, grid)
    lead = axes[0]  # [B, n, G0]
    for a in axes[1:-1]:
        lead = (lead[..., :, None] * a[..., None, :]).flatten(2)  # [B, n, G0*...*Gd]
    count = torch.bmm(lead.transpose(1, 2), axes[-1])  # [B, prod(grid[:-1]), G_last]
    return (count > 0).reshape(B, *grid)


def _subset_to_shortest(keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Indices of the True entries of every row, cut to the shortest row: keep ``# [B, N]`` bool -> ``# [B, K]``.

    The cut keeps a uniformly RANDOM subset of each row (the K True entries with the lowest ``scores``, uniform random
    numbers ``# [B, N]``), then sorts it. Truncating the tail instead would always drop the last tokens of the grid
    (bottom rows, last frames) and bias what is seen or predicted.
    """
    counts = keep.sum(dim=1)  # [B]
    k = int(counts.min())
    if bool((counts == k).all()):
        return keep.nonzero()[:, 1].reshape(keep.shape[0], k)  # row-major, so already sorted
    scores = scores.masked_fill(~keep, 2.0)  # never chosen: every row has >= k True entries, all scoring < 1
    idx = scores.topk(k, dim=1, largest=False, sorted=False).indices  # [B, K]
    # Scatter back to a boolean grid and read it row-major: sorts the indices faster than a sort does.
    return torch.zeros_like(keep).scatter_(1, idx, True).nonzero()[:, 1].reshape(keep.shape[0], k)


def _split_to_shortest(g: torch.Generator, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Context (False entries) and target (True entries) indices of ``# [B, N]``, each cut to its shortest row."""
    # Context and target are disjoint, so one draw of scores serves both cuts independently.
    scores = torch.rand(targets.shape, generator=g)  # [B, N]
    return _subset_to_shortest(~targets, scores), _subset_to_shortest(targets, scores)


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
        self.grid_size: tuple[int, int] = _check_grid("grid_size", grid_size, 2)  # type: ignore[assignment]
        self.num_tokens = self.grid_size[0] * self.grid_size[1]
        self.num_targets = _check_int("num_targets", num_targets, minimum=1)
        self.target_scale = _check_range("target_scale", target_scale, upper=1.0)
        self.target_aspect = _check_range("target_aspect", target_aspect, upper=None)
        self.context_scale = _check_range("context_scale", context_scale, upper=1.0)
        self.context_aspect = _check_range("context_aspect", context_aspect, upper=None)
        self.allow_overlap = bool(allow_overlap)
        self.min_keep = _check_int("min_keep", min_keep, minimum=1)
        # Worst case the fallback context is the grid minus M one-token targets (or the whole grid with overlap).
        max_keep = self.num_tokens if self.allow_overlap else self.num_tokens - self.num_targets
        if self.min_keep > max_keep:
            raise ValueError(
                f"min_keep must be <= {max_keep} for grid_size={self.grid_size} and num_targets={self.num_targets}, "
                f"got {self.min_keep}"
            )
        self.seed = _check_int("seed", seed)

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
        B = _check_int("batch_size", batch_size, minimum=1)
        step = _check_int("step", step, minimum=0)
        g = _generator(self.seed, step)
        H, W = grid = self.grid_size
        M = self.num_targets

        t_size = _sample_hw(g, self.target_scale, self.target_aspect, grid)
        c_size = _sample_hw(g, self.context_scale, self.context_aspect, grid)
        if not self.allow_overlap:
            # Guarantees the fallback (grid minus targets) keeps min_keep tokens; only bites in extreme configs.
            t_size = tuple(_shrink_to_volume(list(t_size), (self.num_tokens - self.min_keep) // M))

        t_starts = _sample_starts(g, (B, M), t_size, grid)  # [B, M, 2]
        c_starts = _sample_starts(g, (B,), c_size, grid)  # [B, 2]
        targets = _box_union(t_starts, t_size, grid)  # [B, H, W] union of the targets
        context = _box_union(c_starts[:, None], c_size, grid)  # [B, H, W]
        if not self.allow_overlap:
            context &= ~targets
        bad = context.flatten(1).sum(dim=1) < self.min_keep  # [B]

        # Resampling cannot help when the context block itself is smaller than min_keep: go straight to the fallback.
        tries = _MAX_TRIES if c_size[0] * c_size[1] >= self.min_keep else 0
        for _ in range(tries):
            if not bad.any():
                break
            rows = bad.nonzero().squeeze(1)
            t_starts[rows] = _sample_starts(g, (len(rows), M), t_size, grid)
            c_starts[rows] = _sample_starts(g, (len(rows),), c_size, grid)
            targets[rows] = _box_union(t_starts[rows], t_size, grid)
            context[rows] = _box_union(c_starts[rows, None], c_size, grid)
            if not self.allow_overlap:
                context[rows] &= ~targets[rows]
            bad[rows] = context[rows].flatten(1).sum(dim=1) < self.min_keep
        if bad.any():
            context[bad] = ~targets[bad] if not self.allow_overlap else True

        context_idx = _subset_to_shortest(context.flatten(1), torch.rand(B, H * W, generator=g))  # [B, Kc]
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
    """

    num_blocks: int
    spatial_scale: float
    temporal_scale: float = 1.0
    aspect_ratio: tuple[float, float] = (0.75, 1.5)

    def __post_init__(self) -> None:
        # Normalise config values (lists from YAML, ints) so specs compare and hash consistently.
        object.__setattr__(self, "num_blocks", _check_int("num_blocks", self.num_blocks, minimum=1))
        object.__setattr__(self, "spatial_scale", _check_scale("spatial_scale", self.spatial_scale))
        object.__setattr__(self, "temporal_scale", _check_scale("temporal_scale", self.temporal_scale))
        object.__setattr__(self, "aspect_ratio", _check_range("aspect_ratio", self.aspect_ratio, upper=None))


VJEPA_MASKS = (BlockSpec(num_blocks=8, spatial_scale=0.15), BlockSpec(num_blocks=2, spatial_scale=0.7))


class MultiBlock3DMasks:
    """V-JEPA 3D multi-block masks (tubes when ``temporal_scale == 1``) on a video token grid.

    For every spec: one box size per batch (spatial area ``spatial_scale * H * W`` with a sampled aspect ratio,
    temporal extent ``max(1, round(temporal_scale * T))``); per sample, ``num_blocks`` boxes at random positions. The
    target is the union of the boxes and the context its complement, so the two are always disjoint. A sample whose
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
        self.grid_size: tuple[int, int, int] = _check_grid("grid_size", grid_size, 3)  # type: ignore[assignment]
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
        self.min_keep = _check_int("min_keep", min_keep, minimum=1)
        if self.min_keep > self.num_tokens - 1:
            raise ValueError(
                f"min_keep must be <= {self.num_tokens - 1} for grid_size={self.grid_size}, got {min_keep}"
            )
        self.seed = _check_int("seed", seed)

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
        B = _check_int("batch_size", batch_size, minimum=1)
        step = _check_int("step", step, minimum=0)
        g = _generator(self.seed, step)
        return [self._sample_spec(g, spec, B) for spec in self.specs]

    def _sample_spec(self, g: torch.Generator, spec: BlockSpec, B: int) -> MaskSet:
        T, H, W = grid = self.grid_size
        n = spec.num_blocks
        t = min(max(1, round(spec.temporal_scale * T)), T)
        h, w = _sample_hw(g, (spec.spatial_scale, spec.spatial_scale), spec.aspect_ratio, (H, W))
        size = _shrink_to_volume([t, h, w], self.num_tokens - self.min_keep)

        starts = _sample_starts(g, (B, n), size, grid)  # [B, n, 3]
        targets = _box_union(starts, size, grid).flatten(1)  # [B, N]
        bad = targets.sum(dim=1) > self.num_tokens - self.min_keep  # [B]
        for _ in range(_MAX_TRIES):
            if not bad.any():
                break
            rows = bad.nonzero().squeeze(1)
            starts[rows] = _sample_starts(g, (len(rows), n), size, grid)
            targets[rows] = _box_union(starts[rows], size, grid).flatten(1)
            bad[rows] = targets[rows].sum(dim=1) > self.num_tokens - self.min_keep
        for b in bad.nonzero().flatten().tolist():
            # Drop the last boxes of this sample until the context is large enough; one box always is.
            for keep in range(n - 1, 0, -1):
                targets[b] = _box_union(starts[b : b + 1, :keep], size, grid).flatten()
                if targets[b].sum() <= self.num_tokens - self.min_keep:
                    break

        context_idx, target_idx = _split_to_shortest(g, targets)  # [B, Kc], [B, Kt]
        return MaskSet(context_idx, target_idx.unsqueeze(1))


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
