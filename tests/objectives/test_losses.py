"""jepa_world.objectives.losses: the JEPA regression losses, target normalisation, collapse diagnostics, VICReg."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jepa_world.objectives.losses import (
    collapse_diagnostics,
    collapse_metrics,
    covariance_loss,
    effective_rank,
    feature_std,
    jepa_loss,
    layer_norm_targets,
    mean_cosine_similarity,
    variance_loss,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _centred_orthonormal_columns(n: int, k: int, seed: int) -> torch.Tensor:
    """[n, k] with orthonormal, zero-mean columns (so centring leaves the matrix unchanged)."""
    a = torch.randn(n, k, generator=_gen(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(a - a.mean(dim=0))
    return q


def _orthonormal_rows(k: int, d: int, seed: int) -> torch.Tensor:
    """[k, d] with orthonormal rows."""
    q, _ = torch.linalg.qr(torch.randn(d, k, generator=_gen(seed), dtype=torch.float64))
    return q.T


# ---------------------------------------------------------------------------- jepa_loss, layer_norm_targets


@pytest.mark.parametrize(
    ("kind", "reference"), [("smooth_l1", F.smooth_l1_loss), ("l1", F.l1_loss), ("mse", F.mse_loss)]
)
def test_jepa_loss_matches_torch_on_flattened(kind, reference):
    z = torch.randn(2, 5, 8, generator=_gen(0)) * 2  # scale so smooth-L1 sees both of its branches
    h = torch.randn(2, 5, 8, generator=_gen(1))
    loss = jepa_loss(z, h, kind=kind)
    assert loss.shape == ()
    torch.testing.assert_close(loss, reference(z.flatten(), h.flatten()))


def test_jepa_loss_explicit_formulas():
    z = torch.randn(3, 4, 6, generator=_gen(2), dtype=torch.float64) * 3
    h = torch.randn(3, 4, 6, generator=_gen(3), dtype=torch.float64)
    d = (z - h).numpy()
    a = np.abs(d)
    smooth = np.where(a < 1.0, 0.5 * d**2, a - 0.5).mean()
    assert jepa_loss(z, h).item() == pytest.approx(smooth, rel=1e-12)  # default is smooth_l1 (I-JEPA)
    assert jepa_loss(z, h, kind="l1").item() == pytest.approx(a.mean(), rel=1e-12)
    assert jepa_loss(z, h, kind="mse").item() == pytest.approx((d**2).mean(), rel=1e-12)


def test_jepa_loss_gradient_flows_to_predictions():
    z = torch.randn(4, 8, generator=_gen(4), requires_grad=True)
    h = torch.randn(4, 8, generator=_gen(5))
    jepa_loss(z, h, kind="l1").backward()
    torch.testing.assert_close(z.grad, torch.sign(z.detach() - h) / z.numel())


def test_jepa_loss_errors():
    z = torch.zeros(2, 3, 8)
    with pytest.raises(ValueError, match=r"\(2, 3, 8\).*\(2, 4, 8\)"):
        jepa_loss(z, torch.zeros(2, 4, 8))
    with pytest.raises(ValueError, match="huber"):
        jepa_loss(z, z, kind="huber")


def test_layer_norm_targets():
    h = torch.randn(2, 7, 16, generator=_gen(6), dtype=torch.float64) * 5 + 3
    out = layer_norm_targets(h)
    x = h.numpy()
    expected = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)
    assert out.shape == h.shape and out.dtype == h.dtype


# ---------------------------------------------------------------------------- diagnostics


def test_feature_std_matches_numpy():
    h = torch.randn(3, 10, 6, generator=_gen(7)) * torch.arange(1, 7)
    expected = h.reshape(-1, 6).double().numpy().std(axis=0, ddof=1).mean()
    assert feature_std(h).item() == pytest.approx(expected, rel=1e-5)


def test_feature_std_of_constant_features_is_zero():
    row = torch.randn(12, generator=_gen(8))
    h = row.expand(4, 9, 12)  # every token has the same feature vector
    assert feature_std(h).item() == 0.0


@pytest.mark.parametrize("k", [1, 3, 7])
def test_effective_rank_equal_singular_values(k):
    n, d = 64, 24
    h = 2.5 * _centred_orthonormal_columns(n, k, seed=k) @ _orthonormal_rows(k, d, seed=100 + k)  # s = 2.5 (k times)
    assert torch.linalg.matrix_rank(h).item() == k
    assert effective_rank(h.float()).item() == pytest.approx(k, rel=1e-4)
    assert effective_rank(h).item() == pytest.approx(k, rel=1e-9)


def test_effective_rank_matches_entropy_formula():
    h = torch.randn(50, 10, generator=_gen(9), dtype=torch.float64) * torch.linspace(0.1, 3.0, 10, dtype=torch.float64)
    x = h.numpy()
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    expected = np.exp(-(p * np.log(p)).sum())
    assert effective_rank(h).item() == pytest.approx(expected, rel=1e-10)
    assert 1.0 <= expected <= 10.0


def test_effective_rank_rank_one_and_collapse():
    g = _gen(10)
    u = torch.randn(40, 1, generator=g) + 5.0  # not centred: the column mean is removed inside
    v = torch.randn(1, 16, generator=g)
    assert effective_rank(u @ v).item() == pytest.approx(1.0, abs=1e-3)
    collapsed = torch.randn(16, generator=g).expand(40, 16)  # identical rows: centred matrix is exactly 0
    assert effective_rank(collapsed).item() == 1.0


def test_effective_rank_bounds_on_random_features():
    h = torch.randn(30, 8, generator=_gen(11))
    r = effective_rank(h).item()
    assert 1.0 <= r <= 8.0
    assert r > 6.0  # isotropic Gaussian features are close to full rank


def test_mean_cosine_similarity_identical_rows_is_one():
    row = torch.randn(32, generator=_gen(12))
    h = torch.stack([row, 2 * row, 0.5 * row, 7 * row])  # positive rescaling keeps the direction
    assert mean_cosine_similarity(h).item() == pytest.approx(1.0, abs=1e-6)


def test_mean_cosine_similarity_matches_explicit_pairs():
    h = torch.randn(2, 6, 5, generator=_gen(13), dtype=torch.float64) + 0.3
    x = h.reshape(-1, 5).numpy()
    n = len(x)
    sims = [x[i] @ x[j] / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])) for i in range(n) for j in range(n) if i != j]
    assert mean_cosine_similarity(h).item() == pytest.approx(np.mean(sims), rel=1e-10)


def test_mean_cosine_similarity_opposite_rows():
    row = torch.randn(8, generator=_gen(14))
    assert mean_cosine_similarity(torch.stack([row, -row])).item() == pytest.approx(-1.0, abs=1e-6)


def test_diagnostics_are_float32_and_no_grad():
    h = torch.randn(20, 6, generator=_gen(15), requires_grad=True).to(torch.float16)
    for fn in (feature_std, effective_rank, mean_cosine_similarity):
        out = fn(h)
        assert out.dtype == torch.float32 and not out.requires_grad, fn.__name__


def test_diagnostics_need_two_rows():
    with pytest.raises(ValueError, match="rows"):
        feature_std(torch.randn(1, 1, 8))
    with pytest.raises(ValueError, match="shape"):
        effective_rank(torch.randn(8))


def test_collapse_diagnostics_keys_and_values():
    h = torch.randn(2, 50, 12, generator=_gen(16))
    out = collapse_diagnostics(h)
    assert set(out) == {"feat_std", "eff_rank", "mean_cos"}
    assert all(isinstance(v, float) for v in out.values())
    assert out["feat_std"] == pytest.approx(feature_std(h).item(), rel=1e-6)
    assert out["eff_rank"] == pytest.approx(effective_rank(h).item(), rel=1e-6)
    assert out["mean_cos"] == pytest.approx(mean_cosine_similarity(h).item(), abs=1e-6)


def test_collapse_metrics_are_tensors_and_nan_on_nonfinite_features():
    h = torch.randn(4, 30, 8, generator=_gen(18))
    out = collapse_metrics(h)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in out.values())
    assert {k: v.item() for k, v in out.items()} == collapse_diagnostics(h)
    for bad in (math.nan, math.inf):
        broken = h.clone()
        broken[1, 3, 2] = bad
        assert all(math.isnan(v) for v in collapse_diagnostics(broken).values()), bad


def test_collapse_diagnostics_collapsed_features():
    h = torch.randn(6, generator=_gen(17)).expand(3, 10, 6)
    out = collapse_diagnostics(h)
    assert out["feat_std"] == 0.0
    assert out["eff_rank"] == 1.0
    assert out["mean_cos"] == pytest.approx(1.0, abs=1e-6)


def test_collapse_diagnostics_subsamples_evenly_spaced_rows():
    n, max_rows = 1000, 64
    # features are functions of the row index, so the statistics identify which rows were sampled
    idx = torch.arange(n, dtype=torch.float64)
    h = torch.stack([idx, idx**2, torch.sin(idx), torch.cos(idx), torch.sqrt(idx)], dim=1)
    out = collapse_diagnostics(h, max_rows=max_rows)
    rows = np.floor(np.arange(max_rows) * n / max_rows).astype(int)  # evenly spaced, first row included
    assert len(set(rows)) == max_rows and rows[0] == 0
    x = h.numpy()[rows]
    assert out["feat_std"] == pytest.approx(x.std(axis=0, ddof=1).mean(), rel=1e-9)
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    assert out["eff_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    # deterministic
    assert collapse_diagnostics(h, max_rows=max_rows) == out
    # below the cap nothing is dropped
    full = collapse_diagnostics(h, max_rows=n)
    assert full["feat_std"] == pytest.approx(h.numpy().std(axis=0, ddof=1).mean(), rel=1e-9)
    assert full["feat_std"] != pytest.approx(out["feat_std"], rel=1e-3)


def test_collapse_diagnostics_bad_max_rows():
    with pytest.raises(ValueError, match="max_rows"):
        collapse_diagnostics(torch.randn(10, 4), max_rows=1)


# ---------------------------------------------------------------------------- VICReg terms


def test_variance_loss_matches_formula():
    z = torch.randn(32, 6, generator=_gen(18), dtype=torch.float64) * torch.tensor([0.1, 0.5, 0.9, 1.0, 2.0, 3.0])
    x = z.numpy()
    expected = np.maximum(0.0, 1.0 - np.sqrt(x.var(axis=0, ddof=1) + 1e-4)).mean()
    assert variance_loss(z).item() == pytest.approx(expected, rel=1e-10)
    expected_g = np.maximum(0.0, 2.0 - np.sqrt(x.var(axis=0, ddof=1) + 1e-2)).mean()
    assert variance_loss(z, gamma=2.0, eps=1e-2).item() == pytest.approx(expected_g, rel=1e-10)


def test_variance_loss_spread_vs_collapsed():
    spread = torch.randn(256, 16, generator=_gen(19)) * 3.0  # every dim has std ~3 > gamma
    assert variance_loss(spread).item() == 0.0
    collapsed = torch.randn(16, generator=_gen(20)).expand(256, 16)
    loss = variance_loss(collapsed)
    assert loss.item() == pytest.approx(1.0 - np.sqrt(1e-4), rel=1e-5)  # std 0 -> hinge at gamma - sqrt(eps)
    assert loss.item() > 0.9


def test_variance_loss_pushes_std_up():
    z = (torch.randn(64, 8, generator=_gen(21)) * 0.1).requires_grad_()
    variance_loss(z).backward()
    # gradient descent on the hinge expands the features away from their mean
    centred = z.detach() - z.detach().mean(dim=0)
    assert (z.grad * centred).sum().item() < 0


def test_covariance_loss_zero_for_decorrelated():
    z = 3.0 * _centred_orthonormal_columns(100, 10, seed=22)  # orthogonal zero-mean columns, equal scale
    assert covariance_loss(z).item() == pytest.approx(0.0, abs=1e-12)
    shifted = z + torch.arange(10, dtype=torch.float64)  # a per-dim offset does not change covariance
    assert covariance_loss(shifted).item() == pytest.approx(0.0, abs=1e-12)


def test_covariance_loss_matches_numpy():
    g = _gen(23)
    base = torch.randn(40, 3, generator=g, dtype=torch.float64)
    z = torch.cat([base, base @ torch.randn(3, 4, generator=g, dtype=torch.float64)], dim=1)  # correlated dims
    c = np.cov(z.numpy(), rowvar=False)  # ddof=1
    expected = (c**2).sum() - (np.diag(c) ** 2).sum()
    assert covariance_loss(z).item() == pytest.approx(expected / 7, rel=1e-10)
    assert covariance_loss(z).item() > 0.1


# --------------------------------------------------------------------------------------------------------------------
# World-model loss terms
# --------------------------------------------------------------------------------------------------------------------
def test_world_model_terms_match_their_formulas():
    from jepa_world.objectives.losses import CovarianceTerm, InverseDynamicsTerm, SmoothnessTerm, VarianceTerm

    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, 2, 8, generator=g, dtype=torch.float64)  # [B, T, HW, D]
    actions = torch.randn(6, 3, 2, generator=g, dtype=torch.float64)
    frames = [z[:, t].reshape(-1, 8) for t in range(4)]  # each frame's latents over the batch [B*HW, D]
    expected = {
        "loss_var": sum(variance_loss(f) for f in frames) / 4,
        "loss_cov": sum(covariance_loss(f) for f in frames) / 4,
        "loss_smooth": sum(((z[:, t + 1] - z[:, t]) ** 2).sum(-1).mean() for t in range(3)) / 3,
    }
    for term in (VarianceTerm(weight=2.0), CovarianceTerm(weight=0.5), SmoothnessTerm(weight=3.0)):
        loss, metrics = term(z, actions)
        ((name, raw),) = metrics.items()
        torch.testing.assert_close(raw, expected[name])
        torch.testing.assert_close(loss, term.weight * expected[name])
    idm = InverseDynamicsTerm(embed_dim=8, action_dim=2, hidden_dim=16, weight=2.0).double()
    loss, metrics = idm(z, actions)
    pred = idm.mlp(torch.cat([z[:, :-1].mean(-2), z[:, 1:].mean(-2)], dim=-1))  # [B, T-1, A]
    torch.testing.assert_close(metrics["loss_idm"], ((pred - actions) ** 2).mean())
    torch.testing.assert_close(loss, 2.0 * metrics["loss_idm"])
    assert set(idm.state_dict()) == {"mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"}
    with pytest.raises(ValueError, match="weight must be >= 0"):
        VarianceTerm(weight=-1.0)


def test_collapse_health_warns_on_collapse_and_stays_quiet_otherwise():
    from jepa_world.objectives.losses import collapse_health

    def logged(step, std, rank, cos):
        return {"step": step, "target_feat_std": std, "target_eff_rank": rank, "target_mean_cos": cos}

    summary, warning = collapse_health(logged(10, 0.60, 85, 0.59), logged(200, 0.58, 81, 0.62))
    assert summary.startswith("target std 0.60 -> 0.58, effective rank 85 -> 81") and warning == ""
    # The default job before this session's fix: cosine 0.59 -> 0.96, effective rank 85 -> 53.
    _, warning = collapse_health(logged(10, 0.60, 85, 0.59), logged(200, 0.20, 53, 0.96))
    assert "mean token cosine 0.96 > 0.9" in warning and "effective rank fell from 85 to 53" in warning
    _, warning = collapse_health(logged(10, 0.6, 85, 0.5), logged(20, float("nan"), float("nan"), float("nan")))
    assert warning.startswith("the target features are not finite at step 20 (std nan")  # diverged, not "nan > 0.9"
    assert collapse_health({}, logged(200, 0.2, 53, 0.96)) == ("", "")  # nothing logged: nothing to say
