"""Tests for jepa_world.objectives.masks: I-JEPA 2D multi-block masks, V-JEPA 3D tube masks, apply_masks, MaskSet."""

from __future__ import annotations

import pickle

import pytest
import torch

from jepa_world.models.layers import apply_masks
from jepa_world.objectives.masks import (
    VJEPA_MASKS,
    BlockSpec,
    MaskSet,
    MultiBlock2DMasks,
    MultiBlock3DMasks,
    build_masks,
)

GRID_2D = (14, 14)
GRID_3D = (8, 14, 14)
STEPS = range(8)


def make(kind: str, **kwargs):
    if kind == "2d":
        return MultiBlock2DMasks(grid_size=GRID_2D, **kwargs)
    return MultiBlock3DMasks(grid_size=GRID_3D, **kwargs)


def num_tokens(gen) -> int:
    n = 1
    for s in gen.grid_size:
        n *= s
    return n


def to_grid(idx: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """Boolean grid of one index row: idx [K] -> [*grid], built independently of the code under test."""
    n = 1
    for s in grid:
        n *= s
    flat = torch.zeros(n, dtype=torch.bool)
    flat[idx] = True
    return flat.reshape(grid)


def rect_of(idx: torch.Tensor, width: int) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the bounding box of a set of row-major indices."""
    r, c = idx // width, idx % width
    top, left = int(r.min()), int(c.min())
    return top, left, int(r.max()) - top + 1, int(c.max()) - left + 1


def is_full_box(mask: torch.Tensor) -> tuple[bool, tuple[int, ...]]:
    """Whether a boolean grid is exactly one axis-aligned box, and that box's extents."""
    nz = mask.nonzero()  # [K, D], distinct cells
    extents = tuple(int(v) for v in nz.max(0).values - nz.min(0).values + 1)
    # K distinct cells inside their bounding box fill it iff K equals the box volume.
    volume = 1
    for e in extents:
        volume *= e
    return nz.shape[0] == volume, extents


# ----------------------------------------------------------------------------------------------------------------------
# Shapes, ranges, ordering
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_shapes_and_dtypes(kind):
    gen = make(kind)
    B = 6
    out = gen(B, step=3)
    assert isinstance(out, list)
    assert len(out) == (1 if kind == "2d" else len(VJEPA_MASKS))
    for ms in out:
        assert isinstance(ms, MaskSet)
        assert ms.context_idx.dtype == torch.int64 and ms.target_idx.dtype == torch.int64
        assert ms.context_idx.dim() == 2 and ms.context_idx.shape[0] == B
        assert ms.target_idx.dim() == 3 and ms.target_idx.shape[0] == B
        assert ms.target_idx.shape[1] == (4 if kind == "2d" else 1)
        assert ms.context_idx.shape[1] > 0 and ms.target_idx.shape[2] > 0


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_indices_in_range_sorted_unique(kind):
    gen = make(kind)
    N = num_tokens(gen)
    for step in STEPS:
        for ms in gen(8, step=step):
            for idx in (ms.context_idx, ms.target_idx.flatten(0, 1)):
                assert int(idx.min()) >= 0 and int(idx.max()) < N
                # strictly increasing along every row = sorted and unique
                assert bool((idx.diff(dim=-1) > 0).all())


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_context_and_targets_disjoint(kind):
    gen = make(kind)  # 2D default: allow_overlap=False
    for step in STEPS:
        for ms in gen(8, step=step):
            for b in range(ms.context_idx.shape[0]):
                assert not bool(torch.isin(ms.context_idx[b], ms.target_idx[b].flatten()).any())


def test_2d_overlap_allowed_keeps_the_full_context_block():
    gen = MultiBlock2DMasks(grid_size=GRID_2D, allow_overlap=True, context_scale=(0.5, 0.6))
    N = GRID_2D[0] * GRID_2D[1]
    overlapped = False
    for step in STEPS:
        (ms,) = gen(8, step=step)
        sizes = set()
        for b in range(8):
            ok, (h, w) = is_full_box(to_grid(ms.context_idx[b], GRID_2D))
            assert ok, "with allow_overlap the context must be the whole context block"
            sizes.add((h, w))
            assert 0.5 * N - max(h, w) / 2 <= h * w <= 0.6 * N + max(h, w) / 2
            assert abs(h - w) <= 1  # context_aspect (1, 1)
            overlapped |= bool(torch.isin(ms.context_idx[b], ms.target_idx[b].flatten()).any())
        assert len(sizes) == 1, "context block size must be shared across the batch"
    assert overlapped


# ----------------------------------------------------------------------------------------------------------------------
# min_keep and fallbacks
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "kwargs", "min_keep"),
    [
        # A small context block: without resampling, about 40% of these contexts would hold < min_keep tokens.
        ("2d", {"grid_size": (8, 8), "target_scale": (0.3, 0.4), "context_scale": (0.5, 0.6), "min_keep": 12}, 12),
        ("2d", {"grid_size": (10, 10), "target_scale": (0.2, 0.25), "context_scale": (0.4, 0.5), "min_keep": 15}, 15),
        # A context block smaller than min_keep: resampling never helps, the fallback (grid minus targets) must.
        ("2d", {"grid_size": (10, 10), "context_scale": (0.1, 0.1), "min_keep": 15}, 15),
        # Targets as large as the grid: only the up-front shrink can leave any context.
        ("2d", {"grid_size": (4, 4), "target_scale": (1.0, 1.0), "min_keep": 5}, 5),
        ("3d", {"grid_size": (4, 6, 6), "specs": [BlockSpec(num_blocks=3, spatial_scale=0.6)], "min_keep": 30}, 30),
        # Two blocks covering the whole clip: resampling cannot help, the fallback must.
        ("3d", {"grid_size": (2, 4, 4), "specs": [BlockSpec(num_blocks=2, spatial_scale=1.0)], "min_keep": 3}, 3),
        ("3d", {"grid_size": (2, 4, 4), "specs": [BlockSpec(num_blocks=4, spatial_scale=0.6)], "min_keep": 1}, 1),
        # Only boxes that coincide leave min_keep tokens: many samples exhaust resampling and must drop boxes.
        ("3d", {"grid_size": (2, 4, 4), "specs": [BlockSpec(num_blocks=3, spatial_scale=0.5)], "min_keep": 14}, 14),
    ],
)
def test_min_keep_respected(kind, kwargs, min_keep):
    gen = MultiBlock2DMasks(**kwargs) if kind == "2d" else MultiBlock3DMasks(**kwargs)
    for step in range(12):
        for ms in gen(8, step=step):
            assert ms.context_idx.shape[1] >= min_keep
            assert ms.target_idx.shape[2] >= 1
            for b in range(8):
                assert not bool(torch.isin(ms.context_idx[b], ms.target_idx[b].flatten()).any())


