"""Official I-JEPA / V-JEPA / V-JEPA 2 checkpoints: synthetic files with the releases' key names, prefixes and shapes.

Every reference here is computed independently of jepa_world: sin-cos tables with numpy from the formulas of the
facts sheet (I-JEPA column-first 2-D layout, V-JEPA row-first and 3-D `uniform_power` split), and a plain-torch ViT
forward in float64 straight from the raw state dict (patch conv, + positions, pre-norm blocks with fused qkv and an
explicit softmax attention, LayerNorm eps 1e-6), with the V-JEPA 2 RoPE written channel by channel.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jepa_world import checkpoints
from jepa_world.checkpoints import CheckpointError
from jepa_world.models.predictor import MaskPredictor
from jepa_world.models.vit import VisionTransformer

# --------------------------------------------------------------------------------------------------------------------
# Independent references
# --------------------------------------------------------------------------------------------------------------------
EPS = 1e-6


def ref_sincos_1d(pos: np.ndarray, dim: int) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2) / (dim / 2))
    angles = np.outer(pos.astype(np.float64), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)  # [sin | cos]


def ref_sincos_2d(h: int, w: int, dim: int, *, first: str) -> np.ndarray:
    rows, cols = np.divmod(np.arange(h * w), w)
    a, b = (cols, rows) if first == "col" else (rows, cols)
    return np.concatenate([ref_sincos_1d(a, dim // 2), ref_sincos_1d(b, dim // 2)], axis=1)


def ref_sincos_3d_uniform(t: int, h: int, w: int, dim: int) -> np.ndarray:
    n = 2 * math.ceil(dim / 6)
    idx = np.arange(t * h * w)
    tt, rem = np.divmod(idx, h * w)
    rr, cc = np.divmod(rem, w)
    return np.concatenate([ref_sincos_1d(tt, n), ref_sincos_1d(rr, n), ref_sincos_1d(cc, n)], axis=1)[:, :dim]


def table(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).float()[None]  # [1, N, D], as the releases store it


def ref_rope(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """x [B, H, N, dh], coords [B, N, 3]: the facts-sheet formula, one channel pair at a time."""
    dh = x.shape[-1]
    d = 2 * ((dh // 3) // 2)
    out = x.clone()
    for axis in range(3):
        p = coords[:, None, :, axis].double()  # [B, 1, N]
        for c in range(0, d, 2):
            # Frequencies repeat as [f0 .. f_{d/2-1}, f0 .. f_{d/2-1}]; pairs (c, c+1) are rotated.
            f0 = 1.0 / 10000 ** ((c % (d // 2)) / (d / 2))
            f1 = 1.0 / 10000 ** (((c + 1) % (d // 2)) / (d / 2))
            i = axis * d + c
            x0, x1 = x[..., i], x[..., i + 1]
            out[..., i] = x0 * torch.cos(p * f0) - x1 * torch.sin(p * f0)
            out[..., i + 1] = x1 * torch.cos(p * f1) + x0 * torch.sin(p * f1)
    return out


def coords_of(ids: torch.Tensor, h: int, w: int) -> torch.Tensor:
    t, rem = ids // (h * w), ids % (h * w)
    return torch.stack([t, rem // w, rem % w], dim=-1)


def ref_blocks(sd: dict, prefix: str, x: torch.Tensor, heads: int, coords: torch.Tensor | None) -> torch.Tensor:
    def g(k):
        return sd[prefix + k].double()

    depth = len({k[len(prefix) :].split(".")[0] for k in sd if k.startswith(prefix)})
    B, N, D = x.shape
    dh = D // heads
    for i in range(depth):
        p = f"{i}."
        h = F.layer_norm(x, (D,), g(p + "norm1.weight"), g(p + "norm1.bias"), eps=EPS)
        qkv = h @ g(p + "attn.qkv.weight").T + g(p + "attn.qkv.bias")  # rows are q | k | v
        q, k, v = (t.reshape(B, N, heads, dh).transpose(1, 2) for t in qkv.split(D, dim=-1))
        if coords is not None:
            q, k = ref_rope(q, coords), ref_rope(k, coords)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1) @ v
        x = x + att.transpose(1, 2).reshape(B, N, D) @ g(p + "attn.proj.weight").T + g(p + "attn.proj.bias")
        h = F.layer_norm(x, (D,), g(p + "norm2.weight"), g(p + "norm2.bias"), eps=EPS)
        h = F.gelu(h @ g(p + "mlp.fc1.weight").T + g(p + "mlp.fc1.bias"))
        x = x + h @ g(p + "mlp.fc2.weight").T + g(p + "mlp.fc2.bias")
    return x


def ref_encoder(sd: dict, prefix: str, x: torch.Tensor, heads: int, idx: torch.Tensor | None = None) -> torch.Tensor:
    w, b = sd[prefix + "patch_embed.proj.weight"].double(), sd[prefix + "patch_embed.proj.bias"].double()
    if w.ndim == 4:
        z = F.conv2d(x.double(), w, b, stride=w.shape[-1])  # [B, D, H', W']
    else:
        z = F.conv3d(x.double(), w, b, stride=tuple(w.shape[2:]))  # [B, D, T', H', W']
    h, wd = z.shape[-2:]
    z = z.flatten(2).transpose(1, 2)  # [B, N, D]
    rope = prefix + "pos_embed" not in sd
    if not rope:
        z = z + sd[prefix + "pos_embed"].double()
    ids = torch.arange(z.shape[1])[None].expand(z.shape[0], -1) if idx is None else idx
    z = torch.gather(z, 1, ids[..., None].expand(-1, -1, z.shape[-1]))
    z = ref_blocks(sd, prefix + "blocks.", z, heads, coords_of(ids, h, wd) if rope else None)
    D = z.shape[-1]
    return F.layer_norm(z, (D,), sd[prefix + "norm.weight"].double(), sd[prefix + "norm.bias"].double(), eps=EPS)


def ref_predictor(sd, prefix, z, ctx_idx, tgt_idx, heads, *, mask_key, hw, sort=False):
    """I-JEPA / V-JEPA predictor forward; `sort` orders tokens by grid position first, as V-JEPA 2 does."""

    def g(k):
        return sd[prefix + k].double()

    x = z.double() @ g("predictor_embed.weight").T + g("predictor_embed.bias")  # [B, Kc, P]
    B, Kt, P = z.shape[0], tgt_idx.shape[1], x.shape[-1]
    tok = g(mask_key).reshape(1, 1, P).expand(B, Kt, P)
    rope = prefix + "predictor_pos_embed" not in sd
    if not rope:
        pos = g("predictor_pos_embed")[0]
        x, tok = x + pos[ctx_idx], tok + pos[tgt_idx]
    x = torch.cat([x, tok], dim=1)
    ids = torch.cat([ctx_idx, tgt_idx], dim=1)
    order = torch.argsort(ids, dim=1) if sort else torch.arange(ids.shape[1])[None].expand(B, -1)
    x = torch.gather(x, 1, order[..., None].expand(-1, -1, P))
    x = ref_blocks(
        sd, prefix + "predictor_blocks.", x, heads, coords_of(torch.gather(ids, 1, order), *hw) if rope else None
    )
    x = torch.empty_like(x).scatter_(1, order[..., None].expand(-1, -1, P), x)  # back to [context, targets]
    x = F.layer_norm(x[:, ctx_idx.shape[1] :], (P,), g("predictor_norm.weight"), g("predictor_norm.bias"), eps=EPS)
    return x @ g("predictor_proj.weight").T + g("predictor_proj.bias")


# --------------------------------------------------------------------------------------------------------------------
# Synthetic release checkpoints
# --------------------------------------------------------------------------------------------------------------------
def _block_params(gen, prefix: str, dim: int, hidden: int) -> dict:
    def rnd(*shape, scale):
        return torch.randn(*shape, generator=gen) * scale

    s = 1.0 / math.sqrt(dim)
    return {
        prefix + "norm1.weight": 1 + rnd(dim, scale=0.1),
        prefix + "norm1.bias": rnd(dim, scale=0.1),
        prefix + "attn.qkv.weight": rnd(3 * dim, dim, scale=s),
        prefix + "attn.qkv.bias": rnd(3 * dim, scale=0.1),
        prefix + "attn.proj.weight": rnd(dim, dim, scale=s),
        prefix + "attn.proj.bias": rnd(dim, scale=0.1),
        prefix + "norm2.weight": 1 + rnd(dim, scale=0.1),
        prefix + "norm2.bias": rnd(dim, scale=0.1),
        prefix + "mlp.fc1.weight": rnd(hidden, dim, scale=s),
        prefix + "mlp.fc1.bias": rnd(hidden, scale=0.1),
        prefix + "mlp.fc2.weight": rnd(dim, hidden, scale=1.0 / math.sqrt(hidden)),
        prefix + "mlp.fc2.bias": rnd(dim, scale=0.1),
    }


def encoder_state(seed: int, *, width: int, depth: int, kernel: tuple[int, ...], pos: torch.Tensor | None) -> dict:
    gen = torch.Generator().manual_seed(seed)
    sd = {
        "patch_embed.proj.weight": torch.randn(width, 3, *kernel, generator=gen) / math.sqrt(3 * math.prod(kernel)),
        "patch_embed.proj.bias": torch.randn(width, generator=gen) * 0.1,
    }
    if pos is not None:
        sd["pos_embed"] = pos
    for i in range(depth):
        sd.update(_block_params(gen, f"blocks.{i}.", width, 4 * width))
    sd["norm.weight"] = 1 + 0.1 * torch.randn(width, generator=gen)
    sd["norm.bias"] = 0.1 * torch.randn(width, generator=gen)
    return sd


def predictor_state(seed: int, *, enc_width: int, width: int, depth: int, mask_keys, pos) -> dict:
    gen = torch.Generator().manual_seed(seed)
    sd = {
        "predictor_embed.weight": torch.randn(width, enc_width, generator=gen) / math.sqrt(enc_width),
        "predictor_embed.bias": 0.1 * torch.randn(width, generator=gen),
    }
    for key in mask_keys:
        sd[key] = torch.randn(1, 1, width, generator=gen)  # trained tokens are not zero
    if pos is not None:
        sd["predictor_pos_embed"] = pos
    for i in range(depth):
        sd.update(_block_params(gen, f"predictor_blocks.{i}.", width, 4 * width))
    sd["predictor_norm.weight"] = 1 + 0.1 * torch.randn(width, generator=gen)
    sd["predictor_norm.bias"] = 0.1 * torch.randn(width, generator=gen)
    sd["predictor_proj.weight"] = torch.randn(enc_width, width, generator=gen) / math.sqrt(width)
    sd["predictor_proj.bias"] = 0.1 * torch.randn(enc_width, generator=gen)
    return sd


def release_file(path, prefix: str, encoder: dict, target: dict, predictor: dict):
    """A training checkpoint with the releases' top-level keys (optimizer and scaler states included)."""

    def pre(sd):
        return {prefix + k: v for k, v in sd.items()}

    ckpt = {
        "encoder": pre(encoder),
        "predictor": pre(predictor),
        "target_encoder": pre(target),
        "opt": {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-3}]},
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
        "epoch": 3,
        "loss": 0.4,
        "batch_size": 4,
        "world_size": 8,
        "lr": 1e-3,
    }
    torch.save(ckpt, path)
    return ckpt


