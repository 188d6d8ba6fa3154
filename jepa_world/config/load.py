"""Loading a config: the typed defaults < each `--config FILE` < flag values < `key=value` overrides.

The merge runs against the structured schema (`schema.Config`), so an unknown key or a value of the wrong type fails
at once with a message that names the key and suggests the closest valid key; `checks.validate` then checks the rest.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from jepa_world.config.checks import validate
from jepa_world.config.legacy import find_legacy, legacy_key_error, upgrade_saved
from jepa_world.config.schema import COMMAND_DEFAULTS, Config, ConfigError


def _all_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, DictConfig):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _friendly(err: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError | AttributeError) or "not in struct" in str(err) or "Key '" in str(err):
        close = difflib.get_close_matches(str(key), _all_keys(schema), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return ConfigError(f"unknown config key '{key}' in {source}{hint}")
    if isinstance(err, ValidationError) and "expected one of" in str(err):
        # A Choice (Enum) key: say it the way `validate` says every other bad value.
        choices = str(err).split("expected one of", 1)[1].splitlines()[0].strip(" []")
        return ConfigError(
            f"config key '{key}' = {getattr(err, 'value', None)!r}: expected one of {choices} ({source})"
        )
    if isinstance(err, ValidationError):
        return ConfigError(f"bad value for config key '{key}' in {source}: {str(err).splitlines()[0]}")
    return ConfigError(f"invalid config in {source}: {str(err).splitlines()[0]}")


# Sections chosen by a `type` key (`config.parts`), outer first: a later file or override that gives one another type
# starts it afresh (the keys of the old type are not the new type's), instead of merging into it.
TYPED_SECTIONS = ("wm.readout", "wm.readout.fit")


def _merge(cfg: DictConfig, new: DictConfig) -> DictConfig:
    """`OmegaConf.merge(cfg, new)`, where a typed section whose type `new` changes is replaced, not merged into."""
    for path in TYPED_SECTIONS:
        new_type = OmegaConf.select(new, f"{path}.type", default=None)
        if new_type is not None and new_type != OmegaConf.select(cfg, f"{path}.type", default=None):
            OmegaConf.update(cfg, path, {"type": new_type}, merge=False)
    return OmegaConf.merge(cfg, new)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line: what the YAML parser found, and where (`found duplicate key max_steps, line 3, column 3`)."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def load_config(
    files: list[str | Path] | None = None,
    overrides: list[str] | None = None,
    *,
    command: str = "pretrain",
    values: Mapping[str, tuple[str, Any]] | None = None,
) -> DictConfig:
    """Build the resolved config.

    Args:
        files: YAML recipes merged in order over the defaults.
        overrides: `key=value` strings (OmegaConf dotlist syntax, e.g. `train.max_steps=10`), applied last.
        command: whose defaults to start from ("pretrain", "train-wm", "plan", "probe"; see COMMAND_DEFAULTS).
        values: `{dotted key: (source, value)}` set after the files and before the overrides, with the same checks
            (the CLI's flag aliases: `--horizon 30` is `plan.horizon`; `source` names the flag in errors).

    Returns:
        A struct-mode DictConfig (adding keys is an error), already validated.

    Raises:
        ConfigError: missing file, unknown key, wrong type, or invalid value; the message names it.
    """
    schema = OmegaConf.structured(Config)
    cfg = OmegaConf.merge(schema, OmegaConf.from_dotlist(COMMAND_DEFAULTS[command]))
    for f in files or []:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            top = yaml.safe_load(path.read_text())
            if top is not None and not isinstance(top, dict):  # a list or a scalar at the top: nothing to merge
                raise ConfigError(
                    f"{path}: expected a mapping of sections at the top level (e.g. 'train:' then its keys), got a "
                    f"{type(top).__name__}"
                )
            if top and (why := find_legacy(top)) is not None:
                raise ConfigError(f"{path}: {why}")
            cfg = _merge(cfg, OmegaConf.load(path))
        except OmegaConfBaseException as err:
            raise _friendly(err, schema, str(path)) from None
        except yaml.YAMLError as err:
            tabs = " (the file has tabs: YAML indents with spaces)" if "\t" in path.read_text(errors="replace") else ""
            raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(err)}{tabs}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path} is not UTF-8 text: {err}") from None
    for key, (source, value) in (values or {}).items():
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        try:
            cfg = _merge(cfg, OmegaConf.create(nested))
        except OmegaConfBaseException as err:
            raise _friendly(err, schema, source) from None
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, _, value = item.partition("=")
        if (why := legacy_key_error(key.strip(), value)) is not None:
            raise ConfigError(f"{why} (override {item!r})")
        if not value.strip():  # `data.index=$DATA` with DATA unset: YAML would read null and quietly use a default
            raise ConfigError(
                f"config key '{key.strip()}' = '': is empty (an unset shell variable?) in override {item!r}; give a "
                "value, or write null explicitly"
            )
        try:
            cfg = _merge(cfg, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            raise _friendly(err, schema, f"override {item!r}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({_yaml_problem(err)})") from None
    OmegaConf.set_struct(cfg, True)
    validate(cfg)
    return cfg


def saved_config(saved: Mapping | DictConfig, *, source: str = "a checkpoint") -> DictConfig:
    """A config saved with a run, completed with today's schema defaults for the keys it predates.

    Runs written before a key was added (e.g. `predictor.single_pass`) rebuild exactly as they trained: every new key
    defaults to the behaviour before it existed. Keys that were renamed or retired since are upgraded
    (`legacy.upgrade_saved`); any other key the schema does not have is an error that names it.

    Raises:
        ConfigError: the saved config has a key or value today's schema does not accept.
    """
    schema = OmegaConf.structured(Config)
    if not isinstance(saved, Mapping) or isinstance(saved, DictConfig):  # YAML text, or a DictConfig: plain containers
        try:
            saved = OmegaConf.to_container(OmegaConf.create(saved))
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as err:
            raise ConfigError(f"the config saved in {source} is not a mapping of sections: {err}") from None
    try:
        cfg = OmegaConf.merge(schema, OmegaConf.create(upgrade_saved(saved)))
    except OmegaConfBaseException as err:
        raise _friendly(err, schema, f"the config saved in {source}") from None
    OmegaConf.set_struct(cfg, True)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (what is saved next to every checkpoint)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def defaults_table(section: str | None = None) -> list[tuple[str, Any]]:
    """(key, default) for every leaf key, or those of one section (e.g. "plan"): `jepa-world COMMAND --help`."""
    cfg = OmegaConf.structured(Config)
    if section is not None:
        return [(k, v) for k, v in defaults_table() if k.startswith(section + ".")]
    return [
        (k, OmegaConf.select(cfg, k)) for k in _all_keys(cfg) if not isinstance(OmegaConf.select(cfg, k), DictConfig)
    ]
