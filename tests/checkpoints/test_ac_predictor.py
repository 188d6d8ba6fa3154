"""The V-JEPA 2-AC action-conditioned predictor: synthetic `vjepa2-ac-vitg.pt`-style files loaded into our classes.

The files use the release's layout: top-level `encoder` / `predictor` / `opt` / `scaler` / `epoch` / ... with
`module.` (DDP) and `module.backbone.` prefixes, and the predictor keys `predictor_embed`, `action_encoder`,
`state_encoder` (A -> P), `extrinsics_encoder` (A - 1 -> P), `predictor_blocks.{i}.*`, `predictor_norm`,
`predictor_proj`, no buffers. The numeric reference is a float64 forward written here from the release's formulas
(`src/models/ac_predictor.py`, `src/models/utils/modules.py`: `ACBlock`, `ACRoPEAttention`,
`rotate_queries_or_keys`, `build_action_block_causal_attention_mask`), independent of jepa_world: per frame
`[action, state, (extrinsics), patches]`; the conditioning tokens rotate only their first (frame) chunk, by frame
index; patch tokens rotate three chunks by frame, row x H'/H and column x H'/W positions; `[f | f]` frequency tables
on interleaved pairs; a frame sees its own and earlier frames; output = patch tokens -> predictor_norm -> proj.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import jepa_world
from jepa_world import checkpoints
from jepa_world.checkpoints import CheckpointError
from jepa_world.models import create_model
from jepa_world.models.ac_predictor import ActionConditionedPredictor, RolloutCache

EPS = 1e-6
EMBED, WIDTH, DEPTH, HEADS, ACT = 40, 32, 2, 2, 7  # head_dim 16: RoPE chunks of 4 channels, 4 channels not rotated


# --------------------------------------------------------------------------------------------------------------------
# Synthetic release files
# --------------------------------------------------------------------------------------------------------------------
def official_ac_predictor(gen: torch.Generator, *, embed=EMBED, width=WIDTH, depth=DEPTH, act=ACT) -> dict:
    """Predictor state dict with the release's names and shapes (random values, LayerNorms away from (1, 0))."""

    def r(*shape, scale=0.3, shift=0.0):
        return torch.randn(*shape, generator=gen) * scale + shift

    hidden = 4 * width
    sd = {
        "predictor_embed.weight": r(width, embed),
        "predictor_embed.bias": r(width),
        "action_encoder.weight": r(width, act),
        "action_encoder.bias": r(width),
        "state_encoder.weight": r(width, act),
        "state_encoder.bias": r(width),
        "extrinsics_encoder.weight": r(width, act - 1),
        "extrinsics_encoder.bias": r(width),
    }
    for i in range(depth):
        p = f"predictor_blocks.{i}."
        sd.update({
            p + "norm1.weight": r(width, scale=0.1, shift=1.0), p + "norm1.bias": r(width, scale=0.1),
            p + "attn.qkv.weight": r(3 * width, width), p + "attn.qkv.bias": r(3 * width, scale=0.1),
            p + "attn.proj.weight": r(width, width, scale=0.1), p + "attn.proj.bias": r(width, scale=0.1),
            p + "norm2.weight": r(width, scale=0.1, shift=1.0), p + "norm2.bias": r(width, scale=0.1),
            p + "mlp.fc1.weight": r(hidden, width, scale=0.1), p + "mlp.fc1.bias": r(hidden, scale=0.1),
            p + "mlp.fc2.weight": r(width, hidden, scale=0.1), p + "mlp.fc2.bias": r(width, scale=0.1),
        })  # fmt: skip
    sd.update({
        "predictor_norm.weight": r(width, scale=0.1, shift=1.0), "predictor_norm.bias": r(width, scale=0.1),
        "predictor_proj.weight": r(embed, width), "predictor_proj.bias": r(embed),
    })  # fmt: skip
    return sd


def official_file(path, predictor: dict, *, prefix="module.", encoder: dict | None = None) -> dict:
    """Write a release-style training checkpoint (what app/vjepa_droid/train.py saves) and return it."""
    state = {
        "encoder": encoder or {},
        "predictor": {prefix + k: v for k, v in predictor.items()},
        "opt": {"state": {}, "param_groups": [{"lr": 4.25e-4, "params": [0, 1]}]},
        "scaler": None,
        "epoch": 3,
        "loss": 0.25,
        "batch_size": 8,
        "world_size": 1,
        "lr": 4.25e-4,
    }
    torch.save(state, path)
    return state


