"""Encoder: shapes and gradients for images and videos, masking, any resolution, the registry presets."""

from __future__ import annotations

import math

import pytest
import torch

import jepa_world
from jepa_world.models.predictor import MaskPredictor
from jepa_world.models.vit import VisionTransformer


def _tiny(**kw) -> VisionTransformer:
    return jepa_world.create_model("vit_nano", depth=2, **{"img_size": 32, "patch_size": 8, **kw})


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
@pytest.mark.parametrize("num_frames", [1, 4])
def test_shapes_and_gradients(num_frames, pos_embed):
    model = _tiny(num_frames=num_frames, pos_embed=pos_embed)
    x = torch.randn(2, 3, num_frames, 32, 32) if num_frames > 1 else torch.randn(2, 3, 32, 32)
    n = 16 * (num_frames // 2 if num_frames > 1 else 1)
    z = model(x)
    assert z.shape == (2, n, 128)
    z.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
def test_context_encoder_runs_only_on_kept_tokens(pos_embed):
    torch.manual_seed(0)
    model = _tiny(num_frames=4, pos_embed=pos_embed).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    idx = torch.tensor([[0, 3, 9, 20, 31], [1, 2, 5, 17, 30]])
    z = model(x, idx)
    assert z.shape == (2, 5, 128)
    # Keeping every token is the same as no mask.
    all_idx = torch.arange(32)[None].expand(2, -1)
    torch.testing.assert_close(model(x, all_idx), model(x), atol=1e-5, rtol=1e-5)
    # The masked encoding is NOT the full encoding gathered: attention only sees the kept tokens.
    assert not torch.allclose(z, model(x)[torch.arange(2)[:, None], idx], atol=1e-3)
    # ...but it equals encoding an input whose other tokens have no influence: perturb a dropped patch.
    x2 = x.clone()
    x2[:, :, 0:2, 8:16, 0:8] += 5.0  # token index 1 (t=0, row 1, col 0) is dropped in sample 0
    kept0 = set(idx[0].tolist())
    assert 4 not in kept0
    torch.testing.assert_close(model(x2, idx)[0], z[0], atol=1e-5, rtol=1e-5)


def test_any_resolution_and_clip_length():
    model = _tiny(num_frames=4)
    assert model(torch.randn(1, 3, 8, 48, 40)).shape == (1, 4 * 6 * 5, 128)
    with pytest.raises(ValueError, match="patch_size=8 does not divide"):
        model(torch.randn(1, 3, 4, 36, 32))
    with pytest.raises(ValueError, match="not a multiple of tubelet_size"):
        model(torch.randn(1, 3, 3, 32, 32))


def test_image_into_video_model_repeats_frame():
    model = _tiny(num_frames=4).eval()
    img = torch.randn(2, 3, 32, 32)
    clip = img.unsqueeze(2).expand(-1, -1, 2, -1, -1)
    torch.testing.assert_close(model(img), model(clip))


@pytest.mark.parametrize("pos_embed", ["sincos", "rope"])
@pytest.mark.parametrize("num_frames", [1, 4])
def test_prefix_then_suffix_is_the_whole_forward(num_frames, pos_embed):
    torch.manual_seed(0)
    model = jepa_world.create_model("vit_nano", depth=3, img_size=32, patch_size=8, num_frames=num_frames,
                                    pos_embed=pos_embed).eval()  # fmt: skip
    x = torch.randn(2, 3, 32, 32)  # an image (a video model reads it as one repeated tubelet)
    full = model(x)
    for k in range(4):
        z, grid = model.forward_prefix(x, k)
        assert z.shape == full.shape and grid == ((1, 4, 4) if num_frames > 1 else (4, 4))
        torch.testing.assert_close(model.forward_suffix(z, k, grid), full, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(model.forward_suffix(model.forward_prefix(x, 1)[0], 2, grid), full, atol=1e-3)
    with pytest.raises(ValueError, match=r"num_blocks=4 must be in \[0, depth=3\]"):
        model.forward_prefix(x, 4)
    with pytest.raises(ValueError, match=r"start=-1 must be in \[0, depth=3\]"):
        model.forward_suffix(full, -1, grid)


def test_bad_args():
    with pytest.raises(ValueError, match="pos_embed"):
        VisionTransformer(pos_embed="learned")
    with pytest.raises(ValueError, match="num_frames=3"):
        VisionTransformer(num_frames=3, tubelet_size=2)
    with pytest.raises(ValueError, match="does not divide"):
        VisionTransformer(img_size=30, patch_size=16)
    with pytest.raises(ValueError, match="num_heads"):
        VisionTransformer(embed_dim=100, num_heads=3, depth=1)


@pytest.mark.parametrize(
    ("name", "width", "depth", "heads"),
    [
        ("vit_tiny", 192, 12, 3),
        ("vit_small", 384, 12, 6),
        ("vit_base", 768, 12, 12),
        ("vit_large", 1024, 24, 16),
        ("vit_huge", 1280, 32, 16),
        ("vit_giant", 1408, 40, 16),
    ],
)
def test_presets_match_the_release_sizes(name, width, depth, heads):
    # Build on the meta device: no memory, instant, same module structure.
    with torch.device("meta"):
        model = jepa_world.create_model(name, img_size=32, patch_size=16)
    assert model.embed_dim == width and len(model.blocks) == depth and model.num_heads == heads
    assert model.blocks[0].mlp.fc1.out_features == (6144 if name == "vit_giant" else 4 * width)
    assert model.blocks[0].norm1.eps == 1e-6


def test_registry_suggests_close_names():
    assert "vit_small" in jepa_world.list_models("vit_*")
    with pytest.raises(ValueError, match="did you mean 'vit_small'"):
        jepa_world.create_model("vit_smal")


def test_release_init_rescales_output_projections():
    torch.manual_seed(0)
    model = jepa_world.create_model("vit_nano", depth=4, img_size=32, patch_size=8)
    stds = [blk.mlp.fc2.weight.std().item() for blk in model.blocks]
    # block i is divided by sqrt(2 (i + 1)): the ratio of block 3 to block 0 is 1/2
    assert stds[3] / stds[0] == pytest.approx(0.5, rel=0.15)
    assert all(b.abs().sum() == 0 for b in (model.blocks[0].attn.qkv.bias, model.blocks[0].mlp.fc1.bias))


def test_activation_checkpointing_same_gradients():
    torch.manual_seed(0)
    a = _tiny(num_frames=4)
    b = _tiny(num_frames=4, act_checkpoint=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    a(x).sum().backward()
    b(x).sum().backward()
    torch.testing.assert_close(a.blocks[0].attn.qkv.weight.grad, b.blocks[0].attn.qkv.weight.grad)


@pytest.mark.parametrize("video", [False, True])
def test_bf16_rope_encoder_and_predictor(video):
    # RoPE tables are built in float32 and applied in the module's dtype: a bf16 model runs (it crashed in SDPA
    # with "Expected query, key, and value to have the same dtype") and stays close to float32.
    torch.manual_seed(0)
    frames = dict(num_frames=4) if video else {}
    enc = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, pos_embed="rope", **frames)
    pred = MaskPredictor(
        grid_size=enc.grid_size, embed_dim=64, predictor_embed_dim=32, depth=1, num_heads=4, pos_embed="rope"
    )
    x = torch.randn(2, 3, 4, 32, 32) if video else torch.randn(2, 3, 32, 32)
    n = math.prod(enc.grid_size)
    ctx, tgt = torch.arange(n // 2)[None].expand(2, -1), torch.arange(n // 2, n)[None].expand(2, -1)
    with torch.no_grad():
        ref = pred(enc(x, ctx), ctx, tgt)
        enc16, pred16 = enc.to(torch.bfloat16), pred.to(torch.bfloat16)
        out = pred16(enc16(x.bfloat16(), ctx), ctx, tgt)
    assert out.dtype == torch.bfloat16
    assert ((out.float() - ref).norm() / ref.norm()).item() < 0.05
