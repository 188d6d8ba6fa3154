"""jepa_world.objectives.schedules: endpoints, shapes of the curves, clamping, validation, dispatch, pickling."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from jepa_world.objectives import schedules as S


def _values(schedule: S.Schedule, n: int) -> np.ndarray:
    return np.array([schedule(step) for step in range(n)])


def _is_monotone(v: np.ndarray, *, increasing: bool, tol: float = 1e-12) -> bool:
    d = np.diff(v)
    return bool(np.all(d >= -tol)) if increasing else bool(np.all(d <= tol))


# ---------------------------------------------------------------------------- constant / linear / cosine


def test_constant():
    s = S.constant(0.99925)
    assert all(s(step) == 0.99925 for step in (0, 1, 10, 10**9))
    assert isinstance(s(3), float)


def test_linear_matches_formula_and_clamps():
    s = S.linear(start=0.996, end=1.0, total_steps=100)
    assert s(0) == 0.996
    assert s(100) == 1.0
    for step in (1, 37, 50, 99):
        assert s(step) == pytest.approx(0.996 + (1.0 - 0.996) * step / 100, abs=1e-15)
    assert s(101) == s(10**6) == 1.0
    assert _is_monotone(_values(s, 120), increasing=True)


def test_cosine_matches_formula_and_clamps():
    start, end, total = 0.04, 0.4, 80
    s = S.cosine(start=start, end=end, total_steps=total)
    assert s(0) == start
    assert s(total) == end
    assert s(total // 2) == pytest.approx((start + end) / 2, abs=1e-15)  # half-cosine is symmetric about the middle
    for step in (3, 21, 64, 79):
        expected = end + (start - end) * 0.5 * (1 + np.cos(np.pi * step / total))
        assert s(step) == pytest.approx(expected, abs=1e-14)
    assert s(total + 1) == s(10 * total) == end
    assert _is_monotone(_values(s, total + 10), increasing=True)
    decreasing = S.cosine(start=1.0, end=0.0, total_steps=total)
    assert _is_monotone(_values(decreasing, total + 10), increasing=False)


def test_cosine_is_flat_at_both_ends():
    s = S.cosine(start=1.0, end=0.0, total_steps=1000)
    first, middle, last = s(0) - s(1), s(499) - s(500), s(999) - s(1000)
    assert first < middle / 100 and last < middle / 100


# ---------------------------------------------------------------------------- warmup schedules


def test_warmup_cosine_phases():
    warmup, total, peak, start, final = 40, 300, 1e-3, 2e-4, 1e-6
    s = S.warmup_cosine(warmup_steps=warmup, total_steps=total, peak=peak, start=start, final=final)
    v = _values(s, total + 20)
    assert v[0] == start
    assert s(warmup) == peak  # exactly
    assert v.max() == peak
    np.testing.assert_allclose(v[: warmup + 1], np.linspace(start, peak, warmup + 1), rtol=0, atol=1e-15)
    steps = np.arange(warmup, total + 1)
    expected = final + (peak - final) * 0.5 * (1 + np.cos(np.pi * (steps - warmup) / (total - warmup)))
    np.testing.assert_allclose(v[warmup : total + 1], expected, rtol=0, atol=1e-15)
    assert s(total) == final
    assert np.all(v[total:] == final)
    assert _is_monotone(v[: warmup + 1], increasing=True)
    assert _is_monotone(v[warmup:], increasing=False)


def test_warmup_cosine_defaults_and_no_warmup():
    s = S.warmup_cosine(warmup_steps=10, total_steps=50, peak=0.5)
    assert s(0) == 0.0 and s(10) == 0.5 and s(50) == 0.0 and s(5) == pytest.approx(0.25)
    no_warmup = S.warmup_cosine(warmup_steps=0, total_steps=50, peak=0.5, final=0.1)
    assert no_warmup(0) == 0.5
    assert no_warmup(50) == 0.1


def test_warmup_constant():
    s = S.warmup_constant(warmup_steps=8, peak=2.0, start=0.5)
    v = _values(s, 30)
    assert v[0] == 0.5
    assert s(8) == 2.0
    np.testing.assert_allclose(v[:9], np.linspace(0.5, 2.0, 9), rtol=0, atol=1e-15)
    assert np.all(v[8:] == 2.0)
    assert s(10**9) == 2.0
    assert S.warmup_constant(warmup_steps=0, peak=3.0)(0) == 3.0


def test_warmup_stable_decay_phases():
    warmup, total, decay, peak, start, final = 10, 100, 20, 5.25e-4, 1e-4, 1e-6
    s = S.warmup_stable_decay(
        warmup_steps=warmup, total_steps=total, decay_steps=decay, peak=peak, start=start, final=final
    )
    v = _values(s, total + 10)
    assert v[0] == start
    assert s(warmup) == peak
    np.testing.assert_allclose(v[: warmup + 1], np.linspace(start, peak, warmup + 1), rtol=0, atol=1e-15)
    # flat middle: exactly peak from the end of warmup until the cooldown starts
    assert np.all(v[warmup : total - decay + 1] == peak)
    # linear cooldown over the last decay_steps: equal decrements
    cooldown = v[total - decay : total + 1]
    np.testing.assert_allclose(cooldown, np.linspace(peak, final, decay + 1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.diff(cooldown), (final - peak) / decay, rtol=1e-9)
    assert s(total) == final
    assert np.all(v[total:] == final)


def test_warmup_stable_decay_edge_phases():
    # no warmup, cooldown over the whole run -> a plain linear ramp
    s = S.warmup_stable_decay(warmup_steps=0, total_steps=20, decay_steps=20, peak=1.0, final=0.0)
    np.testing.assert_allclose(_values(s, 21), np.linspace(1.0, 0.0, 21), atol=1e-15)
    # no cooldown -> warmup then constant until total_steps
    s = S.warmup_stable_decay(warmup_steps=5, total_steps=20, decay_steps=0, peak=1.0, final=0.25)
    assert s(5) == s(19) == 1.0
    assert s(20) == 0.25


@pytest.mark.parametrize(
    "schedule",
    [
        S.linear(start=0.1, end=0.9, total_steps=7),
        S.cosine(start=0.1, end=0.9, total_steps=7),
        S.warmup_cosine(warmup_steps=3, total_steps=7, peak=1.0, start=0.2, final=0.3),
        S.warmup_constant(warmup_steps=3, peak=1.0, start=0.2),
        S.warmup_stable_decay(warmup_steps=2, total_steps=7, decay_steps=3, peak=1.0, start=0.2, final=0.3),
    ],
)
def test_step_zero_returns_start(schedule):
    assert schedule(0) == schedule.start


# ---------------------------------------------------------------------------- purity, pickling, repr


def test_pure_function_of_step():
    s = S.warmup_cosine(warmup_steps=5, total_steps=20, peak=1.0)
    forward = [s(step) for step in range(25)]
    backward = [s(step) for step in reversed(range(25))][::-1]
    assert forward == backward
    assert s(np.int64(7)) == s(7)


@pytest.mark.parametrize(
    "schedule",
    [
        S.constant(0.5),
        S.linear(start=0.996, end=1.0, total_steps=10),
        S.cosine(start=0.04, end=0.4, total_steps=10),
        S.warmup_cosine(warmup_steps=2, total_steps=10, peak=1e-3, start=1e-4, final=1e-6),
        S.warmup_constant(warmup_steps=2, peak=1e-3),
        S.warmup_stable_decay(warmup_steps=2, total_steps=10, decay_steps=3, peak=1e-3, final=1e-6),
    ],
)
def test_picklable_and_readable(schedule):
    clone = pickle.loads(pickle.dumps(schedule))
    assert clone == schedule
    assert [clone(step) for step in range(15)] == [schedule(step) for step in range(15)]
    text = repr(schedule)
    assert type(schedule).__name__ in text and "0x" not in text  # not a default object repr
    assert isinstance(schedule, S.Schedule)
    with pytest.raises(AttributeError):
        schedule.start = 123.0  # frozen


def test_fields_normalised_to_python_types():
    s = S.linear(start=np.float32(0.5), end=1, total_steps=np.int64(10))
    assert type(s.start) is float and type(s.end) is float and type(s.total_steps) is int
    assert s == S.linear(start=0.5, end=1.0, total_steps=10)


# ---------------------------------------------------------------------------- build_schedule


@pytest.mark.parametrize(
    ("kind", "kwargs", "factory"),
    [
        ("constant", {"value": 0.3}, S.constant),
        ("linear", {"start": 0.1, "end": 0.2, "total_steps": 5}, S.linear),
        ("cosine", {"start": 0.1, "end": 0.2, "total_steps": 5}, S.cosine),
        ("warmup_cosine", {"warmup_steps": 1, "total_steps": 5, "peak": 1.0}, S.warmup_cosine),
        ("warmup_constant", {"warmup_steps": 1, "peak": 1.0}, S.warmup_constant),
        (
            "warmup_stable_decay",
            {"warmup_steps": 1, "total_steps": 5, "decay_steps": 2, "peak": 1.0},
            S.warmup_stable_decay,
        ),
    ],
)
def test_build_schedule_dispatch(kind, kwargs, factory):
    built = S.build_schedule(kind, **kwargs)
    assert built == factory(**kwargs)
    assert [built(step) for step in range(8)] == [factory(**kwargs)(step) for step in range(8)]


def test_build_schedule_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match="cosinus") as info:
        S.build_schedule("cosinus", start=0.0, end=1.0, total_steps=3)
    for kind in ("constant", "linear", "cosine", "warmup_cosine", "warmup_constant", "warmup_stable_decay"):
        assert kind in str(info.value)


def test_build_schedule_bad_kwargs():
    with pytest.raises(TypeError):
        S.build_schedule("linear", start=0.0, end=1.0)  # missing total_steps
    with pytest.raises(TypeError):
        S.build_schedule("constant", value=1.0, peak=2.0)


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("factory", "kwargs", "bad"),
    [
        (S.warmup_cosine, {"warmup_steps": 11, "total_steps": 10, "peak": 1.0}, "warmup_steps=11"),
        (
            S.warmup_stable_decay,
            {"warmup_steps": 11, "total_steps": 10, "decay_steps": 0, "peak": 1.0},
            "warmup_steps=11",
        ),
        (
            S.warmup_stable_decay,
            {"warmup_steps": 4, "total_steps": 10, "decay_steps": 7, "peak": 1.0},
            "decay_steps=7",
        ),
        (S.warmup_cosine, {"warmup_steps": -1, "total_steps": 10, "peak": 1.0}, "warmup_steps=-1"),
        (S.warmup_constant, {"warmup_steps": -3, "peak": 1.0}, "warmup_steps=-3"),
        (S.warmup_stable_decay, {"warmup_steps": 0, "total_steps": 10, "decay_steps": -2, "peak": 1.0}, "decay_steps"),
        (S.linear, {"start": 0.0, "end": 1.0, "total_steps": 0}, "total_steps=0"),
        (S.cosine, {"start": 0.0, "end": 1.0, "total_steps": -5}, "total_steps=-5"),
        (S.linear, {"start": -0.1, "end": 1.0, "total_steps": 5}, "start=-0.1"),
        (S.cosine, {"start": 0.0, "end": math.nan, "total_steps": 5}, "end=nan"),
        (S.warmup_cosine, {"warmup_steps": 1, "total_steps": 5, "peak": -1.0}, "peak=-1.0"),
        (S.warmup_cosine, {"warmup_steps": 1, "total_steps": 5, "peak": 1.0, "final": -1e-6}, "final=-1e-06"),
        (S.warmup_constant, {"warmup_steps": 1, "peak": math.inf}, "peak=inf"),
    ],
)
def test_validation_errors_name_argument_and_value(factory, kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        factory(**kwargs)


def test_constant_validation():
    with pytest.raises(ValueError, match="value"):
        S.constant(-1.0)
    with pytest.raises(TypeError, match="value"):
        S.constant("0.5")


def test_type_errors():
    with pytest.raises(TypeError, match="total_steps"):
        S.linear(start=0.0, end=1.0, total_steps=10.0)
    with pytest.raises(TypeError, match="warmup_steps"):
        S.warmup_constant(warmup_steps=True, peak=1.0)


def test_bad_steps():
    s = S.linear(start=0.0, end=1.0, total_steps=10)
    with pytest.raises(ValueError, match="step"):
        s(-1)
    with pytest.raises(TypeError, match="step"):
        s(2.5)
    with pytest.raises(ValueError, match="step"):
        S.constant(1.0)(-2)
