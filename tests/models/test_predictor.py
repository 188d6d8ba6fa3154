"""Mask predictor: shapes, mask tokens, positions, gradients."""

from __future__ import annotations

import pytest
import torch

import jepa_world
from jepa_world.models.predictor import MaskPredictor


def _pred(**kw) -> MaskPredictor:
    return jepa_world.create_model(
        "predictor_nano", **{"grid_size": (2, 4, 4), "embed_dim": 128, "depth": 2, "num_mask_tokens": 2, **kw}
    )


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
def test_shapes_and_gradients(pos_embed):
    pred = _pred(pos_embed=pos_embed)
    z = torch.randn(3, 7, 128, requires_grad=True)
    ctx = torch.stack([torch.randperm(32)[:7].sort().values for _ in range(3)])
    tgt = torch.stack([torch.randperm(32)[:10].view(2, 5).sort(-1).values for _ in range(3)])  # [B, M=2, Kt=5]
    out = pred(z, ctx, tgt, mask_index=1)
    assert out.shape == (3, 2, 5, 128)
    assert pred(z, ctx, tgt[:, 0]).shape == (3, 5, 128)
    out.sum().backward()
    assert z.grad.abs().sum() > 0
    assert pred.mask_tokens[1].grad.abs().sum() > 0
    assert pred.mask_tokens[0].grad is None


def test_target_positions_matter_and_mask_tokens_differ():
    torch.manual_seed(0)
    pred = _pred().eval()
    with torch.no_grad():
        pred.mask_tokens[1].normal_()
    z = torch.randn(1, 4, 128)
    ctx = torch.tensor([[0, 1, 2, 3]])
    a = pred(z, ctx, torch.tensor([[10, 20]]))
    b = pred(z, ctx, torch.tensor([[11, 21]]))
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, pred(z, ctx, torch.tensor([[10, 20]]), mask_index=1))


def test_target_blocks_are_independent():
    """Each of the M blocks is predicted from the context alone: block 0's prediction ignores block 1's indices."""
    torch.manual_seed(0)
    pred = _pred().eval()
    z = torch.randn(1, 4, 128)
    ctx = torch.tensor([[0, 1, 2, 3]])
    out1 = pred(z, ctx, torch.tensor([[[8, 9], [20, 21]]]))
    out2 = pred(z, ctx, torch.tensor([[[8, 9], [30, 31]]]))
    torch.testing.assert_close(out1[:, 0], out2[:, 0])


def test_bad_mask_index():
    pred = _pred()
    with pytest.raises(ValueError, match="mask_index=2"):
        pred(torch.randn(1, 2, 128), torch.tensor([[0, 1]]), torch.tensor([[2, 3]]), mask_index=2)
