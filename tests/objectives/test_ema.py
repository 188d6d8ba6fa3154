"""Tests for jepa_world.objectives.ema: the fused update against the explicit formula, and the EMA module wrapper."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from jepa_world.objectives.ema import EMA, ema_update_
from jepa_world.objectives.schedules import constant, linear


def _random_tensors(shapes, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=dtype) for shape in shapes]


class _Net(nn.Module):
    """Small net with a fixed (non-trainable) parameter and a buffer, like a ViT's sin-cos pos_embed."""

    def __init__(self, *, seed: int, width: int = 6) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.pos_embed = nn.Parameter(torch.randn(1, 4, width, generator=g), requires_grad=False)
        self.proj = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.register_buffer("running", torch.randn(width, generator=g))
        with torch.no_grad():
            for p in (self.proj.weight, self.proj.bias, self.norm.weight, self.norm.bias):
                p.copy_(torch.randn(p.shape, generator=g))


SHAPES = [(3, 5), (7,), (2, 3, 4), (1,)]


# ---------------------------------------------------------------------------- ema_update_


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("momentum", [0.5, 0.9, 0.996, 0.99925])
def test_ema_update_matches_formula(dtype, momentum):
    target = _random_tensors(SHAPES, dtype, seed=0)
    online = _random_tensors(SHAPES, dtype, seed=1)
    expected = [momentum * t.double() + (1 - momentum) * o.double() for t, o in zip(target, online)]
    online_before = [o.clone() for o in online]
    ema_update_(target, online, momentum)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    for t, e in zip(target, expected):
        assert t.dtype == dtype
        torch.testing.assert_close(t.double(), e, rtol=0, atol=tol)
    for o, ob in zip(online, online_before):
        assert torch.equal(o, ob)  # online is read-only


