"""The small pooled models (jepa_world/models/small.py): the residual-MLP dynamics and the pooled-pixel encoder."""

from __future__ import annotations

import pytest
import torch

from jepa_world import create_model
from jepa_world.models.small import PooledEncoder, ResidualMlpDynamics
from tests.models.test_ac_predictor import D, _gen

torch.set_num_threads(1)


def _randomize_(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():  # the zero-initialised output layers would hide every input dependence
        for p in module.parameters():
            p.normal_(0.0, 0.2, generator=_gen(9))
    return module


def test_mlp_dynamics_starts_as_identity_and_is_markov():
    pred = ResidualMlpDynamics(embed_dim=D, action_dim=2, state_dim=3, hidden_dim=32)
    z, a, s = torch.randn(2, 5, 1, D), torch.randn(2, 5, 2), torch.randn(2, 5, 3)
    torch.testing.assert_close(pred(z, a, s), z)  # untrained: "nothing moves"
    _randomize_(pred)
    out = pred(z, a, s)
    assert out.shape == (2, 5, 1, D) and (out - z).abs().max() > 1e-3
    z2, a2 = z.clone(), a.clone()
    z2[:, 3], a2[:, 1] = torch.randn(2, 1, D), torch.randn(2, 2)
    out2 = pred(z2, a2, s)
    changed = (out2 - out).abs().flatten(2).amax(dim=(0, 2)) > 1e-6  # [T]
    assert changed.tolist() == [False, True, False, True, False]  # each output sees only its own frame and action


def test_mlp_dynamics_rejects_patch_tokens_and_bad_dims():
    pred = ResidualMlpDynamics(embed_dim=D, action_dim=2)
    with pytest.raises(ValueError, match=r"one pooled latent per frame"):
        pred(torch.randn(1, 2, 4, D), torch.randn(1, 2, 2))
    with pytest.raises(ValueError, match=r"actions must have shape \(1, 2, 2\)"):
        pred(torch.randn(1, 2, 1, D), torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match="state_dim=0"):
        pred(torch.randn(1, 2, 1, D), torch.randn(1, 2, 2), torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match="hidden_dim must be an int >= 1, got 0"):
        ResidualMlpDynamics(embed_dim=D, action_dim=2, hidden_dim=0)
    assert isinstance(create_model("dynamics_mlp", embed_dim=D, action_dim=2), ResidualMlpDynamics)


def test_pooled_encoder_input_norm_removes_the_static_background():
    # A bright static background and a small moving dot: the dot must dominate what the encoder's MLP sees.
    g = _gen(3)
    background = torch.rand(3, 16, 16, generator=g) * 4
    x = background.expand(64, 3, 16, 16).clone()
    cols = torch.randint(0, 16, (64,), generator=g)
    x[torch.arange(64), :, 8, cols] += 1.0  # the only thing that changes between frames
    stds = {}
    for norm in (False, True):
        torch.manual_seed(0)
        enc = PooledEncoder(img_size=16, pool=1, hidden_dim=64, embed_dim=D, input_norm=norm)
        z = enc(x)[:, 0]  # [64, D] (train mode: batch statistics)
        stds[norm] = (z.std(0) / z.abs().mean(0)).mean().item()  # spread across frames relative to the offset
        if norm:
            enc.eval()  # running statistics after one batch, as a planner uses them
            assert torch.isfinite(enc(x[:2])).all()
    assert stds[True] > 3 * stds[False], stds  # measured: 0.82 vs 0.17
    assert PooledEncoder(img_size=16, pool=2, input_norm=False).input_norm is None
