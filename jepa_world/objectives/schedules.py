"""Step-indexed hyper-parameter schedules (learning rate, weight decay, EMA momentum).

Every schedule is a pure function of the optimizer step: it holds no counter, so a resumed run only needs the step
it resumes from. Schedules are small frozen dataclasses rather than closures so that they pickle (DataLoader workers,
checkpoints) and print readably in logs.

Schedules used by the releases' recipes:
    - I-JEPA / V-JEPA LR: ``warmup_cosine`` (linear warmup start -> peak, half-cosine peak -> final).
    - I-JEPA / V-JEPA weight decay: ``cosine`` 0.04 -> 0.4.
    - I-JEPA / V-JEPA EMA momentum: ``linear`` 0.996 (0.998) -> 1.0.
    - V-JEPA 2 LR: ``warmup_stable_decay`` (warmup, constant, then a linear cooldown to final); EMA: ``constant``.

Conventions shared by all schedules:
    - ``step`` is a non-negative integer (anything implementing ``__index__``); ``step == 0`` returns ``start``.
    - Warmup is linear and reaches ``peak`` exactly at ``step == warmup_steps``; ``warmup_steps == 0`` means no
      warmup (``peak`` from step 0).
    - Past ``total_steps`` a schedule clamps to its last value (``end`` / ``final``).
    - Values must be finite and non-negative: every quantity scheduled here (LR, weight decay, momentum) is.

References:
    - Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", 2017 (cosine annealing).
    - Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond Fixed Training Durations", 2024 (WSD).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from jepa_world.objectives.arg_checks import check_int

__all__ = [
    "Constant",
    "Cosine",
    "Linear",
    "Schedule",
    "WarmupConstant",
    "WarmupCosine",
    "WarmupStableDecay",
    "build_schedule",
    "constant",
    "cosine",
    "linear",
    "warmup_constant",
    "warmup_cosine",
    "warmup_stable_decay",
]


@runtime_checkable
class Schedule(Protocol):
    """A hyper-parameter as a pure function of the (optimizer) step."""

    def __call__(self, step: int) -> float: ...


def _set(obj: object, name: str, value: Any) -> None:
    # Frozen dataclasses forbid setattr; __post_init__ normalises fields once so repr/eq/pickle see plain Python types
    object.__setattr__(obj, name, value)


def _check_value(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and non-negative, got {name}={value!r}")
    _set(obj, name, value)


def _check_steps(obj: object, name: str, *, minimum: int) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {name}={value!r}")
    _set(obj, name, value)


def _as_step(step: Any) -> int:
    # operator.index accepts numpy / 0-d torch integers but rejects floats, which would hide an off-by-one
    return check_int("step", step, minimum=0)


def _lerp(a: float, b: float, w: float) -> float:
    # This form is exact at both ends (w=0 -> a, w=1 -> b), unlike a + (b - a) * w
    return a * (1.0 - w) + b * w


def _cosine_weight(progress: float) -> float:
    """0 at progress 0, 1 at progress 1, half-cosine in between."""
    return 0.5 * (1.0 - math.cos(math.pi * progress))


@dataclass(frozen=True)
class Constant:
    """``value`` at every step."""

    value: float

    def __post_init__(self) -> None:
        _check_value(self, "value")

    def __call__(self, step: int) -> float:
        _as_step(step)
        return self.value


@dataclass(frozen=True)
class Linear:
    """Linear ramp from ``start`` (step 0) to ``end`` (step ``total_steps``), then ``end``."""

    start: float
    end: float
    total_steps: int

    def __post_init__(self) -> None:
        _check_value(self, "start")
        _check_value(self, "end")
        _check_steps(self, "total_steps", minimum=1)

    def __call__(self, step: int) -> float:
        step = _as_step(step)
        if step >= self.total_steps:
            return self.end
        return _lerp(self.start, self.end, step / self.total_steps)


@dataclass(frozen=True)
class Cosine:
    """Half-cosine from ``start`` (step 0) to ``end`` (step ``total_steps``), then ``end``."""

    start: float
    end: float
    total_steps: int

    def __post_init__(self) -> None:
        _check_value(self, "start")
        _check_value(self, "end")
        _check_steps(self, "total_steps", minimum=1)

    def __call__(self, step: int) -> float:
        step = _as_step(step)
        if step >= self.total_steps:
            return self.end
        return _lerp(self.start, self.end, _cosine_weight(step / self.total_steps))


@dataclass(frozen=True)
class WarmupCosine:
    """Linear warmup ``start -> peak`` over ``warmup_steps``, half-cosine ``peak -> final`` until ``total_steps``.

    With ``warmup_steps == total_steps`` there is no cosine phase and the clamp wins at the shared step: the value
    there is ``final``, not ``peak``.
    """

    warmup_steps: int
    total_steps: int
    peak: float
    start: float = 0.0
    final: float = 0.0

    def __post_init__(self) -> None:
        _check_steps(self, "warmup_steps", minimum=0)
        _check_steps(self, "total_steps", minimum=1)
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps must be <= total_steps ({self.total_steps}), got warmup_steps={self.warmup_steps}"
            )
        _check_value(self, "peak")
        _check_value(self, "start")
        _check_value(self, "final")

    def __call__(self, step: int) -> float:
        step = _as_step(step)
        if step >= self.total_steps:
            return self.final
        if step < self.warmup_steps:
            return _lerp(self.start, self.peak, step / self.warmup_steps)
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return _lerp(self.peak, self.final, _cosine_weight(progress))


@dataclass(frozen=True)
class WarmupConstant:
    """Linear warmup ``start -> peak`` over ``warmup_steps``, then ``peak`` forever."""

    warmup_steps: int
    peak: float
    start: float = 0.0

    def __post_init__(self) -> None:
        _check_steps(self, "warmup_steps", minimum=0)
        _check_value(self, "peak")
        _check_value(self, "start")

    def __call__(self, step: int) -> float:
        step = _as_step(step)
        if step >= self.warmup_steps:
            return self.peak
        return _lerp(self.start, self.peak, step / self.warmup_steps)


@dataclass(frozen=True)
class WarmupStableDecay:
    """Warmup-stable-decay (V-JEPA 2): linear warmup ``start -> peak``, constant ``peak``, linear cooldown to ``final``.

    Phases by step: ``[0, warmup_steps)`` warmup; ``[warmup_steps, total_steps - decay_steps]`` constant ``peak``;
    ``[total_steps - decay_steps, total_steps]`` linear ``peak -> final``; ``final`` from ``total_steps`` on.
    """

    warmup_steps: int
    total_steps: int
    decay_steps: int
    peak: float
    start: float = 0.0
    final: float = 0.0

    def __post_init__(self) -> None:
        _check_steps(self, "warmup_steps", minimum=0)
        _check_steps(self, "total_steps", minimum=1)
        _check_steps(self, "decay_steps", minimum=0)
        if self.warmup_steps > self.total_steps:
            raise ValueError(
                f"warmup_steps must be <= total_steps ({self.total_steps}), got warmup_steps={self.warmup_steps}"
            )
        if self.decay_steps > self.total_steps - self.warmup_steps:
            raise ValueError(
                f"decay_steps must be <= total_steps - warmup_steps ({self.total_steps - self.warmup_steps}), "
                f"got decay_steps={self.decay_steps}"
            )
        _check_value(self, "peak")
        _check_value(self, "start")
        _check_value(self, "final")

    def __call__(self, step: int) -> float:
        step = _as_step(step)
        if step >= self.total_steps:
            return self.final
        if step < self.warmup_steps:
            return _lerp(self.start, self.peak, step / self.warmup_steps)
        decay_start = self.total_steps - self.decay_steps
        if step <= decay_start:
            return self.peak
        return _lerp(self.peak, self.final, (step - decay_start) / self.decay_steps)


def constant(value: float) -> Schedule:
    """Constant schedule (e.g. V-JEPA 2 EMA momentum 0.99925).

    Args:
        value: The value returned at every step.

    Returns:
        A picklable ``Constant`` schedule.
    """
    return Constant(value=value)


def linear(*, start: float, end: float, total_steps: int) -> Schedule:
    """Linear ramp, clamped to ``end`` after ``total_steps`` (e.g. I-JEPA EMA momentum 0.996 -> 1.0).

    Args:
        start: Value at step 0.
        end: Value at and after ``total_steps``.
        total_steps: Length of the ramp (>= 1).

    Returns:
        A picklable ``Linear`` schedule.
    """
    return Linear(start=start, end=end, total_steps=total_steps)


def cosine(*, start: float, end: float, total_steps: int) -> Schedule:
    """Half-cosine ``start -> end``, clamped to ``end`` after ``total_steps`` (e.g. weight decay 0.04 -> 0.4).

    Args:
        start: Value at step 0.
        end: Value at and after ``total_steps``.
        total_steps: Length of the cosine (>= 1).

    Returns:
        A picklable ``Cosine`` schedule.
    """
    return Cosine(start=start, end=end, total_steps=total_steps)


def warmup_cosine(
    *, warmup_steps: int, total_steps: int, peak: float, start: float = 0.0, final: float = 0.0
) -> Schedule:
    """Linear warmup ``start -> peak`` then half-cosine ``peak -> final`` (I-JEPA / V-JEPA learning rate).

    Args:
        warmup_steps: Steps of linear warmup (>= 0, <= total_steps); ``peak`` is reached at this step.
        total_steps: Step at which ``final`` is reached; the value is clamped afterwards.
        peak: Value at the end of warmup.
        start: Value at step 0.
        final: Value at and after ``total_steps``.

    Returns:
        A picklable ``WarmupCosine`` schedule.
    """
    return WarmupCosine(warmup_steps=warmup_steps, total_steps=total_steps, peak=peak, start=start, final=final)


def warmup_constant(*, warmup_steps: int, peak: float, start: float = 0.0) -> Schedule:
    """Linear warmup ``start -> peak`` then constant ``peak``.

    Args:
        warmup_steps: Steps of linear warmup (>= 0); ``peak`` is reached at this step.
        peak: Value from ``warmup_steps`` on.
        start: Value at step 0.

    Returns:
        A picklable ``WarmupConstant`` schedule.
    """
    return WarmupConstant(warmup_steps=warmup_steps, peak=peak, start=start)


def warmup_stable_decay(
    *,
    warmup_steps: int,
    total_steps: int,
    decay_steps: int,
    peak: float,
    start: float = 0.0,
    final: float = 0.0,
) -> Schedule:
    """Warmup, constant, then linear cooldown over the last ``decay_steps`` (V-JEPA 2 learning rate).

    Args:
        warmup_steps: Steps of linear warmup (>= 0, <= total_steps); ``peak`` is reached at this step.
        total_steps: Step at which ``final`` is reached; the value is clamped afterwards.
        decay_steps: Length of the linear cooldown ending at ``total_steps`` (<= total_steps - warmup_steps).
        peak: Value of the stable phase.
        start: Value at step 0.
        final: Value at and after ``total_steps``.

    Returns:
        A picklable ``WarmupStableDecay`` schedule.
    """
    return WarmupStableDecay(
        warmup_steps=warmup_steps,
        total_steps=total_steps,
        decay_steps=decay_steps,
        peak=peak,
        start=start,
        final=final,
    )


_BUILDERS = {
    "constant": constant,
    "linear": linear,
    "cosine": cosine,
    "warmup_cosine": warmup_cosine,
    "warmup_constant": warmup_constant,
    "warmup_stable_decay": warmup_stable_decay,
}


def build_schedule(kind: str, **kwargs: Any) -> Schedule:
    """Build a schedule from its name and keyword arguments (e.g. from a config).

    Args:
        kind: One of ``"constant"``, ``"linear"``, ``"cosine"``, ``"warmup_cosine"``, ``"warmup_constant"``,
            ``"warmup_stable_decay"``.
        **kwargs: The keyword arguments of the matching factory function.

    Returns:
        The schedule.

    Raises:
        ValueError: If ``kind`` is unknown, or an argument is out of range.
        TypeError: If an argument is missing, unexpected or of the wrong type.
    """
    try:
        builder = _BUILDERS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown schedule kind={kind!r}; valid kinds: {sorted(_BUILDERS)}") from None
    return builder(**kwargs)
