"""The world model (jepa_world/models/world_model.py): its verbs, rollout, loss and loss terms, on the
action-conditioned predictor and the small pooled models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jepa_world.data.episodes import load_npz_trajectory
from jepa_world.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from jepa_world.models.mlp_dynamics import ResidualMlpDynamics
from jepa_world.models.small import PooledEncoder
from jepa_world.models.vit import VisionTransformer
from jepa_world.models.world_model import WorldModel
from jepa_world.objectives.losses import CovarianceTerm, InverseDynamicsTerm, SmoothnessTerm, VarianceTerm
from jepa_world.planning import CEMPlanner
from jepa_world.planning.costs import rollout_cost
from tests.models.test_ac_predictor import D, _gen, _predictor
from tests.models.test_small import _randomize_

torch.set_num_threads(1)  # tiny tensors: thread fan-out only adds latency on a shared 2-core machine

FRANKA = Path(__file__).resolve().parents[3] / "shared" / "data" / "franka_example_traj.npz"


def _vit(img_size: int = 32, patch_size: int = 8, **kw) -> VisionTransformer:
    return VisionTransformer(img_size=img_size, patch_size=patch_size, embed_dim=D, depth=1, num_heads=2, **kw)


def _pooled_wm(action_dim: int = 2, state_dim: int = 0, **kw) -> WorldModel:
    torch.manual_seed(0)
    enc = PooledEncoder(img_size=16, pool=2, hidden_dim=64, embed_dim=D)
    return WorldModel(encoder=enc, predictor=_predictor(action_dim, state_dim), pool=True, **kw)


def _mlp_wm(action_dim: int = 2, state_dim: int = 0, **kw) -> WorldModel:
    torch.manual_seed(0)
    enc = PooledEncoder(img_size=16, pool=2, hidden_dim=64, embed_dim=D)
    pred = ResidualMlpDynamics(embed_dim=D, action_dim=action_dim, state_dim=state_dim, hidden_dim=32)
    return WorldModel(encoder=enc, predictor=pred, pool=True, **kw)


def _patch_wm(action_dim: int = 2, state_dim: int = 0, **kw) -> WorldModel:
    torch.manual_seed(0)
    pred = _predictor(action_dim, state_dim, grid_size=(4, 4))
    return WorldModel(encoder=_vit(), predictor=pred, pool=False, **kw)


def _joint_terms(
    action_dim: int = 2, *, var: float = 1.0, cov: float = 1.0, idm: float = 1.0, smooth: float = 0.0
) -> list[torch.nn.Module]:
    """The anti-collapse terms of joint training, as `factory.build_world_model_terms` builds them."""
    terms = [VarianceTerm(weight=var), CovarianceTerm(weight=cov)]
    if smooth > 0:
        terms.append(SmoothnessTerm(weight=smooth))
    if idm > 0:
        terms.append(InverseDynamicsTerm(embed_dim=D, action_dim=action_dim, weight=idm))
    return terms


def _batch(B: int, T: int, size: int, A: int, S: int = 0, seed: int = 0) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    batch = {"x": torch.randn(B, T, 3, size, size, generator=g), "actions": torch.randn(B, T - 1, A, generator=g)}
    if S:
        batch["states"] = torch.randn(B, T, S, generator=g)
    return batch


# --------------------------------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "size", "hw"),
    [(_patch_wm, 32, 16), (_pooled_wm, 16, 1)],
    ids=["patch_tokens", "pooled"],
)
def test_verb_shapes(make, size, hw):
    wm = make(action_dim=3, state_dim=5)
    batch = _batch(2, 4, size, 3, 5)
    z = wm.encode(batch["x"])
    assert z.shape == (2, 4, hw, D)
    assert wm.encode(batch["x"][:, 0]).shape == (2, 1, hw, D)
    a = torch.randn(2, 4, 3, generator=_gen(1))
    assert wm.predict(z, a, batch["states"]).shape == (2, 4, hw, D)
    assert wm.rollout(z[:, :1], torch.randn(2, 6, 3), batch["states"][:, :1]).shape == (2, 6, hw, D)
    loss, metrics = wm(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"loss", "loss_tf", "loss_rollout", "rollout_err_1", "rollout_err_2", "latent_std"} <= set(metrics)


def test_vit_pooled_gives_one_token_per_frame():
    pred = _predictor(grid_size=(1, 1))
    wm = WorldModel(encoder=_vit(), predictor=pred, pool=True)
    x = torch.randn(2, 3, 3, 32, 32, generator=_gen())
    z = wm.encode(x)
    assert z.shape == (2, 3, 1, D)
    # Pooling happens before the LayerNorm: the pooled latent is normalised.
    torch.testing.assert_close(z.mean(-1), torch.zeros(2, 3, 1), atol=1e-5, rtol=0)
    tokens = wm.encoder(x.flatten(0, 1)).mean(1)  # independent path: encoder, mean, layer norm
    expected = (tokens - tokens.mean(-1, keepdim=True)) / (tokens.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    torch.testing.assert_close(z.flatten(0, 2), expected, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------------------------------------
# Rollout
# --------------------------------------------------------------------------------------------------------------------
def _manual_rollout(wm: WorldModel, z0, actions, states=None, add_states=False):
    """Reference: re-run `predict` on the growing sequence and take its last output each step (no cache)."""
    z, s, T0 = z0, states, z0.shape[1]
    outs = []
    for k in range(actions.shape[1] - T0 + 1):
        n = z.shape[1]
        if s is not None and s.shape[1] < n:
            s = torch.cat([s, s[:, -1:] + actions[:, n - 2 : n - 1] if add_states else s[:, -1:]], dim=1)
        y = wm.predict(z, actions[:, :n], None if s is None else s[:, :n])[:, -1:]
        outs.append(y)
        z = torch.cat([z, y], dim=1)
        assert k == len(outs) - 1
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("make", [_patch_wm, _pooled_wm], ids=["patch_tokens", "pooled"])
def test_rollout_first_step_equals_predict(make):
    wm = make(action_dim=2, state_dim=2)
    size = 32 if make is _patch_wm else 16
    b = _batch(2, 4, size, 2, 2)
    with torch.no_grad():
        z = wm.encode(b["x"])
        a = torch.randn(2, 4, 2, generator=_gen(5))
        tf = wm.predict(z, a, b["states"])
        ar = wm.rollout(z[:, :1], a, b["states"])
    torch.testing.assert_close(ar[:, 0], tf[:, 0], atol=1e-5, rtol=1e-5)
    assert (ar[:, 1:] - tf[:, 1:]).abs().max() > 1e-4  # later steps use the model's own predictions


@pytest.mark.parametrize(("state_update", "T0"), [("hold", 1), ("add", 2), (None, 2)])
def test_rollout_matches_manual_loop(state_update, T0):
    wm = _patch_wm(action_dim=2, state_dim=2 if state_update else 0, state_update=state_update or "hold")
    wm.double().eval()
    z0 = torch.nn.functional.layer_norm(torch.randn(3, T0, 16, D, dtype=torch.float64, generator=_gen(1)), (D,))
    a = torch.randn(3, T0 - 1 + 4, 2, dtype=torch.float64, generator=_gen(2))
    s0 = torch.randn(3, T0, 2, dtype=torch.float64, generator=_gen(3)) if state_update else None
    with torch.no_grad():
        got = wm.rollout(z0, a, s0)
        ref = _manual_rollout(wm, z0, a, s0, add_states=state_update == "add")
    assert got.shape == (3, 4, 16, D)
    torch.testing.assert_close(got, ref, atol=1e-10, rtol=0)


def test_rollout_broadcasts_over_samples():
    wm = _pooled_wm().eval()
    z0 = torch.nn.functional.layer_norm(torch.randn(2, 1, 1, D, generator=_gen(1)), (D,))
    a = torch.randn(2, 5, 3, 2, generator=_gen(2))  # [E, S, H, A]
    with torch.no_grad():
        out = wm.rollout(z0[:, None], a)  # [E, S, H, 1, D] in one call
        for e in range(2):
            for i in range(5):
                torch.testing.assert_close(out[e, i], wm.rollout(z0[e : e + 1], a[e, i : i + 1])[0])
    assert out.shape == (2, 5, 3, 1, D)


# --------------------------------------------------------------------------------------------------------------------
# Training loss
# --------------------------------------------------------------------------------------------------------------------
def test_frozen_encoder_gets_no_gradient():
    wm = _patch_wm()
    wm.train()
    assert not wm.encoder.training  # frozen encoder stays in eval mode
    assert not wm.encode(torch.randn(1, 2, 3, 32, 32)).requires_grad  # no graph kept through a frozen encoder
    loss, _ = wm(_batch(2, 3, 32, 2))
    loss.backward()
    assert all(p.grad is None for p in wm.encoder.parameters())
    grads = [p.grad for p in wm.predictor.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert wm.inverse_dynamics is None


def test_latent_norm_false_keeps_a_frozen_encoders_raw_latents_and_predictions():
    x, a = torch.randn(2, 3, 3, 16, 16), torch.randn(2, 2, 2)
    normed, raw = _mlp_wm(), _mlp_wm(latent_norm=False)  # both frozen (the default), the same weights
    assert normed.latent_norm and not raw.latent_norm and raw.config["latent_norm"] is False
    with torch.no_grad():
        h = raw.encoder(x.flatten(0, 1)).unflatten(0, (2, 3))  # [B, T, 1, D]
        z_raw, z_normed = raw.encode(x), normed.encode(x)
        assert torch.equal(z_raw, h)
        assert torch.allclose(z_normed, torch.nn.functional.layer_norm(h, (D,)))
        rolled = raw.rollout(z_raw[:, :1], a)  # [B, 2, 1, D]: the predictor's raw outputs fed back
        manual = raw.predictor(z_raw[:, :1], a[:, :1])
        assert torch.allclose(rolled[:, :1], manual, atol=1e-6)
        assert not torch.allclose(rolled.std(-1), torch.ones(()), atol=1e-2)


def test_joint_training_adds_regularisers_and_idm():
    wm = _pooled_wm(freeze_encoder=False, terms=_joint_terms(var=0.5, cov=0.25, idm=2.0))
    b = _batch(8, 4, 16, 2)
    loss, m = wm(b)
    for key in ("loss_var", "loss_cov", "loss_idm"):
        assert key in m and torch.isfinite(m[key])
    expected = m["loss_tf"] + m["loss_rollout"] + 0.5 * m["loss_var"] + 0.25 * m["loss_cov"] + 2.0 * m["loss_idm"]
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    for module in (wm.encoder, wm.inverse_dynamics, wm.predictor):
        assert sum(p.grad.abs().sum() for p in module.parameters()) > 0
    # A frozen model has none of the extra terms.
    assert not {"loss_var", "loss_cov", "loss_idm"} & set(_pooled_wm()(b)[1])


def _moving_point(n: int, T: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """A dot on a line moving by 1.5 px times its action in [-1, 1], drawn as a soft vertical bar."""
    g = _gen(seed)
    pos = [torch.rand(n, generator=g) * (size - 6) + 3]
    actions = torch.rand(n, T - 1, 1, generator=g) * 2 - 1
    for t in range(T - 1):
        pos.append((pos[-1] + 1.5 * actions[:, t, 0]).clamp(2, size - 3))
    pos = torch.stack(pos, dim=1)  # [n, T]
    row = torch.exp(-((torch.arange(size) - pos[..., None]) ** 2) / 2.0)  # [n, T, size]
    return {"x": row[:, :, None, None, :].expand(n, T, 3, size, size).contiguous(), "actions": actions}


def test_overfits_moving_point():
    wm = _pooled_wm(action_dim=1, rollout_steps=3)
    data = _moving_point(256, 4, 16, seed=0)
    opt = torch.optim.AdamW(wm.predictor.parameters(), lr=3e-3)
    g = _gen(1)
    losses = []
    for _ in range(100):
        idx = torch.randint(0, 256, (32,), generator=g)
        loss, _ = wm({"x": data["x"][idx], "actions": data["actions"][idx]})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < 0.5 * first, (first, last)
    # On held-out sequences it beats copying the current latent, and only with the true actions.
    test = _moving_point(128, 4, 16, seed=7)
    with torch.no_grad():
        z = wm.encode(test["x"])
        err = (wm.predict(z[:, :-1], test["actions"]) - z[:, 1:]).abs().mean()
        err_copy = (z[:, :-1] - z[:, 1:]).abs().mean()
        err_no_action = (wm.predict(z[:, :-1], torch.zeros_like(test["actions"])) - z[:, 1:]).abs().mean()
    assert err < 0.8 * err_copy and err < 0.8 * err_no_action, (err, err_copy, err_no_action)


# --------------------------------------------------------------------------------------------------------------------
# Dims from the data, bad inputs
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("A", "S"), [(2, 0), (7, 7), (7, 3)])
def test_action_and_state_dims_from_data(A, S):
    wm = _pooled_wm(action_dim=A, state_dim=S)
    assert wm.predictor.action_encoder.in_features == A
    assert (wm.predictor.state_encoder is None) == (S == 0)
    loss, _ = wm(_batch(2, 3, 16, A, S))
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="actions"):
        wm(_batch(2, 3, 16, A + 1, S))
    if S:
        with pytest.raises(ValueError, match="states"):
            wm(_batch(2, 3, 16, A, S + 1))
        with pytest.raises(ValueError, match="states"):
            wm(_batch(2, 3, 16, A))


def test_bad_construction_and_inputs():
    with pytest.raises(ValueError, match="embed_dim"):
        WorldModel(encoder=PooledEncoder(img_size=16, embed_dim=D + 1), predictor=_predictor())
    with pytest.raises(ValueError, match="action_dim"):
        _predictor(action_dim=0)
    with pytest.raises(ValueError, match="state_update"):
        _pooled_wm(state_update="teleport")
    pred = _predictor()
    with pytest.raises(ValueError, match="state_dim=0"):
        pred(torch.randn(1, 2, 1, D), torch.randn(1, 2, 2), torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match="grid_size"):
        pred(torch.randn(1, 2, 3, D), torch.randn(1, 2, 2))
    with pytest.raises(ValueError, match="context frames"):
        _pooled_wm().rollout(torch.randn(1, 3, 1, D), torch.randn(1, 2, 2))


# --------------------------------------------------------------------------------------------------------------------
# The real robot sample
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not FRANKA.is_file(), reason=f"shared Franka sample not present at {FRANKA}")
def test_franka_sample_encode_predict_plan():
    traj = load_npz_trajectory(FRANKA, angle_dims=(3, 4, 5))
    frames, states, actions = (torch.from_numpy(traj[k]) for k in ("frames", "states", "actions"))
    A, S = actions.shape[-1], states.shape[-1]
    assert frames.shape == (2, 256, 256, 3) and (A, S) == (7, 7)
    x = frames.permute(0, 3, 1, 2).float().div(255)
    x = ((x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None])[None]
    torch.manual_seed(0)
    pred = _predictor(action_dim=A, state_dim=S, grid_size=(8, 8))
    wm = WorldModel(encoder=_vit(img_size=256, patch_size=32), predictor=pred, state_update="add").eval()
    with torch.no_grad():
        z = wm.encode(x)  # [1, 2, 64, D]
        z_next = wm.predict(z[:, :1], actions[None], states[None, :1])
        loss, _ = wm({"x": x, "actions": actions[None], "states": states[None]})
    assert z.shape == (1, 2, 64, D) and z_next.shape == (1, 1, 64, D)
    assert torch.isfinite(z_next).all() and torch.isfinite(loss)

    low = torch.tensor([-0.1] * 3 + [-0.2] * 3 + [0.0])
    high = torch.tensor([0.1] * 3 + [0.2] * 3 + [1.0])
    planner = CEMPlanner(horizon=2, action_dim=A, num_samples=12, num_elites=3, iterations=2, low=low, high=high,
                         init_std=0.05)  # fmt: skip
    cost_fn = rollout_cost(wm, z[:, :1], z[:, 1], states=states[None, :1])
    result = planner.plan(cost_fn, num_envs=1, generator=_gen(0))
    assert result.actions.shape == (1, 2, A) and torch.isfinite(result.actions).all()
    assert (result.actions >= low).all() and (result.actions <= high).all()
    assert torch.isfinite(result.cost).all() and result.iterations == 2


# --------------------------------------------------------------------------------------------------------------------
# Residual-MLP dynamics (pooled latents)
# --------------------------------------------------------------------------------------------------------------------
def test_mlp_world_model_rollout_matches_manual_loop():
    wm = _mlp_wm(freeze_encoder=False)  # raw latents (a frozen encoder's would be layer-normed after each step)
    _randomize_(wm.predictor).double().eval()
    z0 = torch.randn(3, 1, 1, D, dtype=torch.float64, generator=_gen(1))
    a = torch.randn(3, 6, 2, dtype=torch.float64, generator=_gen(2))
    with torch.no_grad():
        got = wm.rollout(z0, a)
        z, ref = z0[:, 0, 0], []
        for t in range(6):
            z = z + wm.predictor.out(_mlp_hidden(wm.predictor, z, a[:, t]))
            ref.append(z)
    torch.testing.assert_close(got[:, :, 0], torch.stack(ref, dim=1), atol=1e-12, rtol=0)


def _mlp_hidden(pred: ResidualMlpDynamics, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    x = pred.inp(torch.cat([z, a], dim=-1))
    for blk in pred.blocks:
        x = x + blk(x)
    return x


def test_mlp_world_model_trains_with_smoothness_term():
    wm = _mlp_wm(freeze_encoder=False, terms=_joint_terms(var=0.5, cov=0.25, idm=2.0, smooth=3.0))
    loss, m = wm(_batch(8, 4, 16, 2))
    expected = (m["loss_tf"] + m["loss_rollout"] + 0.5 * m["loss_var"] + 0.25 * m["loss_cov"] + 2.0 * m["loss_idm"]
                + 3.0 * m["loss_smooth"])  # fmt: skip
    torch.testing.assert_close(loss.detach(), expected)
    z = wm.encode(_batch(8, 4, 16, 2)["x"]).detach()
    torch.testing.assert_close(m["loss_smooth"], (z[:, 1:] - z[:, :-1]).pow(2).sum(-1).mean())
    loss.backward()
    assert sum(p.grad.abs().sum() for p in wm.predictor.parameters()) > 0
    assert "loss_smooth" not in _mlp_wm(freeze_encoder=False, terms=_joint_terms())(_batch(8, 4, 16, 2))[1]


def test_loss_terms_go_with_joint_training_only():
    with pytest.raises(ValueError, match="freeze_encoder=True"):
        _pooled_wm(freeze_encoder=True, terms=_joint_terms())
    wm = _pooled_wm(freeze_encoder=False, terms=_joint_terms(idm=0.0))
    assert wm.inverse_dynamics is None and len(wm.terms) == 2
    assert wm.config["freeze_encoder"] is False and "terms" not in wm.config  # modules keep their own config


def test_precomputed_frozen_tokens_give_the_same_loss_as_pixels():
    from jepa_world.models.readout_mlp import MlpReadout

    torch.manual_seed(0)
    readout = MlpReadout(backbone=_vit(), embed_dim=D, hidden_dim=16)
    pred = ResidualMlpDynamics(embed_dim=D, action_dim=2, hidden_dim=32)
    wm = WorldModel(encoder=readout, predictor=pred, pool=True, freeze_encoder=False, terms=_joint_terms()).eval()
    b = _batch(4, 3, 32, 2)
    with torch.no_grad():
        tokens = readout.backbone(b["x"].flatten(0, 1)).unflatten(0, (4, 3))  # [B, T, N, D]
        loss_pixels, m_pixels = wm(b)
        loss_tokens, m_tokens = wm({"tokens": tokens, "actions": b["actions"]})
    torch.testing.assert_close(loss_tokens, loss_pixels)
    torch.testing.assert_close(m_tokens["loss_tf"], m_pixels["loss_tf"])
    with pytest.raises(ValueError, match=r"tokens'\] must be \[B, T >= 2, N, D\]"):
        wm({"tokens": tokens[:, 0], "actions": b["actions"]})


def test_a_readout_that_trains_the_last_blocks_reads_their_frozen_prefix():
    from jepa_world.models.readout_mlp import MlpReadout

    torch.manual_seed(0)
    backbone = VisionTransformer(img_size=32, patch_size=8, embed_dim=D, depth=2, num_heads=2)
    depth = 2
    readout = MlpReadout(backbone=backbone, embed_dim=D, hidden_dim=16, freeze_backbone=False, trainable_blocks=1)
    trains = {n for n, p in readout.backbone.named_parameters() if p.requires_grad}
    assert trains and all(n.startswith((f"blocks.{depth - 1}.", "norm.")) for n in trains)
    assert readout.caches_features and readout.frozen_blocks == depth - 1
    readout.eval()
    x = torch.rand(4, 3, 32, 32)
    z = readout(x)
    torch.testing.assert_close(readout(readout.frozen_features(x)), z)  # cached prefix = pixels
    with torch.no_grad():  # the suffix is the backbone's own last block: the whole ViT on pixels
        whole = readout.mlp(readout.input_norm(backbone(x).flatten(1)))[:, None]
    torch.testing.assert_close(whole, z, atol=1e-6, rtol=1e-6)
    readout.train()
    readout(readout.frozen_features(x)).square().sum().backward()
    assert backbone.blocks[-1].attn.qkv.weight.grad.abs().sum() > 0  # gradients reach the trained block
    assert all(p.grad is None for p in backbone.blocks[0].parameters())
    with pytest.raises(ValueError, match="trainable_blocks=5 needs freeze_backbone=False"):
        MlpReadout(backbone=_vit(), embed_dim=D, freeze_backbone=False, trainable_blocks=5)
    with pytest.raises(ValueError, match="trainable_blocks=1 needs freeze_backbone=False"):
        MlpReadout(backbone=_vit(), embed_dim=D, trainable_blocks=1)


@pytest.mark.parametrize("freeze", [True, False])
def test_mlp_world_model_rollout_is_the_generic_step_loop_bit_for_bit(freeze):
    # WorldModel.rollout hands a Markov MLP to its own rollout (no cache); the generic loop is predict one frame at a
    # time, layer-normed when the encoder is frozen: the same numbers, broadcast over samples as the planner calls it.
    wm = _mlp_wm(freeze_encoder=freeze)
    _randomize_(wm.predictor).eval()
    z0 = torch.randn(2, 1, 1, 1, D, generator=_gen(1))  # [E, 1, T0, HW, D]
    a = torch.randn(2, 3, 5, 2, generator=_gen(2))  # [E, S, H, A]
    with torch.no_grad():
        got = wm.rollout(z0, a)  # [E, S, H, 1, D]
        z, ref = z0.expand(2, 3, 1, 1, D).flatten(0, 1), []
        for t in range(5):
            z = wm.predict(z, a.flatten(0, 1)[:, t : t + 1])
            ref.append(z)
    assert got.shape == (2, 3, 5, 1, D)
    assert torch.equal(got, torch.cat(ref, dim=1).unflatten(0, (2, 3)))