# --------------------------------------------------------------------------------------------------------------------
# Independent reference (float64), from the release's formulas
# --------------------------------------------------------------------------------------------------------------------
def ref_rotate(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """`rotate_queries_or_keys`: x `[..., N, d]`, pos `[N]`; channel i uses frequency i mod d/2, pairs interleaved."""
    d = x.shape[-1]
    out = torch.empty_like(x)
    for c in range(0, d, 2):
        a0 = pos * (1.0 / 10000 ** ((c % (d // 2)) / (d / 2)))
        a1 = pos * (1.0 / 10000 ** (((c + 1) % (d // 2)) / (d / 2)))
        x0, x1 = x[..., c], x[..., c + 1]
        out[..., c] = x0 * torch.cos(a0) - x1 * torch.sin(a0)
        out[..., c + 1] = x1 * torch.cos(a1) + x0 * torch.sin(a1)
    return out


def ref_ac_attention(sd, p, x, *, T, H, W, k, heads):
    """`ACRoPEAttention.forward` on `x [B, T * (k + H*W), C]` at the release's nominal grid H x W."""
    B, N, C = x.shape
    dh = C // heads
    d = 2 * ((dh // 3) // 2)
    qkv = x @ sd[p + "qkv.weight"].T + sd[p + "qkv.bias"]
    q, kk, v = (t.reshape(B, N, heads, dh).transpose(1, 2) for t in qkv.split(C, dim=-1))  # [B, heads, N, dh]
    ids = torch.arange(T * H * W, dtype=torch.float64)
    frame = torch.div(ids, H * W, rounding_mode="floor")
    row = torch.div(ids - frame * H * W, W, rounding_mode="floor")
    col = ids - frame * H * W - row * W
    row, col = row * (H / H), col * (H / W)  # the release snaps positions to grid_size = H (its grid height)

    def rotate(t):
        t = t.reshape(B, heads, T, k + H * W, dh)
        cond = t[:, :, :, :k].transpose(2, 3)  # [B, heads, k, T, dh]: each conditioning token at its frame index
        cond = torch.cat([ref_rotate(cond[..., :d], torch.arange(T, dtype=torch.float64)), cond[..., d:]], -1)
        pat = t[:, :, :, k:].flatten(2, 3)  # [B, heads, T*H*W, dh]
        pat = torch.cat([ref_rotate(pat[..., :d], frame), ref_rotate(pat[..., d : 2 * d], row),
                         ref_rotate(pat[..., 2 * d : 3 * d], col), pat[..., 3 * d :]], -1)  # fmt: skip
        pat = pat.reshape(B, heads, T, H * W, dh)
        return torch.cat([cond.transpose(2, 3), pat], dim=3).flatten(2, 3)

    q, kk = rotate(q), rotate(kk)
    tok_frame = torch.arange(N) // (k + H * W)
    allowed = tok_frame[None, :] <= tok_frame[:, None]  # build_action_block_causal_attention_mask
    scores = (q @ kk.transpose(-1, -2) / math.sqrt(dh)).masked_fill(~allowed, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).reshape(B, N, C) @ sd[p + "proj.weight"].T + sd[p + "proj.bias"]


def ref_ac_predictor(sd, z, actions, states, extrinsics, *, grid, heads):
    """`VisionTransformerPredictorAC.forward`: z `[B, T*H*W, D]` -> `[B, T*H*W, D]`."""
    sd = {k: v.double() for k, v in sd.items()}
    H, W = grid

    def lin(name, x):
        return x.double() @ sd[name + ".weight"].T + sd[name + ".bias"]

    def ln(name, x):
        return F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"], eps=EPS)

    x = lin("predictor_embed", z)
    B, T = x.shape[0], x.shape[1] // (H * W)
    x = x.view(B, T, H * W, -1)
    cond = [lin("action_encoder", actions), lin("state_encoder", states)]
    if extrinsics is not None:
        cond.append(lin("extrinsics_encoder", extrinsics))
    k = len(cond)
    x = torch.cat([c[:, :, None] for c in cond] + [x], dim=2).flatten(1, 2)
    depth = len({key.split(".")[1] for key in sd if key.startswith("predictor_blocks.")})
    for i in range(depth):
        p = f"predictor_blocks.{i}."
        x = x + ref_ac_attention(sd, p + "attn.", ln(p + "norm1", x), T=T, H=H, W=W, k=k, heads=heads)
        h = F.gelu(lin(p + "mlp.fc1", ln(p + "norm2", x)))
        x = x + lin(p + "mlp.fc2", h)
    x = x.view(B, T, k + H * W, -1)[:, :, k:].flatten(1, 2)
    return lin("predictor_proj", ln("predictor_norm", x))


# --------------------------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture
def ac_file(tmp_path):
    sd = official_ac_predictor(torch.Generator().manual_seed(0))
    path = tmp_path / "vjepa2-ac-vitg.pt"
    official_file(path, sd)
    return path, sd


@pytest.mark.parametrize(
    ("grid", "use_extrinsics", "prefix"),
    [((2, 2), False, "module."), ((2, 3), True, "module.backbone."), ((3, 2), False, "module.")],
)
def test_loaded_predictor_computes_what_the_release_computes(tmp_path, grid, use_extrinsics, prefix):
    gen = torch.Generator().manual_seed(1)
    sd = official_ac_predictor(gen)
    official_file(tmp_path / "ac.pt", sd, prefix=prefix)
    model = jepa_world.load_predictor(tmp_path / "ac.pt", num_heads=HEADS, grid_size=grid)
    assert isinstance(model, ActionConditionedPredictor) and not model.training
    model = model.double()
    B, T, hw = 2, 3, grid[0] * grid[1]
    z = torch.randn(B, T, hw, EMBED, generator=gen, dtype=torch.float64)
    a = torch.randn(B, T, ACT, generator=gen, dtype=torch.float64)
    s = torch.randn(B, T, ACT, generator=gen, dtype=torch.float64)
    e = torch.randn(B, T, ACT - 1, generator=gen, dtype=torch.float64) if use_extrinsics else None
    ref = ref_ac_predictor(sd, z.flatten(1, 2), a, s, e, grid=grid, heads=HEADS).view(B, T, hw, EMBED)
    with torch.no_grad():
        out = model(z, a, s, e)
        # Our RoPE tables are float32 even in a float64 model (as the release's for float32 inputs): ~1e-7 apart.
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        # The key/value-cached rollout path (one frame at a time) gives the same outputs.
        cache, steps = RolloutCache(), []
        for t in range(T):
            e_t = None if e is None else e[:, t : t + 1]
            steps.append(model(z[:, t : t + 1], a[:, t : t + 1], s[:, t : t + 1], e_t, cache=cache))
        torch.testing.assert_close(torch.cat(steps, dim=1), out, rtol=1e-12, atol=1e-12)
    # Block-causal: a change to the last frame leaves the earlier frames' outputs alone (and changes its own).
    z2 = z.clone()
    z2[:, -1] += 1.0
    with torch.no_grad():
        out2 = model(z2, a, s, e)
    torch.testing.assert_close(out2[:, :-1], out[:, :-1], rtol=0, atol=0)
    assert not torch.allclose(out2[:, -1], out[:, -1])


def test_tiny_config_exercises_the_release_conventions():
    """With these widths the conventions are visible: RoPE chunks of 4 channels (so the `[f | f]` tables differ from
    a clean RoPE's `[f0, f0, f1, f1]`), and some channels are left unrotated."""
    dh = WIDTH // HEADS
    d = 2 * ((dh // 3) // 2)
    assert d == 4 and 3 * d < dh
    x = torch.randn(1, 1, 3, d, dtype=torch.float64)
    pos = torch.arange(3, dtype=torch.float64)
    clean = x.clone()  # rotation of pair j by frequency j
    for j in range(d // 2):
        a = pos * (1.0 / 10000 ** (j / (d / 2)))
        clean[..., 2 * j] = x[..., 2 * j] * torch.cos(a) - x[..., 2 * j + 1] * torch.sin(a)
        clean[..., 2 * j + 1] = x[..., 2 * j + 1] * torch.cos(a) + x[..., 2 * j] * torch.sin(a)
    assert not torch.allclose(ref_rotate(x, pos), clean)


def test_column_scaling_of_a_non_square_grid_is_applied(tmp_path):
    """At a non-square nominal grid the release multiplies column positions by H'/W': ours must too."""
    sd = official_ac_predictor(torch.Generator().manual_seed(3))
    path = tmp_path / "ac.pt"
    official_file(path, sd)
    model = checkpoints.load_predictor(path, num_heads=HEADS, grid_size=(2, 3)).double()
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(1, 2, 6, EMBED, generator=gen, dtype=torch.float64)
    a, s = (torch.randn(1, 2, ACT, generator=gen, dtype=torch.float64) for _ in range(2))
    with torch.no_grad():
        out = model(z, a, s)
        # The same frames, passed as a non-nominal grid (integer positions), give another result.
        other = checkpoints.load_predictor(path, num_heads=HEADS, grid_size=(1, 1)).double()(z, a, s, grid_size=(2, 3))
    assert not torch.allclose(out, other)
    ref = ref_ac_predictor(sd, z.flatten(1, 2), a, s, None, grid=(2, 3), heads=HEADS).view_as(out)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(other, ref, rtol=1e-3, atol=1e-3)


def test_architecture_inferred_from_the_state_dict(ac_file):
    path, sd = ac_file
    model = jepa_world.load_ac_predictor(path)  # heads and grid from the release: 16, 16 x 16
    assert (model.embed_dim, model.predictor_embed_dim, len(model.predictor_blocks)) == (EMBED, WIDTH, DEPTH)
    assert (model.action_dim, model.state_dim, model.extrinsics_dim) == (ACT, ACT, ACT - 1)
    assert model.num_heads == checkpoints.AC_PREDICTOR_HEADS == 16 and model.grid_size == (16, 16)
    assert model.predictor_blocks[0].mlp.fc1.out_features == 4 * WIDTH
    loaded = model.state_dict()
    assert set(loaded) == set(sd)  # no extra buffers or tables on either side
    assert all(torch.equal(loaded[k], sd[k]) for k in sd)
    # Overrides win.
    assert checkpoints.load_ac_predictor(path, num_heads=4, grid_size=[4, 4]).num_heads == 4
    # Heads cannot be read from the weights: a width 16 does not divide needs num_heads=.
    path24 = path.with_name("w24.pt")
    official_file(path24, official_ac_predictor(torch.Generator().manual_seed(5), width=24))
    with pytest.raises(CheckpointError, match=r"num_heads.*width 24"):
        checkpoints.load_ac_predictor(path24)
    assert checkpoints.load_ac_predictor(path24, num_heads=2).num_heads == 2


def test_released_shapes_infer_the_released_preset():
    with torch.device("meta"):
        preset = create_model("ac_predictor_vjepa2")
    kwargs = checkpoints.infer_ac_predictor_kwargs(preset.state_dict())
    assert kwargs == {**checkpoints.module_config(preset)["kwargs"], "grid_size": (16, 16)}
    assert (kwargs["embed_dim"], kwargs["predictor_embed_dim"], kwargs["depth"], kwargs["num_heads"]) == (
        1408, 1024, 24, 16
    )  # fmt: skip
    assert (kwargs["action_dim"], kwargs["state_dim"], kwargs["extrinsics_dim"]) == (7, 7, 6)


def test_unexpected_missing_and_misshapen_keys_are_named(tmp_path, ac_file):
    _, sd = ac_file
    extra = {**sd, "predictor_blocks.0.attn.q_norm.weight": torch.ones(WIDTH)}
    official_file(tmp_path / "extra.pt", extra)
    with pytest.raises(CheckpointError, match=r"unexpected keys \[predictor_blocks\.0\.attn\.q_norm\.weight\]"):
        checkpoints.load_ac_predictor(tmp_path / "extra.pt")
    missing = {k: v for k, v in sd.items() if k != "predictor_blocks.1.mlp.fc2.bias"}
    official_file(tmp_path / "missing.pt", missing)
    with pytest.raises(CheckpointError, match=r"missing keys \[predictor_blocks\.1\.mlp\.fc2\.bias\]"):
        checkpoints.load_ac_predictor(tmp_path / "missing.pt")
    with pytest.warns(UserWarning, match=r"predictor_blocks\.1\.mlp\.fc2\.bias"):
        checkpoints.load_ac_predictor(tmp_path / "missing.pt", strict=False)
    bad = {**sd, "predictor_blocks.1.attn.proj.weight": torch.zeros(WIDTH, WIDTH + 1)}
    official_file(tmp_path / "bad.pt", bad)
    with pytest.raises(
        CheckpointError, match=r"predictor_blocks\.1\.attn\.proj\.weight: checkpoint \(32, 33\) vs model \(32, 32\)"
    ):
        checkpoints.load_ac_predictor(tmp_path / "bad.pt")
    # The mask-predictor inference refuses an AC state dict by name.
    with pytest.raises(CheckpointError, match="2-AC"):
        checkpoints.infer_predictor_kwargs(sd)


@pytest.mark.parametrize("enc_prefix", ["module.backbone.", "module."])
def test_encoder_of_the_same_file_and_exports(tmp_path, enc_prefix):
    """The release file's `encoder` loads as a V-JEPA 2 RoPE ViT (also when its keys carry only `module.`); the AC
    predictor exports to our format bit-exactly."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vit = create_model("vit_nano", img_size=32, patch_size=16, num_frames=2, tubelet_size=2, pos_embed="rope")
    enc = {enc_prefix + k: v for k, v in vit.state_dict().items()}
    sd = official_ac_predictor(torch.Generator().manual_seed(6))
    official_file(tmp_path / "ac.pt", sd, encoder=enc)
    encoder = checkpoints.load_encoder(tmp_path / "ac.pt", component="encoder", num_heads=vit.num_heads)
    assert all(torch.equal(v, vit.state_dict()[k]) for k, v in encoder.state_dict().items())
    # Read as V-JEPA 2 (its nominal 256 px; "generic" would give 224), so the V-JEPA 2 head table applies.
    assert encoder.grid_size[-1] * encoder.patch_size == 256 and encoder.uniform_power
    out = checkpoints.export_checkpoint(tmp_path / "ac.pt", tmp_path / "export", component="predictor", num_heads=HEADS)
    again = jepa_world.load_predictor(out)
    assert isinstance(again, ActionConditionedPredictor) and again.num_heads == HEADS
    assert all(torch.equal(again.state_dict()[k], v) for k, v in sd.items())
    with pytest.raises(CheckpointError, match="not an encoder"):
        checkpoints.load_encoder(out)


def test_load_ac_predictor_refuses_a_mask_predictor(tmp_path):
    with torch.random.fork_rng():
        pred = create_model("predictor_nano", grid_size=(2, 2), embed_dim=32, depth=1)
    checkpoints.save_pretrained(pred, tmp_path / "p")
    with pytest.raises(CheckpointError, match="holds a MaskPredictor, not a V-JEPA 2-AC"):
        checkpoints.load_ac_predictor(tmp_path / "p")


def _save_world_model(tmp_path, overrides: list[str]):
    from jepa_world.config import load_config, to_yaml
    from jepa_world.factory import build_world_model

    cfg = load_config([], ["wm.encoder.embed_dim=16", *overrides], command="train-wm")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_world_model(cfg, action_dim=2, state_dim=0)
    state = {"task": "world_model", "meta": {"action_dim": 2, "state_dim": 0, "encoder_config": {}},
             "config": to_yaml(cfg), "encoder": model.encoder.state_dict(), "predictor": model.predictor.state_dict(),
             "step": 1}  # fmt: skip
    if model.inverse_dynamics is not None:
        state["inverse_dynamics"] = model.inverse_dynamics.state_dict()
    checkpoints.save_checkpoint(tmp_path / "step_00000001.pt", state)
    return tmp_path / "step_00000001.pt", model.predictor.eval()


def test_our_world_model_checkpoint_rebuilds_its_preset(tmp_path):
    path, pred = _save_world_model(tmp_path, [])
    loaded = checkpoints.load_ac_predictor(path)
    assert checkpoints.module_config(loaded) == checkpoints.module_config(
        pred
    )  # heads of the preset, not the release's 16
    z, a = torch.randn(2, 3, 1, 16), torch.randn(2, 3, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, a), pred(z, a), rtol=0, atol=0)


def test_world_model_mlp_predictor_loads_through_load_predictor(tmp_path):
    path, pred = _save_world_model(tmp_path, ["wm.predictor.name=dynamics_mlp"])
    loaded = jepa_world.load_predictor(path)
    assert type(loaded) is type(pred) and loaded.embed_dim == 16
    with torch.no_grad():
        for p in pred.parameters():  # leave the zero-initialised output layers behind
            p.add_(0.1)
        checkpoints.save_checkpoint(path, {**torch.load(path, weights_only=True), "predictor": pred.state_dict()})
        loaded = jepa_world.load_predictor(path)
        z, a = torch.randn(2, 3, 1, 16), torch.randn(2, 3, 2)
        torch.testing.assert_close(loaded(z, a), pred(z, a), rtol=0, atol=0)
    with pytest.raises(checkpoints.CheckpointError, match="overrides"):
        jepa_world.load_predictor(path, depth=3)
    with pytest.raises(checkpoints.CheckpointError, match="holds a ResidualMlpDynamics, not a V-JEPA 2-AC"):
        checkpoints.load_ac_predictor(path)