# ----------------------------------------------------------------------------------------------------------------------
# Block shapes
# ----------------------------------------------------------------------------------------------------------------------


def test_2d_target_blocks_share_one_size_within_scale_range():
    gen = MultiBlock2DMasks(grid_size=GRID_2D)
    H, W = GRID_2D
    sizes_over_steps = set()
    for step in STEPS:
        (ms,) = gen(8, step=step)
        sizes = set()
        for b in range(8):
            for m in range(4):
                ok, (h, w) = is_full_box(to_grid(ms.target_idx[b, m], GRID_2D))
                assert ok, "each target must be one full rectangle"
                sizes.add((h, w))
        assert len(sizes) == 1, f"target size must be shared across the batch, got {sizes}"
        ((h, w),) = sizes
        assert 0.15 * H * W - max(h, w) / 2 <= h * w <= 0.2 * H * W + max(h, w) / 2
        sizes_over_steps.add((h, w))
        # Positions are per sample: the 8 samples must not all share their target blocks.
        assert len({tuple(row.flatten().tolist()) for row in ms.target_idx}) > 1
    assert len(sizes_over_steps) > 1, "the block size should be resampled per batch"


def test_2d_aspect_ratio_is_height_over_width():
    gen = MultiBlock2DMasks(grid_size=(32, 32), target_scale=(0.1, 0.1), target_aspect=(2.0, 2.0), min_keep=1)
    (ms,) = gen(2, step=0)
    _, _, h, w = rect_of(ms.target_idx[0, 0], 32)
    assert abs(h / w - 2.0) < 0.35, (h, w)


def test_3d_blocks_are_boxes_of_shared_size():
    grid = (8, 12, 12)
    spec = BlockSpec(num_blocks=1, spatial_scale=0.3, temporal_scale=0.5)
    gen = MultiBlock3DMasks(grid_size=grid, specs=[spec])
    N = 8 * 12 * 12
    fronts = set()
    for step in STEPS:
        (ms,) = gen(8, step=step)
        extents = set()
        for b in range(8):
            target = to_grid(ms.target_idx[b, 0], grid)
            ok, ext = is_full_box(target)
            assert ok, "a single-block target must be one full box"
            extents.add(ext)
            fronts.add(int(target.nonzero()[:, 0].min()))
            # One block per sample: every row has the same size, nothing is cut, context is the exact complement.
            assert torch.equal(to_grid(ms.context_idx[b], grid), ~target)
        assert len(extents) == 1
        ((t, h, w),) = extents
        assert t == 4
        assert 0.3 * 144 - max(h, w) / 2 <= h * w <= 0.3 * 144 + max(h, w) / 2
        assert ms.context_idx.shape[1] + ms.target_idx.shape[2] == N
    assert len(fronts) > 1, "temporal positions should vary when the block is shorter than the clip"


