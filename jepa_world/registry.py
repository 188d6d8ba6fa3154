"""Model registry: a new size is one decorated function (timm style).

This module is a leaf: it holds the table and imports no model file. The model files register their presets with
`@register_model` when they are imported; `jepa_world.models` imports all of them and offers `create_model` /
`list_models` (also at `jepa_world.create_model`).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory under its function name."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} is already registered")
    _REGISTRY[fn.__name__] = fn
    return fn


def registered(pattern: str = "*") -> list[str]:
    """Names registered so far that match a shell-style pattern, sorted."""
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def entrypoint(name: str) -> Callable[..., nn.Module]:
    """The factory registered under `name`.

    Raises:
        ValueError: unknown name (the message suggests close names).
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (see jepa_world.list_models())")
    return _REGISTRY[name]
