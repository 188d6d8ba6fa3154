"""The action-conditioned transformer predictor (jepa_world/models/ac_predictor.py): block-causal attention, token
positions, the rollout cache and the released V-JEPA 2-AC layout."""

from __future__ import annotations

import pytest
import torch

from jepa_world import create_model
from jepa_world.models.ac_predictor import ActionConditionedPredictor, RolloutCache, _token_coords, block_causal_mask

torch.set_num_threads(1)  # tiny tensors: thread fan-out only adds latency on a shared 2-core machine

D = 32


def _predictor(action_dim: int = 2, state_dim: int = 0, **kw) -> ActionConditionedPredictor:
    kw = {"predictor_embed_dim": 48, "depth": 2, "num_heads": 2, **kw}
    return ActionConditionedPredictor(embed_dim=D, action_dim=action_dim, state_dim=state_dim, **kw)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------------------------------
# Block-causal attention
# --------------------------------------------------------------------------------------------------------------------
def test_block_causal_mask_matches_loop():
    T, n, past = 3, 4, 2
    mask = block_causal_mask(T, n, past_frames=past)
    assert mask.shape == (T * n, (past + T) * n) and mask.dtype == torch.bool
    for i in range(T * n):
        for j in range((past + T) * n):
            assert bool(mask[i, j]) == (j // n <= past + i // n)


@pytest.mark.parametrize("hw", [1, 4], ids=["pooled", "patch_2x2"])
@pytest.mark.parametrize("t", [0, 2])
def test_block_causal_perturbation(hw, t):
    torch.manual_seed(0)
    pred = _predictor(action_dim=2, state_dim=3, grid_size=(2, 2)).double()
    T = 5
    z = torch.randn(2, T, hw, D, dtype=torch.float64, generator=_gen(1))
    a = torch.randn(2, T, 2, dtype=torch.float64, generator=_gen(2))
    s = torch.randn(2, T, 3, dtype=torch.float64, generator=_gen(3))
    base = pred(z, a, s)
    for name, tensor in (("z", z), ("a", a), ("s", s)):
        bumped = tensor.clone()
        bumped[:, t + 1] += 1.0  # a later frame's inputs
        args = {"z": z, "a": a, "s": s, name: bumped}
        out = pred(args["z"], args["a"], args["s"])
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], atol=1e-12, rtol=0)
        assert (out[:, t + 1] - base[:, t + 1]).abs().max() > 1e-4, name
        bumped = tensor.clone()
        bumped[:, t] += 1.0  # this frame's inputs change this frame's prediction
        args = {"z": z, "a": a, "s": s, name: bumped}
        out = pred(args["z"], args["a"], args["s"])
        torch.testing.assert_close(out[:, :t], base[:, :t], atol=1e-12, rtol=0)
        assert (out[:, t] - base[:, t]).abs().max() > 1e-4, name


def test_token_positions():
    # Frames 1 and 2 with 2 conditioning tokens and a 2 x 2 patch grid: [a, s, (0,0), (0,1), (1,0), (1,1)] per frame.
    expected = [[t, 0, 0] for t in (1, 1)] + [[1, r, c] for r in range(2) for c in range(2)]
    expected += [[t, 0, 0] for t in (2, 2)] + [[2, r, c] for r in range(2) for c in range(2)]
    assert _token_coords(1, 2, 2, (2, 2)).tolist() == expected


def test_mask_and_rope_built_once_per_shape():
    pred = _predictor()
    z, a = torch.randn(2, 3, 1, D), torch.randn(2, 3, 2)
    pred(z, a)
    pred(z + 1, a)
    assert len(pred._tables) == 1
    pred(z[:, :2], a[:, :2])
    assert len(pred._tables) == 2


def test_cached_frames_match_full_pass():
    torch.manual_seed(0)
    pred = _predictor(action_dim=2, state_dim=3, grid_size=(2, 2)).double()
    z = torch.randn(2, 5, 4, D, dtype=torch.float64, generator=_gen(1))
    a = torch.randn(2, 5, 2, dtype=torch.float64, generator=_gen(2))
    s = torch.randn(2, 5, 3, dtype=torch.float64, generator=_gen(3))
    full = pred(z, a, s)
    cache = RolloutCache()
    chunks = [pred(z[:, :2], a[:, :2], s[:, :2], cache=cache)]  # two context frames at once, then one at a time
    chunks += [pred(z[:, i : i + 1], a[:, i : i + 1], s[:, i : i + 1], cache=cache) for i in range(2, 5)]
    assert cache.num_frames == 5
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-10, rtol=0)


# --------------------------------------------------------------------------------------------------------------------
# The released predictor's layout
# --------------------------------------------------------------------------------------------------------------------
def test_ac_predictor_vjepa2_has_released_layout():
    with torch.device("meta"):
        model = create_model("ac_predictor_vjepa2")
    sd = model.state_dict()
    P, D_enc, hidden = 1024, 1408, 4096
    expected = {
        "predictor_embed.weight": (P, D_enc),
        "predictor_embed.bias": (P,),
        "action_encoder.weight": (P, 7),
        "action_encoder.bias": (P,),
        "state_encoder.weight": (P, 7),
        "state_encoder.bias": (P,),
        "extrinsics_encoder.weight": (P, 6),
        "extrinsics_encoder.bias": (P,),
        "predictor_norm.weight": (P,),
        "predictor_norm.bias": (P,),
        "predictor_proj.weight": (D_enc, P),
        "predictor_proj.bias": (D_enc,),
    }
    for i in range(24):
        block = {
            "norm1.weight": (P,), "norm1.bias": (P,), "attn.qkv.weight": (3 * P, P), "attn.qkv.bias": (3 * P,),
            "attn.proj.weight": (P, P), "attn.proj.bias": (P,), "norm2.weight": (P,), "norm2.bias": (P,),
            "mlp.fc1.weight": (hidden, P), "mlp.fc1.bias": (hidden,), "mlp.fc2.weight": (P, hidden),
            "mlp.fc2.bias": (P,),
        }  # fmt: skip
        expected.update({f"predictor_blocks.{i}.{k}": v for k, v in block.items()})
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert model.num_heads == 16
    assert 290e6 < sum(v.numel() for v in sd.values()) < 320e6  # "~300M"