def test_3d_boxes_anchored_at_the_end_predict_the_future_from_the_past():
    grid = (4, 8, 8)
    future = BlockSpec(num_blocks=1, spatial_scale=0.3, temporal_scale=0.5, temporal_anchor="end")
    gen = MultiBlock3DMasks(grid_size=grid, specs=[future])
    positions = set()
    for step in STEPS:
        (ms,) = gen(4, step=step)
        for b in range(4):
            target = to_grid(ms.target_idx[b, 0], grid)
            ok, (t, _, _) = is_full_box(target)
            assert ok and t == 2
            assert target[2:].any(dim=0).equal(target[2]) and not target[:2].any(), "the box is the last 2 time steps"
            assert target[2].equal(target[3]), "the same place in both future steps"
            positions.add(tuple(target[2].nonzero()[0].tolist()))
            assert torch.equal(to_grid(ms.context_idx[b], grid), ~target)  # the whole past is context
    assert len(positions) > 1, "spatial positions still vary"
    # Whole future frames: the context is exactly the first half of the clip.
    whole = BlockSpec(
        num_blocks=1, spatial_scale=1.0, temporal_scale=0.5, aspect_ratio=(1.0, 1.0), temporal_anchor="end"
    )
    (ms,) = MultiBlock3DMasks(grid_size=grid, specs=[whole])(3, step=0)
    assert torch.equal(ms.context_idx, torch.arange(128)[None].expand(3, -1))
    assert torch.equal(ms.target_idx[:, 0], torch.arange(128, 256)[None].expand(3, -1))
    # The default ("random") stream is unchanged by the option: same draws, only the time starts are pinned.
    rand = BlockSpec(num_blocks=1, spatial_scale=0.3, temporal_scale=0.5)
    a, b = MultiBlock3DMasks(grid_size=grid, specs=[rand])(4, step=5), gen(4, step=5)
    assert torch.equal(a[0].target_idx % 64, b[0].target_idx % 64)
    with pytest.raises(ValueError, match="temporal_anchor must be one of"):
        BlockSpec(num_blocks=1, spatial_scale=0.3, temporal_anchor="start")


def test_3d_targets_are_tubes_exactly_when_nothing_is_cut():
    gen = MultiBlock3DMasks(grid_size=GRID_3D)
    for step in STEPS:
        for ms in gen(1, step=step):  # B=1: no cut to the shortest row
            target = to_grid(ms.target_idx[0, 0], GRID_3D)  # [T, H, W]
            tube = target.all(dim=0, keepdim=True).expand_as(target)
            assert torch.equal(target, tube), "(t, r, c) is a target iff (r, c) is a target at every t"
            assert torch.equal(to_grid(ms.context_idx[0], GRID_3D), ~target)


def test_3d_tubes_survive_the_cut_spatially():
    gen = MultiBlock3DMasks(grid_size=GRID_3D)
    _, H, W = GRID_3D
    for step in STEPS:
        for ms in gen(8, step=step):
            for b in range(8):
                ctx_rc = set((ms.context_idx[b] % (H * W)).tolist())
                tgt_rc = set((ms.target_idx[b, 0] % (H * W)).tolist())
                assert ctx_rc.isdisjoint(tgt_rc), "a spatial position is either masked in every frame or in none"


# ----------------------------------------------------------------------------------------------------------------------
# The cut to the shortest row is a random subset, not a truncation
# ----------------------------------------------------------------------------------------------------------------------


def _check_not_truncated(kept: torch.Tensor, full: torch.Tensor) -> bool:
    """Whether a row was cut, asserting the dropped tokens are not just the tail of the full row."""
    kept_set, full_set = set(kept.tolist()), set(full.nonzero().flatten().tolist())
    assert kept_set <= full_set
    dropped = full_set - kept_set
    if dropped:
        assert min(dropped) < max(kept_set), "cut dropped only the tail: truncation, not a random subset"
    return bool(dropped)


def test_2d_cut_is_a_random_subset():
    # Context block = whole grid, so the uncut context is exactly the complement of the targets.
    gen = MultiBlock2DMasks(grid_size=GRID_2D, context_scale=(1.0, 1.0))
    cut_rows = 0
    for step in STEPS:
        (ms,) = gen(8, step=step)
        for b in range(8):
            full = ~to_grid(ms.target_idx[b].flatten(), GRID_2D).flatten()
            cut_rows += _check_not_truncated(ms.context_idx[b], full)
    assert cut_rows > 0


