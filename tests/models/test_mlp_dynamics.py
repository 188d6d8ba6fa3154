"""The residual-MLP dynamics (jepa_world/models/mlp_dynamics.py): Markov steps and the planner's rollout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jepa_world import create_model
from jepa_world.models.mlp_dynamics import ResidualMlpDynamics
from tests.models.test_ac_predictor import D, _gen
from tests.models.test_small import _randomize_

torch.set_num_threads(1)


def _modules_step(pred: ResidualMlpDynamics, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """One step through the modules' own calls (`nn.Linear`, `nn.LayerNorm`, ...): the reference arithmetic."""
    x = pred.inp(torch.cat([z, a], dim=-1))
    for blk in pred.blocks:
        x = x + blk(x)
    return z + pred.out(x)


def _random_dynamics(**kw) -> ResidualMlpDynamics:
    return _randomize_(ResidualMlpDynamics(embed_dim=D, action_dim=2, hidden_dim=32, **kw)).eval()


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


def test_forward_is_the_modules_arithmetic_bit_for_bit():
    pred = _random_dynamics()
    z, a = torch.randn(4, 3, 1, D, generator=_gen(1)), torch.randn(4, 3, 2, generator=_gen(2))
    with torch.no_grad():
        got = pred(z, a)
        ref = _modules_step(pred, z[:, :, 0], a)[:, :, None]
    assert torch.equal(got, ref)


@pytest.mark.parametrize("latent_norm", [False, True])
def test_rollout_equals_one_forward_call_per_step_bit_for_bit(latent_norm):
    pred = _random_dynamics()
    z0, a = torch.randn(5, D, generator=_gen(3)), torch.randn(5, 7, 2, generator=_gen(4))
    with torch.no_grad():
        got = pred.rollout(z0, a, norm=(lambda z: F.layer_norm(z, (D,))) if latent_norm else None)
        z, ref = z0, []
        for t in range(7):
            z = pred(z[:, None, None], a[:, t : t + 1])[:, 0, 0]
            z = F.layer_norm(z, (D,)) if latent_norm else z
            ref.append(z)
    assert got.shape == (5, 7, D)
    assert torch.equal(got, torch.stack(ref, dim=1))


def test_rollout_is_differentiable_in_actions_and_start():
    pred = _random_dynamics()
    z0 = torch.randn(2, D, generator=_gen(5), requires_grad=True)
    a = torch.randn(2, 4, 2, generator=_gen(6), requires_grad=True)
    pred.rollout(z0, a, norm=lambda z: F.layer_norm(z, (D,)))[:, -1].square().sum().backward()
    assert z0.grad.abs().sum() > 0 and a.grad[:, 0].abs().sum() > 0


def test_rollout_rejects_state_models_and_bad_shapes():
    with pytest.raises(ValueError, match="state_dim > 0"):
        ResidualMlpDynamics(embed_dim=D, action_dim=2, state_dim=3).rollout(torch.zeros(1, D), torch.zeros(1, 2, 2))
    pred = ResidualMlpDynamics(embed_dim=D, action_dim=2)
    with pytest.raises(ValueError, match=rf"z0 must have shape \[N, {D}\]"):
        pred.rollout(torch.zeros(1, 1, D), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"actions must have shape \[3, H, 2\], got \(3, 2, 5\)"):
        pred.rollout(torch.zeros(3, D), torch.zeros(3, 2, 5))
