"""Keys the schema no longer has: renamed ones, the flat readout keys that became the `wm.readout` section, and
retired ones, with what became of each.

A config saved by an older run is upgraded (`upgrade_saved`), so every old run still loads and resumes; a key a user
writes today under an old name is refused naming its new one (`legacy_key_error`), so recipes move to the new names
instead of carrying two spellings.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

# old dotted key -> new dotted key (2026-12-07: the world model's parts own their sections)
RENAMED: dict[str, str] = {
    "wm.num_episodes": "wm.collect.episodes",
    "wm.episode_steps": "wm.collect.steps",
    "wm.lerobot_camera": "wm.lerobot.camera",
    "wm.lerobot_action_key": "wm.lerobot.action_key",
    "wm.lerobot_state_key": "wm.lerobot.state_key",
    "wm.encoder_checkpoint": "wm.encoder.checkpoint",
    "wm.embed_dim": "wm.encoder.embed_dim",
    "wm.encoder_kwargs": "wm.encoder.kwargs",
    "wm.pool": "wm.encoder.pool",
    "wm.finetune_encoder": "wm.encoder.finetune",
    "wm.finetune_blocks": "wm.encoder.finetune_blocks",
    "wm.encoder_lr_scale": "wm.encoder.lr_scale",
    "wm.predictor_kwargs": "wm.predictor.kwargs",
    "wm.rollout_steps": "wm.predictor.rollout_steps",
    "wm.use_states": "wm.predictor.use_states",
    "wm.var_weight": "wm.terms.var",
    "wm.cov_weight": "wm.terms.cov",
    "wm.idm_weight": "wm.terms.idm",
    "wm.smooth_weight": "wm.terms.smooth",
}
# a string value where a section now is: the section's name key
BECAME_SECTIONS: dict[str, str] = {"wm.encoder": "wm.encoder.name", "wm.predictor": "wm.predictor.name"}
# the flat keys of the token readout, now one section `wm.readout: {type, dim | keypoints, hidden, fit, lift}`
READOUT_KEYS: dict[str, str] = {
    "wm.readout_dim": "wm.readout.dim (type mlp) or wm.readout.keypoints (type keypoints: dim / 2)",
    "wm.readout_labels": "wm.readout.fit.type=labels with wm.readout.fit.labels",
    "wm.readout_from_actions": "wm.readout.fit.type=actions",
    "wm.readout_fit_steps": "wm.readout.fit.steps",
    "wm.readout_dynamics_weight": "wm.readout.fit.dynamics_weight (fit type labels)",
    "wm.lift_dim": "wm.readout.lift",
}
# key -> why it went; an old run's value is dropped (with a warning when it was not the default)
RETIRED: dict[str, tuple[Any, str]] = {
    "wm.var_time_weight": (
        0.0,
        "the variance over each window's frames planned at 2% (docs/notes/cluttered-two-rooms.md)",
    ),
}


def _section_like(value: Any) -> bool:
    return isinstance(value, Mapping) or (isinstance(value, str) and value.strip().startswith("{"))


def legacy_key_error(key: str, value: Any = None) -> str | None:
    """What to write instead of an old key, or None when `key` is not an old one (`value`: what it is set to; a
    mapping, or `{...}` text, where a section now is, is the new form)."""
    if key in RENAMED:
        return f"config key '{key}' is now '{RENAMED[key]}'"
    if key in BECAME_SECTIONS and not _section_like(value):
        return f"config key '{key}' is a section now: set '{BECAME_SECTIONS[key]}'"
    if key == "wm.readout" and not _section_like(value):
        return (f"config key 'wm.readout' is a section now: wm.readout.type={value} (with wm.readout.dim for mlp, "
                "wm.readout.keypoints for keypoints)")  # fmt: skip
    if key in READOUT_KEYS:
        return f"config key '{key}' is now {READOUT_KEYS[key]}"
    if key in RETIRED:
        return f"config key '{key}' was retired: {RETIRED[key][1]}"
    return None


def find_legacy(tree: Mapping, prefix: str = "") -> str | None:
    """The first old key in a nested mapping (a recipe file) with what to write instead, or None."""
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if (why := legacy_key_error(key, v)) is not None:
            return why
        if isinstance(v, Mapping) and key != "wm.readout" and (why := find_legacy(v, key + ".")) is not None:
            return why
    return None


def _readout_section(wm: dict) -> dict:
    dim = int(wm.pop("readout_dim", 0) or 0)
    head = str(wm.pop("readout", "mlp") or "mlp")
    labels = int(wm.pop("readout_labels", 0) or 0)
    from_actions = bool(wm.pop("readout_from_actions", False))
    steps = int(wm.pop("readout_fit_steps", 3000))
    dynamics_weight = float(wm.pop("readout_dynamics_weight", 0.0) or 0.0)
    lift = int(wm.pop("lift_dim", 0) or 0)
    if dim <= 0:
        return {"type": "none"}
    section: dict[str, Any] = {"type": "keypoints", "keypoints": dim // 2} if head == "keypoints" else {
        "type": "mlp", "dim": dim}  # fmt: skip
    if labels:
        section["fit"] = {"type": "labels", "labels": labels, "steps": steps, "dynamics_weight": dynamics_weight}
    elif from_actions:
        section["fit"] = {"type": "actions", "steps": steps}
    section["lift"] = lift
    return section


def upgrade_saved(saved: Mapping) -> dict:
    """A config saved by an older version, in today's keys (retired keys dropped, a warning when not at default)."""
    cfg = copy.deepcopy(dict(saved))
    wm = cfg.get("wm")
    if not isinstance(wm, Mapping):
        return cfg
    wm = dict(wm)
    for old, (default, why) in RETIRED.items():
        name = old.split(".", 1)[1]
        if name in wm:
            value = wm.pop(name)
            if value != default:
                warnings.warn(f"the saved config sets {old}={value!r}, a retired key ({why}); it is ignored",
                              stacklevel=2)  # fmt: skip
    if any(k.split(".", 1)[1] in wm for k in READOUT_KEYS) or not isinstance(wm.get("readout", {}), Mapping):
        wm["readout"] = _readout_section(wm)
    for old, new in BECAME_SECTIONS.items():
        name = old.split(".", 1)[1]
        if name in wm and not isinstance(wm[name], Mapping):
            wm[name] = {new.rsplit(".", 1)[1]: wm[name]}
    for old, new in RENAMED.items():
        name = old.split(".", 1)[1]
        if name in wm:
            value = wm.pop(name)
            section, leaf = new.split(".")[1:]
            wm[section] = {**dict(wm.get(section) or {}), leaf: value}
    cfg["wm"] = wm
    return cfg