def test_3d_cut_is_a_random_subset():
    gen = MultiBlock3DMasks(grid_size=GRID_3D)
    T, H, W = GRID_3D
    cut_rows = 0
    for step in STEPS:
        for ms in gen(8, step=step):
            for b in range(8):
                # Tubes: the uncut set is every frame of the spatial positions that appear at least once.
                for kept in (ms.context_idx[b], ms.target_idx[b, 0]):
                    spatial = torch.zeros(H * W, dtype=torch.bool)
                    spatial[kept % (H * W)] = True
                    full = spatial.expand(T, H * W).flatten()
                    cut_rows += _check_not_truncated(kept, full)
    assert cut_rows > 0


# ----------------------------------------------------------------------------------------------------------------------
# Determinism
# ----------------------------------------------------------------------------------------------------------------------


def _same(a: list[MaskSet], b: list[MaskSet]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x.context_idx, y.context_idx) and torch.equal(x.target_idx, y.target_idx) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_determinism_in_seed_and_step(kind):
    gen = make(kind, seed=7)
    ref = gen(8, step=5)
    assert _same(gen(8, step=5), ref)
    assert _same(make(kind, seed=7)(8, step=5), ref)  # no hidden state: a fresh instance (a resumed run) agrees
    # The global RNG neither drives nor is consumed by the masks.
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert _same(gen(8, step=5), ref)
    assert torch.equal(torch.get_rng_state(), state)
    assert not _same(gen(8, step=6), ref)
    assert not _same(make(kind, seed=8)(8, step=5), ref)


# ----------------------------------------------------------------------------------------------------------------------
# apply_masks and MaskSet
# ----------------------------------------------------------------------------------------------------------------------


def test_apply_masks_matches_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20, 5, generator=g)
    idx2 = torch.randint(0, 20, (3, 7), generator=g)
    idx3 = torch.randint(0, 20, (3, 2, 7), generator=g)
    out2, out3 = apply_masks(x, idx2), apply_masks(x, idx3)
    assert out2.shape == (3, 7, 5) and out3.shape == (3, 2, 7, 5)
    for b in range(3):
        for k in range(7):
            assert torch.equal(out2[b, k], x[b, idx2[b, k]])
            for m in range(2):
                assert torch.equal(out3[b, m, k], x[b, idx3[b, m, k]])


def test_apply_masks_with_generated_masks_and_bad_inputs():
    (ms,) = MultiBlock2DMasks(grid_size=GRID_2D)(4, step=0)
    x = torch.arange(4 * 196, dtype=torch.float32).reshape(4, 196, 1)
    assert torch.equal(apply_masks(x, ms.context_idx)[..., 0] % 196, ms.context_idx.float())
    assert apply_masks(x, ms.target_idx).shape == (*ms.target_idx.shape, 1)
    with pytest.raises(ValueError, match="x must be"):
        apply_masks(x[..., 0], ms.context_idx)
    with pytest.raises(ValueError, match="batch size"):
        apply_masks(x[:2], ms.context_idx)
    with pytest.raises(ValueError, match="idx must be"):
        apply_masks(x, ms.context_idx[0])


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_maskset_select_and_to(kind):
    ms = make(kind)(6, step=1)[0]
    part = ms.select(slice(2, 5))
    assert torch.equal(part.context_idx, ms.context_idx[2:5])
    assert torch.equal(part.target_idx, ms.target_idx[2:5])
    assert part.batch_size == 3
    moved = ms.to("meta")
    assert moved.context_idx.device.type == "meta" and moved.target_idx.device.type == "meta"
    assert moved.context_idx.shape == ms.context_idx.shape and moved.target_idx.shape == ms.target_idx.shape
    # Built in DataLoader workers: must survive the trip to the main process.
    clone = pickle.loads(pickle.dumps(ms))
    assert torch.equal(clone.context_idx, ms.context_idx) and torch.equal(clone.target_idx, ms.target_idx)
    back = ms.to(torch.device("cpu"))
    assert torch.equal(back.context_idx, ms.context_idx) and torch.equal(back.target_idx, ms.target_idx)
    with pytest.raises(TypeError, match="rows"):
        ms.select(2)
    with pytest.raises(ValueError, match="target_idx"):
        MaskSet(ms.context_idx, ms.target_idx[:, 0])
    with pytest.raises(ValueError, match="batch sizes"):
        MaskSet(ms.context_idx[:2], ms.target_idx)