def assert_close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a.double() - b.double()).abs().max().item()
    assert err < atol, f"max abs error {err}"


WIDTH, PATCH, IMG = 192, 8, 32  # 192 is a release width (ViT-Ti, 3 heads): heads come from the table
GRID = IMG // PATCH


@pytest.fixture(scope="module")
def ijepa(tmp_path_factory):
    pos = table(ref_sincos_2d(GRID, GRID, WIDTH, first="col"))
    enc = encoder_state(0, width=WIDTH, depth=2, kernel=(PATCH, PATCH), pos=pos)
    tgt = encoder_state(1, width=WIDTH, depth=2, kernel=(PATCH, PATCH), pos=pos.clone())
    ppos = table(ref_sincos_2d(GRID, GRID, 96, first="col"))
    pred = predictor_state(2, enc_width=WIDTH, width=96, depth=2, mask_keys=["mask_token"], pos=ppos)
    path = tmp_path_factory.mktemp("ijepa") / "IN1K-vit.h.14-300e.pth.tar"
    return path, release_file(path, "module.", enc, tgt, pred)


@pytest.fixture(scope="module")
def vjepa(tmp_path_factory):
    # Width 200: 3 x 2 * ceil(200 / 6) = 204 channels, so the uniform_power truncation to D is exercised.
    pos = table(ref_sincos_3d_uniform(8, GRID, GRID, 200))  # 16 frames / tubelet 2 = 8 time steps
    enc = encoder_state(3, width=200, depth=2, kernel=(2, PATCH, PATCH), pos=pos)
    tgt = encoder_state(4, width=200, depth=2, kernel=(2, PATCH, PATCH), pos=pos.clone())
    ppos = table(ref_sincos_3d_uniform(8, GRID, GRID, 100))
    pred = predictor_state(5, enc_width=200, width=100, depth=2, mask_keys=["mask_tokens.0", "mask_tokens.1"], pos=ppos)
    path = tmp_path_factory.mktemp("vjepa") / "vitl16.pth.tar"
    return path, release_file(path, "module.backbone.", enc, tgt, pred)


