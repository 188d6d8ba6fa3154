"""Position tables and RoPE against independent element-wise statements of the release conventions."""

from __future__ import annotations

import math

import pytest
import torch

from jepa_world.models.layers import (
    apply_rope,
    grid_coords,
    resize_pos_embed,
    rope_chunk_dim,
    rope_tables,
    sincos_2d,
    sincos_3d,
)


def _code(pos: float, dim: int) -> list[float]:
    """[sin | cos] of one position, omega_i = 1 / 10000^(i / (dim/2)), written out element by element."""
    omegas = [1.0 / 10000 ** (i / (dim / 2)) for i in range(dim // 2)]
    return [math.sin(pos * w) for w in omegas] + [math.cos(pos * w) for w in omegas]


@pytest.mark.parametrize("layout", ["ijepa", "vjepa"])
def test_sincos_2d_layout(layout):
    H, W, D = 3, 5, 16
    table = sincos_2d((H, W), D, layout=layout)
    assert table.shape == (H * W, D)
    for r in range(H):
        for c in range(W):
            first, second = (c, r) if layout == "ijepa" else (r, c)
            expected = torch.tensor(_code(first, D // 2) + _code(second, D // 2))
            torch.testing.assert_close(table[r * W + c], expected, atol=1e-6, rtol=0)


def test_sincos_2d_layouts_differ():
    assert not torch.allclose(sincos_2d((4, 6), 32, layout="ijepa"), sincos_2d((4, 6), 32, layout="vjepa"))


@pytest.mark.parametrize("uniform_power", [False, True])
def test_sincos_3d_layout(uniform_power):
    T, H, W, D = 2, 3, 4, 40
    table = sincos_3d((T, H, W), D, uniform_power=uniform_power)
    assert table.shape == (T * H * W, D)
    dt, dh, dw = (14, 14, 14) if uniform_power else (20, 10, 10)  # 2 * ceil(40 / 6) = 14, truncated to 40
    for t in range(T):
        for r in range(H):
            for c in range(W):
                expected = torch.tensor(_code(t, dt) + _code(r, dh) + _code(c, dw))[:D]
                torch.testing.assert_close(table[t * H * W + r * W + c], expected, atol=1e-6, rtol=0)


def test_resize_pos_embed_identity_and_shape():
    table = sincos_2d((4, 4), 32)[None]
    assert resize_pos_embed(table, (4, 4), (4, 4)) is table
    assert resize_pos_embed(table, (4, 4), (6, 8)).shape == (1, 48, 32)
    video = sincos_3d((2, 4, 4), 48)[None]
    out = resize_pos_embed(video, (2, 4, 4), (4, 4, 4))
    assert out.shape == (1, 64, 48)
    # Trilinear along time: frame 0 of the longer clip stays close to the original frame 0.
    assert torch.allclose(out[0, :16], video[0, :16], atol=0.3)


def test_grid_coords():
    idx = torch.tensor([[0, 5, 17, 23]])
    coords = grid_coords(idx, (2, 3, 4))  # 12 tokens per frame, rows of 4
    assert coords.tolist() == [[[0, 0, 0], [0, 1, 1], [1, 1, 1], [1, 2, 3]]]


def _rope_reference(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """V-JEPA 2 rotation, one channel at a time: channel c of an axis chunk uses frequency index c mod (d/2),
    and rotation pairs are (2j, 2j+1)."""
    B, _, N, Dh = x.shape
    d = rope_chunk_dim(Dh)
    half = d // 2
    omegas = [1.0 / 10000 ** (i / half) for i in range(half)]
    out = x.clone()
    for b in range(B):
        for n in range(N):
            for axis in range(3):
                p = float(coords[b, n, axis])
                base = axis * d
                for j in range(half):
                    c0, c1 = base + 2 * j, base + 2 * j + 1
                    a0, a1 = p * omegas[(2 * j) % half], p * omegas[(2 * j + 1) % half]
                    x0, x1 = x[b, :, n, c0], x[b, :, n, c1]
                    out[b, :, n, c0] = x0 * math.cos(a0) - x1 * math.sin(a0)
                    out[b, :, n, c1] = x1 * math.cos(a1) + x0 * math.sin(a1)
    return out


@pytest.mark.parametrize("head_dim", [16, 24, 64])
def test_rope_matches_release_convention(head_dim):
    torch.manual_seed(0)
    B, Hh, N = 2, 2, 5
    x = torch.randn(B, Hh, N, head_dim, dtype=torch.float64)
    idx = torch.stack([torch.randperm(2 * 3 * 4)[:N] for _ in range(B)])
    coords = grid_coords(idx, (2, 3, 4))
    cos, sin = rope_tables(coords, head_dim)
    got = apply_rope(x, cos.double(), sin.double())
    torch.testing.assert_close(got, _rope_reference(x, coords), atol=1e-5, rtol=1e-5)
    # channels past 3 * d are not rotated
    torch.testing.assert_close(got[..., 3 * rope_chunk_dim(head_dim) :], x[..., 3 * rope_chunk_dim(head_dim) :])


def test_rope_chunk_dim():
    assert rope_chunk_dim(64) == 20
    assert rope_chunk_dim(88) == 28  # ViT-g with 22 heads: 1408 / 22 = 64; 88 covers other widths
