"""Model registry: a new size is one decorated function (timm style).

`create_model("vit_small", patch_size=16)` builds a registered architecture; `list_models("vit_*")` lists names.
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


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    _import_models()
    return sorted(name for name in _REGISTRY if fnmatch.fnmatch(name, pattern))


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: registered name, e.g. "vit_tiny" or "predictor_small".
        **kwargs: constructor overrides (patch_size, img_size, num_frames, depth, ...).

    Raises:
        ValueError: unknown name (the message suggests close names).
    """
    _import_models()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} (see jepa_world.list_models())")
    return _REGISTRY[name](**kwargs)


def _import_models() -> None:
    # Importing the model modules runs their @register_model decorators.
    from jepa_world.models import dynamics, predictor, vit  # noqa: F401