@pytest.fixture(scope="module")
def vjepa2(tmp_path_factory):
    enc = encoder_state(6, width=WIDTH, depth=2, kernel=(2, PATCH, PATCH), pos=None)
    tgt = encoder_state(7, width=WIDTH, depth=2, kernel=(2, PATCH, PATCH), pos=None)
    pred = predictor_state(
        8, enc_width=WIDTH, width=192, depth=2, mask_keys=["mask_tokens.0", "mask_tokens.1"], pos=None
    )
    path = tmp_path_factory.mktemp("vjepa2") / "vitg.pt"
    return path, release_file(path, "module.backbone.", enc, tgt, pred)


# --------------------------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------------------------
def test_strip_prefixes_removes_all_three_in_any_order():
    t = torch.zeros(1)
    sd = {
        "module.pos_embed": t,
        "backbone.norm.weight": t,
        "_orig_mod.blocks.0.attn.qkv.weight": t,
        "module.backbone.blocks.1.norm1.bias": t,
        "_orig_mod.module.backbone.norm.bias": t,
        "patch_embed.proj.weight": t,
    }
    out = checkpoints.strip_prefixes(sd)
    assert sorted(out) == sorted(
        [
            "pos_embed",
            "norm.weight",
            "blocks.0.attn.qkv.weight",
            "blocks.1.norm1.bias",
            "norm.bias",
            "patch_embed.proj.weight",
        ]
    )
    # A prefix in the middle of a name is not a wrapper prefix.
    assert list(checkpoints.strip_prefixes({"blocks.0.module.weight": t})) == ["blocks.0.module.weight"]


