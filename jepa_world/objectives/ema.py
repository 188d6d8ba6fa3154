"""Exponential moving average (EMA) of the online encoder: the JEPA target encoder.

JEPA regresses predictor outputs onto features of a target encoder whose weights are an EMA of the online (context)
encoder: ``target <- m * target + (1 - m) * online``. The momentum ``m`` comes from a ``Schedule``:
    - I-JEPA: linear 0.996 -> 1.0 over training; V-JEPA: linear 0.998 -> 1.0.
    - V-JEPA 2: constant 0.99925.
Maintainers report tuning ``m`` in [0.99, 0.9995] against representation collapse (see
``jepa_world.objectives.losses``).

The update is ``torch._foreach_lerp_`` over all parameters at once (``lerp(target, online, 1 - m)`` is the same
formula), grouped by (device, dtype) so that each group is one fused multi-tensor kernel instead of one kernel per
parameter.

References:
    - Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture", 2023.
    - Grill et al., "Bootstrap Your Own Latent", 2020 (EMA target network).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from jepa_world.objectives.schedules import Schedule

__all__ = ["EMA", "ema_update_"]


def _check_momentum(momentum: float) -> float:
    try:
        momentum = float(momentum)
    except (TypeError, ValueError):
        raise TypeError(f"momentum must be a real number, got {momentum!r}") from None
    if not (math.isfinite(momentum) and 0.0 <= momentum <= 1.0):
        raise ValueError(f"momentum must be in [0, 1], got momentum={momentum!r}")
    return momentum


def _check_same_tensors(kind: str, online: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> None:
    for name in online:
        if name not in target:
            raise ValueError(f"online {kind} {name!r} has no counterpart in target")
    for name in target:
        if name not in online:
            raise ValueError(f"target {kind} {name!r} has no counterpart in online")
    if list(online) != list(target):
        raise ValueError(
            f"online and target {kind}s are registered in a different order: {list(online)} vs {list(target)}"
        )
    for name, o in online.items():
        t = target[name]
        if o.shape != t.shape:
            raise ValueError(f"{kind} {name!r}: online shape {tuple(o.shape)} != target shape {tuple(t.shape)}")
        if o.dtype != t.dtype:
            raise ValueError(f"{kind} {name!r}: online dtype {o.dtype} != target dtype {t.dtype}")


@torch.no_grad()
def ema_update_(target: Iterable[torch.Tensor], online: Iterable[torch.Tensor], momentum: float) -> None:
    """In place: ``target <- momentum * target + (1 - momentum) * online``.

    Uses ``torch._foreach_lerp_`` with weight ``1 - momentum``, one fused kernel per (device, dtype) group. With
    ``momentum == 1`` the target is left bit-exactly unchanged, with ``momentum == 0`` it becomes a copy of ``online``.

    Args:
        target: Tensors to update in place (e.g. target-encoder parameters).
        online: Tensors to average in, paired with ``target`` by position; same shape, dtype and device each.
        momentum: Weight of the old target, in [0, 1].

    Raises:
        ValueError: If ``momentum`` is outside [0, 1], the sequences differ in length, or a pair differs in shape,
            dtype or device.
    """
    momentum = _check_momentum(momentum)
    target = list(target)
    online = list(online)
    if len(target) != len(online):
        raise ValueError(f"target and online must have the same length, got {len(target)} and {len(online)}")
    groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for i, (t, o) in enumerate(zip(target, online)):
        if t.shape != o.shape or t.dtype != o.dtype or t.device != o.device:
            raise ValueError(
                f"tensor {i}: target is {tuple(t.shape)} {t.dtype} on {t.device} but online is "
                f"{tuple(o.shape)} {o.dtype} on {o.device}"
            )
        ts, os_ = groups.setdefault((t.device, t.dtype), ([], []))
        ts.append(t)
        os_.append(o)
    weight = 1.0 - momentum
    for ts, os_ in groups.values():
        torch._foreach_lerp_(ts, os_, weight)


class EMA:
    """Keeps ``target`` an exponential moving average of ``online``, with the momentum from a schedule.

    Call ``update(step)`` once per OPTIMIZER step, after ``optimizer.step()``, with the optimizer step count; never on
    gradient-accumulation micro-steps (the momentum schedules of the reference recipes are in optimizer steps, and
    averaging in the same weights several times would change the effective momentum). Driving this is the training
    loop's job. The EMA itself holds no state besides the two modules: on resume, restore the target weights from the
    checkpoint and keep calling ``update`` with the resumed step.

    Parameters are averaged, including those that do not require grad in ``online`` (e.g. a fixed sin-cos
    ``pos_embed``, equal in both anyway); buffers (e.g. BatchNorm statistics) are copied from ``online``. The target's
    parameters are set to ``requires_grad=False``. The target is not initialised here: create it as a copy of the
    online module (``copy.deepcopy(online)``), as I-JEPA does.

    Example:
        >>> ema = EMA(online=encoder, target=target_encoder, momentum=linear(start=0.996, end=1.0, total_steps=n))
        >>> # after each optimizer.step():
        >>> m = ema.update(step)
    """

    def __init__(self, *, online: nn.Module, target: nn.Module, momentum: Schedule) -> None:
        """Checks that the modules match and freezes the target.

        Args:
            online: The module being trained (context encoder).
            target: The averaged module (target encoder); same parameter and buffer names and shapes as ``online``.
            momentum: Schedule of the momentum by optimizer step; each value must be in [0, 1].

        Raises:
            ValueError: If ``target`` is ``online``, they share a parameter, or their parameter / buffer names,
                shapes or dtypes differ (the message names the first mismatch).
            TypeError: If ``momentum`` is not callable.
        """
        if target is online:
            raise ValueError("target must be a separate module from online (e.g. copy.deepcopy(online)), got the same")
        if not callable(momentum):
            raise TypeError(f"momentum must be a Schedule (callable step -> float), got {momentum!r}")
        _check_same_tensors("parameter", dict(online.named_parameters()), dict(target.named_parameters()))
        _check_same_tensors("buffer", dict(online.named_buffers()), dict(target.named_buffers()))
        online_ids = {id(p) for p in online.parameters()}
        for name, p in target.named_parameters():
            if id(p) in online_ids:
                raise ValueError(f"target parameter {name!r} is the same tensor as an online parameter")
        self.online = online
        self.target = target
        self.momentum = momentum
        target.requires_grad_(False)

    @torch.no_grad()
    def update(self, step: int) -> float:
        """Averages the online parameters into the target with ``momentum(step)`` and copies the buffers.

        Args:
            step: Optimizer step (the one just taken), passed to the momentum schedule.

        Returns:
            The momentum used.

        Raises:
            ValueError: If the scheduled momentum is outside [0, 1].
        """
        momentum = _check_momentum(self.momentum(step))
        # Re-read the parameters on every call: wrappers or device moves after construction may swap tensors
        ema_update_(
            [p for _, p in self.target.named_parameters()],
            [p for _, p in self.online.named_parameters()],
            momentum,
        )
        for (_, b_target), (_, b_online) in zip(self.target.named_buffers(), self.online.named_buffers()):
            b_target.copy_(b_online)
        return momentum

    def __repr__(self) -> str:
        return f"{type(self).__name__}(momentum={self.momentum!r})"