def test_ema_update_mixed_dtype_groups():
    target = _random_tensors(SHAPES, torch.float32, seed=2) + _random_tensors(SHAPES, torch.float64, seed=3)
    online = _random_tensors(SHAPES, torch.float32, seed=4) + _random_tensors(SHAPES, torch.float64, seed=5)
    expected = [0.8 * t.double() + 0.2 * o.double() for t, o in zip(target, online)]
    ema_update_(target, online, 0.8)
    for t, e in zip(target, expected):
        torch.testing.assert_close(t.double(), e, rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_momentum_one_keeps_target_and_zero_copies_online(dtype):
    target = _random_tensors(SHAPES, dtype, seed=6)
    online = _random_tensors(SHAPES, dtype, seed=7)
    before = [t.clone() for t in target]
    ema_update_(target, online, 1.0)
    assert all(torch.equal(t, b) for t, b in zip(target, before))
    ema_update_(target, online, 0.0)
    assert all(torch.equal(t, o) for t, o in zip(target, online))


def test_ema_update_accepts_generators_and_updates_in_place():
    target = _random_tensors(SHAPES, torch.float32, seed=8)
    online = _random_tensors(SHAPES, torch.float32, seed=9)
    storages = [t.data_ptr() for t in target]
    ema_update_((t for t in target), iter(online), 0.0)
    assert [t.data_ptr() for t in target] == storages
    assert all(torch.equal(t, o) for t, o in zip(target, online))


@pytest.mark.parametrize("momentum", [-0.01, 1.01, float("nan")])
def test_ema_update_rejects_bad_momentum(momentum):
    target = _random_tensors(SHAPES, torch.float32, seed=0)
    with pytest.raises(ValueError, match="momentum"):
        ema_update_(target, [t.clone() for t in target], momentum)


def test_ema_update_rejects_mismatches():
    target = _random_tensors(SHAPES, torch.float32, seed=0)
    with pytest.raises(ValueError, match="length"):
        ema_update_(target, target[:-1], 0.5)
    with pytest.raises(ValueError, match=r"\(3, 5\)"):
        ema_update_(target[:1], [torch.zeros(5, 3)], 0.5)
    with pytest.raises(ValueError, match="float64"):
        ema_update_(target[:1], [torch.zeros(3, 5, dtype=torch.float64)], 0.5)


# ---------------------------------------------------------------------------- EMA class


def test_ema_class_matches_hand_written_loop():
    online = _Net(seed=0)
    target = _Net(seed=1)  # deliberately different start so that every step changes it
    schedule = linear(start=0.9, end=1.0, total_steps=5)
    ema = EMA(online=online, target=target, momentum=schedule)

    reference = {name: p.detach().double().clone() for name, p in target.named_parameters()}
    g = torch.Generator().manual_seed(123)
    for step in range(7):
        # stand-in for an optimizer step on the online model
        with torch.no_grad():
            for p in online.parameters():
                p.add_(torch.randn(p.shape, generator=g))
            online.running.add_(1.0)
        m_expected = 0.9 + 0.1 * min(step, 5) / 5
        for name, p in online.named_parameters():
            reference[name] = m_expected * reference[name] + (1 - m_expected) * p.detach().double()
        m = ema.update(step)
        assert m == pytest.approx(m_expected, abs=1e-15)
        for name, p in target.named_parameters():
            torch.testing.assert_close(p.detach().double(), reference[name], rtol=0, atol=1e-5, msg=name)
        assert torch.equal(target.running, online.running)  # buffers copied, not averaged


def test_ema_averages_non_trainable_parameters():
    online = _Net(seed=0)
    target = _Net(seed=1)
    ema = EMA(online=online, target=target, momentum=constant(0.75))
    expected = 0.75 * target.pos_embed.detach().clone() + 0.25 * online.pos_embed.detach()
    ema.update(0)
    torch.testing.assert_close(target.pos_embed.detach(), expected)


def test_ema_freezes_target_only():
    online = _Net(seed=0)
    target = copy.deepcopy(online)
    assert any(p.requires_grad for p in target.parameters())
    EMA(online=online, target=target, momentum=constant(0.99))
    assert not any(p.requires_grad for p in target.parameters())
    assert online.proj.weight.requires_grad and not online.pos_embed.requires_grad  # online untouched


def test_ema_update_does_not_build_graph():
    online = _Net(seed=0)
    target = copy.deepcopy(online)
    ema = EMA(online=online, target=target, momentum=constant(0.5))
    ema.update(0)
    assert all(p.grad_fn is None and p.grad is None for p in target.parameters())


def test_ema_schedule_out_of_range_raises():
    online = _Net(seed=0)
    ema = EMA(online=online, target=copy.deepcopy(online), momentum=lambda step: 1.5)
    with pytest.raises(ValueError, match="momentum"):
        ema.update(0)


class _Other(nn.Module):
    def __init__(self, *, width: int = 6, extra: bool = False) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, width))
        self.proj = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.register_buffer("running", torch.zeros(width))
        if extra:
            self.head = nn.Linear(width, 2)


def test_mismatched_modules_raise():
    online = _Net(seed=0)
    with pytest.raises(ValueError, match=r"pos_embed.*\(1, 4, 6\).*\(1, 4, 7\)"):  # first mismatch in order
        EMA(online=online, target=_Other(width=7), momentum=constant(0.9))
    with pytest.raises(ValueError, match=r"head\.weight"):
        EMA(online=online, target=_Other(extra=True), momentum=constant(0.9))
    wrong_dtype = copy.deepcopy(online).double()
    with pytest.raises(ValueError, match="dtype"):
        EMA(online=online, target=wrong_dtype, momentum=constant(0.9))
    missing_buffer = _Other()
    del missing_buffer.running
    with pytest.raises(ValueError, match="running"):
        EMA(online=online, target=missing_buffer, momentum=constant(0.9))


def test_same_module_or_shared_parameters_raise():
    online = _Net(seed=0)
    with pytest.raises(ValueError, match="target"):
        EMA(online=online, target=online, momentum=constant(0.9))
    shallow = copy.copy(online)  # distinct module object, same parameter tensors
    with pytest.raises(ValueError, match="same tensor"):
        EMA(online=online, target=shallow, momentum=constant(0.9))