def test_release_detection(ijepa, vjepa, vjepa2):
    assert checkpoints.detect_release(ijepa[1]["encoder"]) == "ijepa"
    assert checkpoints.detect_release(ijepa[1]["predictor"]) == "ijepa"
    assert checkpoints.detect_release(vjepa[1]["target_encoder"]) == "vjepa"
    assert checkpoints.detect_release(vjepa[1]["predictor"]) == "vjepa"
    assert checkpoints.detect_release(vjepa2[1]["encoder"]) == "vjepa2"
    assert checkpoints.detect_release(vjepa2[1]["predictor"]) == "vjepa2"
    assert checkpoints.detect_release(checkpoints.strip_prefixes(ijepa[1]["encoder"])) == "generic"


def test_heads_table_by_release():
    assert checkpoints.default_num_heads(1408, "ijepa") == 16
    assert checkpoints.default_num_heads(1408, "vjepa2") == 22  # V-JEPA 2 released ViT-g
    assert checkpoints.default_num_heads(1280, "vjepa") == 16
    assert checkpoints.default_num_heads(1408, "ijepa", predictor=True) == 16  # I-JEPA predictor: encoder heads
    assert checkpoints.default_num_heads(1408, "vjepa2", predictor=True) == 12
    with pytest.raises(CheckpointError, match="num_heads"):
        checkpoints.default_num_heads(200, "vjepa")


def test_ijepa_encoder_matches_reference(ijepa):
    path, ckpt = ijepa
    enc = checkpoints.load_encoder(path)  # default: target_encoder
    kwargs = checkpoints.module_config(enc)["kwargs"]
    assert (kwargs["embed_dim"], kwargs["depth"], kwargs["patch_size"], kwargs["img_size"]) == (WIDTH, 2, PATCH, IMG)
    assert (kwargs["num_heads"], kwargs["pos_embed"], kwargs["sincos_layout"], enc.is_video) == (
        3,
        "sincos",
        "ijepa",
        False,
    )
    # The stored table is copied bit for bit, and the layout recorded for the release recomputes it.
    assert torch.equal(enc.pos_embed, ckpt["target_encoder"]["module.pos_embed"])
    col_first = table(ref_sincos_2d(GRID, GRID, WIDTH, first="col"))
    assert_close(VisionTransformer(**kwargs).pos_embed.detach(), col_first, atol=1e-6)
    assert not torch.allclose(col_first, table(ref_sincos_2d(GRID, GRID, WIDTH, first="row")), atol=1e-3)

    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_close(enc(x), ref_encoder(ckpt["target_encoder"], "module.", x, heads=3))
        other = checkpoints.load_encoder(path, component="encoder")
        assert_close(other(x), ref_encoder(ckpt["encoder"], "module.", x, heads=3))
        assert not torch.allclose(other(x), enc(x), atol=1e-3)


