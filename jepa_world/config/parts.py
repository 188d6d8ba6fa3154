"""Sections of a config chosen by a `type` key: a part of a world model (a readout, a fit of it) owns its config.

A part is a class with a nested `Config` dataclass, registered by kind and name where the class is defined:

    @register_part("readout", "keypoints")
    class KeypointReadout(TokenReadout):
        @dataclass
        class Config(ReadoutConfig):
            keypoints: int = 1

            def check(self, key: str) -> None:  # the checks types cannot express, naming f"{key}.<field>"
                ...

In a recipe the section names its type and that type's keys (`wm.readout: {type: keypoints, keypoints: 1, lift: 32}`),
and `resolve_part` turns the section into the part's `Config`: unknown keys fail naming the key with the closest valid
one, values are type-checked, then `Config.check` runs. The schema keeps such a section as an open mapping (its keys
depend on its type); `complete_part` writes the resolved section back with every default filled in, so the
`config.yaml` saved with a run says everything the part was built with.

This module is a leaf of the config floor: it holds the table and imports no part file; a part file registers itself
when imported (the models package imports its readouts; the training package its fits).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from jepa_world.config.schema import ConfigError

NONE = "none"  # the type of a section that builds no part
_PARTS: dict[str, dict[str, type]] = {}


def register_part(kind: str, name: str) -> Callable[[type], type]:
    """Register a class (with a nested `Config` dataclass whose `type` field defaults to `name`) under kind / name."""

    def decorate(cls: type) -> type:
        config = getattr(cls, "Config", None)
        if config is None or not dataclasses.is_dataclass(config):
            raise TypeError(f"{cls.__name__} needs a nested dataclass `Config` to be registered as a {kind}")
        if {f.name: f.default for f in dataclasses.fields(config)}.get("type") != name:
            raise TypeError(f"{cls.__name__}.Config.type must default to {name!r}")
        table = _PARTS.setdefault(kind, {})
        if name in table:
            raise ValueError(f"a {kind} named {name!r} is already registered ({table[name].__name__})")
        table[name] = cls
        return cls

    return decorate


def part_types(kind: str) -> list[str]:
    """The registered names of a kind, sorted (`none` not included)."""
    return sorted(_PARTS.get(kind, {}))


def part_type(section: Mapping | DictConfig | None) -> str:
    """The `type` of a section (`none` when the section or its type is missing)."""
    if section is None:
        return NONE
    return str(section.get("type", NONE) or NONE)


def part_class(kind: str, name: str, *, key: str) -> type:
    """The class registered as `name` for `kind`; ConfigError naming `key.type` and the valid names otherwise."""
    table = _PARTS.get(kind, {})
    if name not in table:
        valid = [NONE, *sorted(table)]
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"config key '{key}.type' = {name!r}: expected one of {', '.join(valid)}{hint}")
    return table[name]


def resolve_part(kind: str, section: Mapping | DictConfig | None, *, key: str) -> Any:
    """A section's typed `Config` (checked), or None for `type: none`.

    Raises:
        ConfigError: unknown type or key (the closest valid one suggested), a value of the wrong type, or one the
            part's `check` refuses; the message names the full key (`wm.readout.keypoints`).
    """
    name = part_type(section)
    if name == NONE:
        extra = sorted(set(section or {}) - {"type"})
        if extra:
            raise ConfigError(f"config key '{key}.{extra[0]}' is set, but {key}.type is none: set {key}.type too")
        return None
    cls = part_class(kind, name, key=key)
    plain = OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)
    fields = [f.name for f in dataclasses.fields(cls.Config)]
    for k in plain:
        if k not in fields:
            close = difflib.get_close_matches(str(k), fields, n=1, cutoff=0.6)
            hint = f"; did you mean '{key}.{close[0]}'?" if close else f" (a {name} {kind} has {', '.join(fields)})"
            raise ConfigError(f"unknown config key '{key}.{k}'{hint}")
    try:
        typed = OmegaConf.merge(OmegaConf.structured(cls.Config), plain)
    except OmegaConfBaseException as err:
        sub = getattr(err, "full_key", None) or "?"
        raise ConfigError(f"bad value for config key '{key}.{sub}': {str(err).splitlines()[0]}") from None
    config = OmegaConf.to_object(typed)
    check = getattr(config, "check", None)
    if check is not None:
        check(key)
    return config


def complete_part(kind: str, section: Mapping | DictConfig | None, *, key: str) -> dict:
    """The section with every default of its type filled in (`{"type": "none"}` for none), checked; a sub-section
    that is a part of its own (the `nested_parts` of the `Config`: `{"fit": "fit"}`) is completed too."""
    config = resolve_part(kind, section, key=key)
    if config is None:
        return {"type": NONE}
    out = dataclasses.asdict(config)
    for name, sub_kind in getattr(config, "nested_parts", {}).items():
        out[name] = complete_part(sub_kind, out[name], key=f"{key}.{name}")
    return out


def fail(key: str, value: Any, why: str) -> None:
    """Raise the ConfigError every check raises: `config key 'KEY' = VALUE: WHY`."""
    raise ConfigError(f"config key '{key}' = {value!r}: {why}")
