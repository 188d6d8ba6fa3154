"""Sampling helpers of the JEPA mask generators (`objectives.masks`): the seeded generator, block sizes, positions
and unions on a token grid, and the cuts that give every row of a batch the same length.

Shapes: a grid is ``(H, W)`` or ``(T, H, W)``; block corners ``# [B, n, D]``; boolean grids ``# [B, *grid]``; index rows
``# [B, K]`` sorted ascending.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch


# ----------------------------------------------------------------------------------------------------------------------
# Sampling helpers
# ----------------------------------------------------------------------------------------------------------------------
def mask_generator(seed: int, step: int) -> torch.Generator:
    # A hash rather than ``seed * C + step``: nearby (seed, step) pairs never collide and the result always fits the
    # 63 bits that ``manual_seed`` accepts, whatever the sign or size of seed.
    # The key names the module's first home, jepa_world.masks: renaming it would change every mask stream.
    digest = hashlib.blake2b(f"jepa_world.masks:{seed}:{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + float(torch.rand((), generator=g)) * (hi - lo)


def sample_hw(
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


def shrink_to_volume(size: list[int], max_volume: int) -> list[int]:
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


def sample_starts(g: torch.Generator, shape: tuple[int, ...], size: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
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


def box_union(starts: torch.Tensor, size: Sequence[int], grid: Sequence[int]) -> torch.Tensor:
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


def subset_to_shortest(keep: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
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


def split_to_shortest(g: torch.Generator, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Context (False entries) and target (True entries) indices of ``# [B, N]``, each cut to its shortest row."""
    # Context and target are disjoint, so one draw of scores serves both cuts independently.
    scores = torch.rand(targets.shape, generator=g)  # [B, N]
    return subset_to_shortest(~targets, scores), subset_to_shortest(targets, scores)