def test_ijepa_predictor_matches_reference(ijepa):
    path, ckpt = ijepa
    pred = checkpoints.load_predictor(path)
    assert isinstance(pred, MaskPredictor)
    assert (pred.num_heads, len(pred.mask_tokens), pred.grid_size) == (3, 1, (GRID, GRID))
    assert torch.equal(pred.mask_tokens[0], ckpt["predictor"]["module.mask_token"])
    gen = torch.Generator().manual_seed(1)
    ctx = torch.stack([torch.randperm(16, generator=gen)[:10] for _ in range(2)])
    tgt = torch.stack([torch.randperm(16, generator=gen)[:4] for _ in range(2)])
    z = torch.randn(2, 10, WIDTH, generator=gen)
    with torch.no_grad():
        out = pred(z, ctx, tgt)
    ref = ref_predictor(ckpt["predictor"], "module.", z, ctx, tgt, 3, mask_key="mask_token", hw=(GRID, GRID))
    assert_close(out, ref)


def test_vjepa_video_uniform_power(vjepa):
    path, ckpt = vjepa
    enc = checkpoints.load_encoder(path, num_heads=4)  # width 200 is no release width: heads must be given
    kwargs = checkpoints.module_config(enc)["kwargs"]
    assert (kwargs["num_frames"], kwargs["tubelet_size"], kwargs["img_size"], kwargs["uniform_power"]) == (
        16,
        2,
        IMG,
        True,
    )
    assert enc.grid_size == (8, GRID, GRID)
    assert_close(VisionTransformer(**kwargs).pos_embed.detach(), table(ref_sincos_3d_uniform(8, GRID, GRID, 200)), 1e-6)

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 16, IMG, IMG, generator=gen)
    idx = torch.stack([torch.randperm(128, generator=gen)[:40] for _ in range(2)])
    with torch.no_grad():
        assert_close(enc(x), ref_encoder(ckpt["target_encoder"], "module.backbone.", x, heads=4))
        assert_close(enc(x, idx), ref_encoder(ckpt["target_encoder"], "module.backbone.", x, heads=4, idx=idx))

    pred = checkpoints.load_predictor(path, num_heads=4)
    assert (len(pred.mask_tokens), pred.grid_size) == (2, (8, GRID, GRID))
    ctx, tgt = idx[:, :30], idx[:, 30:]
    z = torch.randn(2, 30, 200, generator=gen)
    with torch.no_grad():
        out = pred(z, ctx, tgt, mask_index=1)
    ref = ref_predictor(ckpt["predictor"], "module.backbone.", z, ctx, tgt, 4, mask_key="mask_tokens.1", hw=(4, 4))
    assert_close(out, ref)


def test_vjepa2_rope_encoder_and_predictor(vjepa2):
    path, ckpt = vjepa2
    enc = checkpoints.load_encoder(path, component="encoder")
    assert enc.pos_embed is None and enc.pos_embed_kind == "rope" and enc.num_heads == 3
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, IMG, IMG, generator=gen)  # RoPE: any clip length / size
    idx = torch.stack([torch.randperm(32, generator=gen)[:12] for _ in range(2)])
    with torch.no_grad():
        assert_close(enc(x), ref_encoder(ckpt["encoder"], "module.backbone.", x, heads=3))
        assert_close(enc(x, idx), ref_encoder(ckpt["encoder"], "module.backbone.", x, heads=3, idx=idx))

    pred = checkpoints.load_predictor(path)
    assert pred.predictor_pos_embed is None and pred.num_heads == 12 and len(pred.mask_tokens) == 2
    tgt = torch.stack([torch.tensor([i for i in range(32) if i not in set(row.tolist())])[:10] for row in idx])
    z = torch.randn(2, 12, WIDTH, generator=gen)
    with torch.no_grad():
        out = pred(z, idx, tgt, mask_index=0, grid_size=(2, GRID, GRID))
    ref = ref_predictor(
        ckpt["predictor"], "module.backbone.", z, idx, tgt, 12, mask_key="mask_tokens.0", hw=(GRID, GRID), sort=True
    )
    assert_close(out, ref)


