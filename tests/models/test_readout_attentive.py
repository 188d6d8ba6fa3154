"""The attentive readout (`wm.readout: {type: attentive}`): a part of its own, that keeps where several small objects
are, which pooling the tokens loses."""

from __future__ import annotations

import pytest
import torch

from jepa_world.config import ConfigError, load_config
from jepa_world.config.parts import resolve_part
from jepa_world.models.readout_attentive import AttentiveReadout
from jepa_world.models.vit import VisionTransformer


def _vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2)


def test_shapes_cached_tokens_and_config():
    readout = AttentiveReadout(backbone=_vit(), embed_dim=12, queries=3, value_dim=4, hidden_dim=16).eval()
    x = torch.rand(5, 3, 32, 32)
    z = readout(x)
    assert z.shape == (5, 1, 12) and torch.isfinite(z).all()
    torch.testing.assert_close(readout(readout.frozen_features(x)), z)  # cached tokens = pixels
    weights, _ = readout.attention(readout.frozen_features(x))
    assert weights.shape == (5, 3, 16) and torch.allclose(weights.sum(-1), torch.ones(5, 3))
    assert {n.split(".")[0] for n, p in readout.named_parameters() if p.requires_grad} == {
        "queries",
        "keys",
        "values",
        "mlp",
    }  # fmt: skip  (the frozen backbone does not train)
    cfg = load_config([], ["wm.readout={type: attentive, queries: 2}"], command="train-wm")
    config = resolve_part("readout", cfg.wm.readout, key="wm.readout")
    assert isinstance(config, AttentiveReadout.Config) and config.build(_vit()).num_queries == 2
    with pytest.raises(ConfigError, match="'wm.readout.queries' = 0: must be >= 1"):
        resolve_part("readout", {"type": "attentive", "queries": 0}, key="wm.readout")
    with pytest.raises(ValueError, match="queries=0"):
        AttentiveReadout(backbone=_vit(), queries=0)


def _two_markers(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens of a 4 x 4 grid of noise with two markers in random cells (one lights dim 0, the other dim 1), and
    where they are: the two cells' centres in [-1, 1] units `[n, 4]`."""
    tokens = 0.3 * torch.randn(n, 16, 16, generator=gen)
    cells = torch.randint(0, 16, (n, 2), generator=gen)
    rows = torch.arange(n)
    tokens[rows, cells[:, 0], 0] += 4.0
    tokens[rows, cells[:, 1], 1] += 4.0
    centre = torch.stack([(2 * (cells % 4) + 1) / 4 - 1, (2 * (cells // 4) + 1) / 4 - 1], dim=-1)  # [n, 2, (x, y)]
    return tokens, centre.flatten(1)


def test_it_finds_two_small_objects_where_pooled_tokens_cannot():
    gen = torch.Generator().manual_seed(0)
    train, target = _two_markers(2048, gen)
    test, test_target = _two_markers(512, gen)
    torch.manual_seed(0)
    readout = AttentiveReadout(backbone=_vit(), embed_dim=4, queries=2, value_dim=4, hidden_dim=64)
    pooled = torch.nn.Linear(16, 4)  # the tokens mean-pooled, then linear: where the markers are is gone
    opt = torch.optim.Adam([*readout.parameters(), *pooled.parameters()], lr=3e-3)
    for _ in range(600):
        idx = torch.randint(0, 2048, (128,), generator=gen)
        loss = (readout.read(train[idx])[:, 0] - target[idx]).pow(2).mean()
        loss = loss + (pooled(train[idx].mean(1)) - target[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    readout.eval()
    with torch.no_grad():
        err = (readout.read(test)[:, 0] - test_target).pow(2).mean().item()
        err_pooled = (pooled(test.mean(1)) - test_target).pow(2).mean().item()
    chance = test_target.var(0).mean().item()
    assert err < 0.15 * chance and err_pooled > 0.5 * chance, (err, err_pooled, chance)
