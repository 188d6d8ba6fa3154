"""The JEPA objective's optional variance-covariance regularisation (VJ-VCR) on the context tokens."""

from __future__ import annotations

import pytest
import torch

from jepa_world.config import load_config
from jepa_world.factory import build_jepa, build_masks
from jepa_world.models.jepa import JEPA
from jepa_world.training import pretrain
from tests.conftest import tiny_overrides


def _vicreg_terms(z: torch.Tensor) -> tuple[float, float]:
    """Variance and covariance terms written out from VICReg's formulas, in float64, on tokens `[B, K, D]`."""
    t = z.detach().double().reshape(-1, z.shape[-1])  # [B * K, D]
    std = torch.sqrt(t.var(dim=0) + 1e-4)
    var = torch.clamp(1.0 - std, min=0.0).mean()
    c = t - t.mean(0)
    cov = c.T @ c / (len(t) - 1)
    off = cov - torch.diag(torch.diag(cov))
    return float(var), float((off**2).sum() / t.shape[1])


def _model_and_batch(tmp_path, **weights) -> tuple[JEPA, dict]:
    cfg = load_config([], tiny_overrides(tmp_path, **weights))
    torch.manual_seed(0)
    model = build_jepa(cfg)
    x = torch.randn(4, 3, cfg.data.num_frames, cfg.data.image_size, cfg.data.image_size)
    masks = build_masks(cfg, model.encoder.grid_size)(4, step=0)
    return model, {"x": x, "masks": masks}


def test_regulariser_adds_the_weighted_vicreg_terms_of_the_context_tokens(tmp_path):
    plain, batch = _model_and_batch(tmp_path)
    reg, _ = _model_and_batch(tmp_path, var_weight=2.0, cov_weight=0.5)
    reg.load_state_dict(plain.state_dict())
    loss_plain, m_plain = plain(batch)
    loss_reg, m_reg = reg(batch)
    assert "var_loss_mask0" not in m_plain
    expected = 0.0
    for i, m in enumerate(batch["masks"]):
        # The prediction part is unchanged; the regulariser is reported per mask config.
        torch.testing.assert_close(m_reg[f"loss_mask{i}"], m_plain[f"loss_mask{i}"])
        var, cov = _vicreg_terms(reg.encoder(batch["x"], m.context_idx))
        assert m_reg[f"var_loss_mask{i}"].item() == pytest.approx(var, rel=1e-4)
        assert m_reg[f"cov_loss_mask{i}"].item() == pytest.approx(cov, rel=1e-4)
        expected += (2.0 * var + 0.5 * cov) / len(batch["masks"])
    assert (loss_reg - loss_plain).item() == pytest.approx(expected, rel=1e-4)


def test_regulariser_gradient_spreads_collapsed_tokens(tmp_path):
    """A step down the regulariser's gradient alone raises the spread of the context tokens."""
    model, batch = _model_and_batch(tmp_path, var_weight=1.0, cov_weight=0.04)
    ctx = batch["masks"][0].context_idx
    with torch.no_grad():  # near-collapse: shrink the output norm's gain so every token is almost the same
        model.encoder.norm.weight.mul_(0.05)
    before = model.encoder(batch["x"], ctx).detach().reshape(-1, model.encoder.embed_dim).std(0).mean()
    opt = torch.optim.SGD(model.encoder.parameters(), lr=5.0)  # the terms are means over D: small gradients
    for _ in range(3):
        opt.zero_grad()
        model._regulariser(model.encoder(batch["x"], ctx), {}, suffix="").backward()
        opt.step()
    after = model.encoder(batch["x"], ctx).detach().reshape(-1, model.encoder.embed_dim).std(0).mean()
    assert after > 1.5 * before, (before, after)


def test_pretraining_logs_the_regulariser_and_rejects_negative_weights(tmp_path):
    pretrain(load_config([], tiny_overrides(tmp_path, var_weight=1.0, cov_weight=0.04)))
    first = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0]
    assert '"var_loss_mask0"' in first and '"cov_loss_mask1"' in first
    model, _ = _model_and_batch(tmp_path)
    with pytest.raises(ValueError, match="var_weight must be >= 0, got -1"):
        JEPA(encoder=model.encoder, predictor=model.predictor, var_weight=-1)