def test_num_frames_override_and_non_square_grid(tmp_path):
    # A V-JEPA table for 4-frame clips (2 time steps x 4 x 4): the default 16 frames would misread it.
    pos = table(ref_sincos_3d_uniform(2, GRID, GRID, WIDTH))
    enc = encoder_state(9, width=WIDTH, depth=1, kernel=(2, PATCH, PATCH), pos=pos)
    path = tmp_path / "short.pt"
    pred = predictor_state(0, enc_width=WIDTH, width=96, depth=1, mask_keys=["mask_tokens.0"], pos=None)
    release_file(path, "module.backbone.", enc, enc, pred)
    model = checkpoints.load_encoder(path, num_frames=4)
    assert model.grid_size == (2, GRID, GRID)
    x = torch.randn(1, 3, 4, IMG, IMG)
    with torch.no_grad():
        assert_close(model(x), ref_encoder(torch.load(path)["target_encoder"], "module.backbone.", x, heads=3))
    # 3 time steps x 16 = 48 tokens cannot be 8 (16 frames) x a square grid: the error says what to pass.
    enc3 = encoder_state(9, width=WIDTH, depth=1, kernel=(2, PATCH, PATCH), pos=torch.zeros(1, 48, WIDTH))
    torch.save({"target_encoder": {"module.backbone." + k: v for k, v in enc3.items()}}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match=r"48 tokens.*num_frames="):
        checkpoints.load_encoder(tmp_path / "odd.pt")
    assert checkpoints.load_encoder(tmp_path / "odd.pt", num_frames=6).grid_size == (3, GRID, GRID)