# ----------------------------------------------------------------------------------------------------------------------
# Argument validation and the builder
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: MultiBlock2DMasks(grid_size=(0, 14)), "grid_size"),
        (lambda: MultiBlock2DMasks(grid_size=(14, 14, 14)), "grid_size"),
        (lambda: MultiBlock2DMasks(grid_size=GRID_2D, num_targets=0), "num_targets"),
        (lambda: MultiBlock2DMasks(grid_size=GRID_2D, target_scale=(0.0, 0.2)), "target_scale"),
        (lambda: MultiBlock2DMasks(grid_size=GRID_2D, target_scale=(0.3, 0.2)), "target_scale"),
        (lambda: MultiBlock2DMasks(grid_size=GRID_2D, context_scale=(0.85, 1.5)), "context_scale"),
        (lambda: MultiBlock2DMasks(grid_size=GRID_2D, target_aspect=(-1.0, 1.5)), "target_aspect"),
        (lambda: MultiBlock2DMasks(grid_size=GRID_2D, context_aspect=(2.0, 1.0)), "context_aspect"),
        (lambda: MultiBlock2DMasks(grid_size=GRID_2D, min_keep=0), "min_keep"),
        (lambda: MultiBlock2DMasks(grid_size=(4, 4), min_keep=13), "min_keep"),
        (lambda: MultiBlock2DMasks(grid_size=GRID_2D)(0, step=0), "batch_size"),
        (lambda: MultiBlock2DMasks(grid_size=GRID_2D)(4, step=-1), "step"),
        (lambda: MultiBlock3DMasks(grid_size=(8, 14)), "grid_size"),
        (lambda: MultiBlock3DMasks(grid_size=(8, -1, 14)), "grid_size"),
        (lambda: MultiBlock3DMasks(grid_size=GRID_3D, specs=[]), "specs"),
        (lambda: MultiBlock3DMasks(grid_size=GRID_3D, min_keep=0), "min_keep"),
        (lambda: MultiBlock3DMasks(grid_size=(1, 2, 2), min_keep=4), "min_keep"),
        (lambda: MultiBlock3DMasks(grid_size=GRID_3D)(0, step=0), "batch_size"),
        (lambda: BlockSpec(num_blocks=0, spatial_scale=0.15), "num_blocks"),
        (lambda: BlockSpec(num_blocks=8, spatial_scale=0.0), "spatial_scale"),
        (lambda: BlockSpec(num_blocks=8, spatial_scale=1.2), "spatial_scale"),
        (lambda: BlockSpec(num_blocks=8, spatial_scale=0.15, temporal_scale=0.0), "temporal_scale"),
        (lambda: BlockSpec(num_blocks=8, spatial_scale=0.15, aspect_ratio=(1.5, 0.75)), "aspect_ratio"),
        (lambda: build_masks(grid_size=(14,), seed=0), "grid_size"),
    ],
)
def test_bad_arguments_raise_value_error(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_build_masks_dispatches_on_grid_rank():
    gen2 = build_masks(grid_size=[14, 14], seed=3, num_targets=2)
    assert isinstance(gen2, MultiBlock2DMasks)
    assert _same(gen2(4, step=1), MultiBlock2DMasks(grid_size=(14, 14), seed=3, num_targets=2)(4, step=1))
    assert gen2(4, step=1)[0].target_idx.shape[1] == 2
    specs = [{"num_blocks": 2, "spatial_scale": 0.3, "aspect_ratio": [0.75, 1.5]}]
    gen3 = build_masks(grid_size=(4, 8, 8), seed=3, specs=specs)
    assert isinstance(gen3, MultiBlock3DMasks)
    assert gen3.specs == (BlockSpec(num_blocks=2, spatial_scale=0.3),)
    direct = MultiBlock3DMasks(grid_size=(4, 8, 8), seed=3, specs=[BlockSpec(num_blocks=2, spatial_scale=0.3)])
    assert _same(gen3(4, step=1), direct(4, step=1))


def test_mask_stream_key_is_stable():
    # Masks are a pure function of (seed, step) through this key: changing it silently changes every run's masks
    # (and a resumed run would no longer replay the masks of the original one).
    import hashlib

    from jepa_world.objectives.mask_sampling import mask_generator

    for seed, step in ((0, 0), (3, 7), (-1, 10**9)):
        digest = hashlib.blake2b(f"jepa_world.masks:{seed}:{step}".encode(), digest_size=8).digest()
        assert mask_generator(seed, step).initial_seed() == int.from_bytes(digest, "little") & ((1 << 63) - 1)
