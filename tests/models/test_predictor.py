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


def test_single_pass_mask_is_block_sparse():
    from jepa_world.models.predictor import single_pass_mask

    # Kc = 2 context tokens, M = 2 blocks of Kt = 2: rows/cols [c c | b1 b1 | b2 b2], True = may attend.
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 0, 0, 1, 1],
            [1, 1, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(single_pass_mask(2, 2, 2), expected)


def _explicit_single_pass(pred: MaskPredictor, z, ctx, tgt, mask_index: int) -> torch.Tensor:
    """Reference: each block alone in `[context, block m]`, with an explicit mask that hides the block from the
    context rows (the context then computes the same features in every pass)."""
    B, M, Kt = tgt.shape
    Kc = ctx.shape[1]
    per_block = _pred_like(pred, single_pass=False)
    mask = torch.ones(Kc + Kt, Kc + Kt, dtype=torch.bool)
    mask[:Kc, Kc:] = False
    outs = []
    for m in range(M):
        h = per_block.predictor_embed(z)
        q = per_block.mask_tokens[mask_index].expand(B, Kt, -1)
        ids = torch.cat([ctx, tgt[:, m]], dim=1)
        if per_block.predictor_pos_embed is not None:
            pos = per_block.predictor_pos_embed.expand(B, -1, -1)
            x = torch.cat([h, q], dim=1) + torch.gather(pos, 1, ids[..., None].expand(-1, -1, pos.shape[-1]))
            rope = None
        else:
            from jepa_world.models.layers import grid_coords, rope_tables

            x = torch.cat([h, q], dim=1)
            rope = rope_tables(grid_coords(ids, pred.grid_size), pred.predictor_embed_dim // pred.num_heads)
        for blk in per_block.predictor_blocks:
            x = blk(x, rope=rope, attn_mask=mask)
        outs.append(per_block.predictor_proj(per_block.predictor_norm(x[:, Kc:])))
    return torch.stack(outs, dim=1)


def _pred_like(pred: MaskPredictor, **kw) -> MaskPredictor:
    other = MaskPredictor(**{**pred.config, **kw}).eval()
    other.load_state_dict(pred.state_dict())
    return other


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
def test_single_pass_equals_its_explicit_reference(pos_embed):
    torch.manual_seed(0)
    pred = _pred(pos_embed=pos_embed, single_pass=True).eval()
    with torch.no_grad():
        for p in pred.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    z = torch.randn(3, 7, 128)
    ctx = torch.stack([torch.randperm(32)[:7] for _ in range(3)])
    tgt = torch.stack([torch.randperm(32)[:12].view(3, 4) for _ in range(3)])  # [B, M=3, Kt=4]
    with torch.no_grad():
        out = pred(z, ctx, tgt, mask_index=1)
        ref = _explicit_single_pass(pred, z, ctx, tgt, mask_index=1)
        per_block = _pred_like(pred, single_pass=False)(z, ctx, tgt, mask_index=1)
    assert out.shape == (3, 3, 4, 128)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # Different math from the releases' per-block pass (the context there also attends to the block's mask tokens).
    assert (out - per_block).abs().max() > 1e-3
    # One block alone: the single pass and its reference agree too, and blocks do not see each other.
    with torch.no_grad():
        changed = tgt.clone()
        changed[:, 2] = torch.stack([torch.randperm(32)[:4] for _ in range(3)])
        torch.testing.assert_close(pred(z, ctx, changed, mask_index=1)[:, :2], out[:, :2], atol=1e-5, rtol=1e-5)


def test_single_pass_with_activation_checkpointing_same_gradients():
    torch.manual_seed(0)
    pred = _pred(single_pass=True)
    ckpt = _pred_like(pred, act_checkpoint=True).train()
    z = torch.randn(2, 6, 128)
    ctx = torch.stack([torch.randperm(32)[:6] for _ in range(2)])
    tgt = torch.stack([torch.randperm(32)[:8].view(2, 4) for _ in range(2)])
    grads = []
    for model in (pred.train(), ckpt):
        model.zero_grad()
        model(z, ctx, tgt).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-6, rtol=1e-5)