def test_ambiguous_video_table_is_read_from_its_values(tmp_path):
    # 4 frames at 8 x 8 tokens and 16 frames at 4 x 4 both hold 128 tokens: the sin-cos values tell them apart, so
    # the 4-frame model loads exactly with no num_frames= (it used to be rebuilt as 16 frames and interpolated).
    pos = table(ref_sincos_3d_uniform(2, 8, 8, WIDTH))
    enc = encoder_state(9, width=WIDTH, depth=1, kernel=(2, PATCH, PATCH), pos=pos)
    pred = predictor_state(0, enc_width=WIDTH, width=96, depth=1, mask_keys=["mask_tokens.0"], pos=None)
    release_file(tmp_path / "short.pt", "module.backbone.", enc, enc, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = checkpoints.load_encoder(tmp_path / "short.pt")
    assert model.grid_size == (2, 8, 8) and model.config["num_frames"] == 4
    x = torch.randn(1, 3, 4, 8 * PATCH, 8 * PATCH)
    sd = torch.load(tmp_path / "short.pt")["target_encoder"]
    with torch.no_grad():
        assert_close(model(x), ref_encoder(sd, "module.backbone.", x, heads=3))
    # A table that is not sin-cos cannot tell: the default 16 frames, with a warning naming every fit and the override.
    learned = encoder_state(9, width=WIDTH, depth=1, kernel=(2, PATCH, PATCH), pos=torch.randn(1, 128, WIDTH))
    torch.save({"target_encoder": {"module.backbone." + k: v for k, v in learned.items()}}, tmp_path / "learned.pt")
    with pytest.warns(UserWarning, match=r"4 frames at 8x8 tokens, 16 frames at 4x4 tokens.*num_frames="):
        guessed = checkpoints.load_encoder(tmp_path / "learned.pt")
    assert guessed.grid_size == (8, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkpoints.load_encoder(tmp_path / "learned.pt", num_frames=4).grid_size == (2, 8, 8)


def test_unknown_width_needs_num_heads(vjepa):
    with pytest.raises(CheckpointError, match=r"width 200.*num_heads"):
        checkpoints.load_encoder(vjepa[0])


def test_strict_load_names_missing_unexpected_and_shapes(ijepa, tmp_path):
    ckpt = {k: dict(v) if isinstance(v, dict) else v for k, v in ijepa[1].items()}
    sd = ckpt["target_encoder"]
    del sd["module.blocks.1.norm2.bias"]
    sd["module.blocks.1.extra.weight"] = torch.zeros(3)
    torch.save(ckpt, tmp_path / "broken.pth.tar")
    with pytest.raises(CheckpointError) as err:
        checkpoints.load_encoder(tmp_path / "broken.pth.tar")
    assert "blocks.1.norm2.bias" in str(err.value) and "blocks.1.extra.weight" in str(err.value)

    sd = dict(ijepa[1]["target_encoder"])
    sd["module.blocks.1.attn.proj.weight"] = torch.zeros(WIDTH, WIDTH + 1)
    torch.save({**ckpt, "target_encoder": sd}, tmp_path / "shape.pth.tar")
    with pytest.raises(
        CheckpointError, match=r"blocks\.1\.attn\.proj\.weight: checkpoint \(192, 193\) vs model \(192, 192\)"
    ):
        checkpoints.load_encoder(tmp_path / "shape.pth.tar")
    # Not strict: missing / unexpected keys become a warning, a wrong shape stays an error.
    with pytest.warns(UserWarning, match="blocks.1.norm2.bias"):
        checkpoints.load_encoder(tmp_path / "broken.pth.tar", strict=False)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        checkpoints.load_encoder(tmp_path / "shape.pth.tar", strict=False)


def test_unknown_format_says_what_was_found(tmp_path):
    torch.save({"model_state": {"fc.weight": torch.zeros(2, 2)}, "epoch": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as err:
        checkpoints.load_encoder(tmp_path / "other.pt")
    msg = str(err.value)
    assert "no known checkpoint format" in msg and "model_state" in msg and "epoch" in msg and "fc.weight" in msg
    torch.save({"target_encoder": {"module.fc.weight": torch.zeros(2, 2)}}, tmp_path / "notvit.pt")
    with pytest.raises(CheckpointError, match=r"not a ViT encoder.*fc\.weight"):
        checkpoints.load_encoder(tmp_path / "notvit.pt")
    with pytest.raises(CheckpointError, match=r"it holds \['target_encoder'\]"):
        checkpoints.load_predictor(tmp_path / "notvit.pt")


def test_incomplete_ac_predictor_and_swiglu_are_refused(tmp_path, ijepa):
    # A V-JEPA 2-AC predictor is read as one (tests/test_hub_ac.py); an incomplete one says what is missing.
    ac = {
        "module.backbone.action_encoder.weight": torch.zeros(4, 7),
        "module.backbone.predictor_embed.weight": torch.zeros(4, 8),
    }
    torch.save({"predictor": ac}, tmp_path / "ac.pt")
    with pytest.raises(CheckpointError, match=r"not a V-JEPA 2-AC predictor state dict: no \[predictor_proj\.weight"):
        checkpoints.load_predictor(tmp_path / "ac.pt")
    sd = dict(ijepa[1]["target_encoder"])
    sd["module.blocks.0.mlp.fc3.weight"] = torch.zeros(WIDTH, 4 * WIDTH)
    torch.save({"target_encoder": sd}, tmp_path / "silu.pt")
    with pytest.raises(CheckpointError, match="SwiGLU"):
        checkpoints.load_encoder(tmp_path / "silu.pt")


def test_official_checkpoint_exports_bit_exact(vjepa2, ijepa, tmp_path):
    for (path, _), component in ((vjepa2, "encoder"), (vjepa2, "predictor"), (ijepa, "target_encoder")):
        out = checkpoints.export_checkpoint(path, tmp_path / component, component=component)
        loader = checkpoints.load_predictor if component == "predictor" else checkpoints.load_encoder
        original = loader(path) if component == "predictor" else loader(path, component=component)
        again = loader(out)
        assert type(again) is type(original)
        a, b = original.state_dict(), again.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The I-JEPA predictor's table layout is read back from the table itself.
    checkpoints.export_checkpoint(ijepa[0], tmp_path / "ipred", component="predictor")
    assert checkpoints.from_pretrained(tmp_path / "ipred").predictor_pos_embed is not None
    cfg = checkpoints.pretrained.read_pretrained_config(tmp_path / "ipred")
    assert cfg["kwargs"]["sincos_layout"] == "ijepa"
