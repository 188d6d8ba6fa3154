"""World models written by `jepa-world train-wm`: `load_world_model(_run)` rebuilds one from its checkpoint,
`init_world_model` fills a freshly built one with a run's weights (a second training stage: `wm.init_from`).

A train-wm checkpoint holds the resolved config, `meta` (action / state widths and the tree of the world model's parts:
`checkpoints.tree`) and one state dict per component (`encoder`, which is the readout with its backbone when there is
one, `predictor`, `inverse_dynamics` when trained). A load builds the model from the tree, without the training
schema; a checkpoint written before trees were saved (2026-12-07; its meta has the ViT's constructor config as
`encoder_config` instead) is rebuilt from its config, upgraded to today's keys (`config.legacy`). Every load is
strict and names what does not fit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from jepa_world.checkpoints.hf import hf_model_type
from jepa_world.checkpoints.io import CheckpointError, load_checkpoint
from jepa_world.checkpoints.paths import resolve_checkpoint
from jepa_world.checkpoints.pretrained import MODEL_CLASSES, decode_kwargs
from jepa_world.checkpoints.state_dict import abbrev, is_state_dict, load_state_dict_strict
from jepa_world.checkpoints.tree import build_part_tree
from jepa_world.config import saved_config
from jepa_world.factory import build_world_model
from jepa_world.models.world_model import WorldModel

COMPONENTS = ("encoder", "predictor", "inverse_dynamics")
# What each kind of checkpoint is for, in the user's words: the second half of a wrong-kind refusal.
EXPECTED_WORLD_MODEL = (
    "expected a world-model run (jepa-world train-wm): its folder or one of its checkpoints/step_*.pt"
)
_RUNS = {
    "pretrain": "a pretraining run (jepa-world pretrain; an encoder for wm.encoder.checkpoint, load_encoder, export)",
    "world_model": "a world-model run (jepa-world train-wm; for plan, train-policy, wm.init_from, load_world_model)",
    "policy": "a policy run (jepa-world train-policy; for plan --agent policy, policy+cem or mcts, and load_policy)",
}


def checkpoint_kind(state: Mapping | None, source: Path) -> str:
    """What a checkpoint file (`state`) or a folder (`state` None) is, and what it is for, in the user's words."""
    if state is None:
        model_type = hf_model_type(source)
        if model_type is not None:
            return f"a transformers folder ({model_type}; an encoder for wm.encoder.checkpoint, load_encoder, export)"
        return "an exported folder (jepa-world export; an encoder or predictor for wm.encoder.checkpoint, load_encoder)"
    if str(state.get("format", "")).startswith("jepa_world/train/"):
        task = state.get("task", "pretrain")
        return _RUNS.get(task, f"a {task!r} run")
    if is_state_dict(state):
        return "a bare state dict (an encoder's weights: for load_encoder)"
    if any(isinstance(state.get(k), Mapping) for k in ("encoder", "target_encoder", "predictor")):
        return "an official I-JEPA / V-JEPA checkpoint (an encoder for wm.encoder.checkpoint, load_encoder, export)"
    return f"no checkpoint of a known kind (it holds {abbrev(sorted(map(str, state)))})"


@contextmanager
def expecting(expected: str) -> Iterator[None]:
    """Finish a missing / empty / unreadable-path `CheckpointError` raised inside with what the caller expected."""
    try:
        yield
    except CheckpointError as err:
        raise CheckpointError(f"{err}; {expected}") from None


def _read_world_model_state(path_or_run: str | Path) -> tuple[dict, Path]:
    """The newest checkpoint of a train-wm run (or the given file), refused when it is not a world model's."""
    with expecting(EXPECTED_WORLD_MODEL):
        source = resolve_checkpoint(path_or_run)
        state = None if source.is_dir() else load_checkpoint(source)
    if state is None or state.get("task") != "world_model":
        task = f" (task={state['task']!r})" if state is not None and "task" in state else ""
        raise CheckpointError(
            f"{source} is not a world-model checkpoint{task}: it is {checkpoint_kind(state, source)}; "
            f"{EXPECTED_WORLD_MODEL}"
        )
    missing = [k for k in ("config", "meta") if k not in state]
    if missing:
        raise CheckpointError(f"{source} is not a world-model checkpoint that can be rebuilt: it has no {missing} "
                              f"(it holds {abbrev(sorted(map(str, state)))})")  # fmt: skip
    return state, source


def world_model_components(model: WorldModel) -> dict[str, nn.Module]:
    """The modules a train-wm checkpoint holds, by their names in it (`inverse_dynamics` only when trained)."""
    parts: dict[str, nn.Module] = {"encoder": model.encoder, "predictor": model.predictor}
    if model.inverse_dynamics is not None:
        parts["inverse_dynamics"] = model.inverse_dynamics
    return parts


def _load_components(model: WorldModel, state: Mapping, source: Path) -> None:
    """Every component of `model` from `state`, strictly; a component on one side only is an error."""
    parts = world_model_components(model)
    for name in COMPONENTS:
        if name in parts and name not in state:
            raise CheckpointError(f"{source} has no {name!r}; it holds {abbrev(sorted(map(str, state)))}")
        if name in state and name not in parts:
            raise CheckpointError(f"{source} holds {name!r}, which the model built from the config does not have")
    for name, module in parts.items():
        load_state_dict_strict(module, state[name], what=f"{source} [{name}]")


def world_model_from_state(state: Mapping, source: Path) -> WorldModel:
    """Rebuild a `WorldModel` from a train-wm checkpoint's tree of parts (or, written before trees, its config and
    meta), then load every component strictly."""
    tree = (state.get("meta") or {}).get("tree")
    if tree is not None:
        with torch.random.fork_rng(devices=[]):  # random init that the loaded weights replace: keep the caller's RNG
            model = build_part_tree(tree, where=str(source))
        if not isinstance(model, WorldModel):
            raise CheckpointError(f"{source}: the part tree's root is a {type(model).__name__}, not a WorldModel")
        _load_components(model, state, source)
        return model.eval()
    return _legacy_world_model(state, source)


def _legacy_world_model(state: Mapping, source: Path) -> WorldModel:
    """The converter of checkpoints written before trees: the model rebuilt from the saved config (upgraded)."""
    missing = [k for k in ("config", "meta") if k not in state]
    if missing:
        raise CheckpointError(f"{source}: a world-model checkpoint needs {missing} to be rebuilt; it holds "
                              f"{abbrev(sorted(map(str, state)))}")  # fmt: skip
    meta = state["meta"]
    cfg = saved_config(state["config"], source=str(source))
    encoder = None
    enc_cfg = meta.get("encoder_config") or {}
    with torch.random.fork_rng(devices=[]):  # random init that the loaded weights replace: keep the caller's RNG
        if enc_cfg:
            if enc_cfg.get("class") not in MODEL_CLASSES:
                raise CheckpointError(f"{source}: unknown encoder class {enc_cfg.get('class')!r} in meta")
            # Built only: every component, the encoder (or its readout with the backbone) included, is loaded below.
            encoder = MODEL_CLASSES[enc_cfg["class"]](**decode_kwargs(enc_cfg["kwargs"]))
        else:
            cfg.wm.encoder.checkpoint = None  # the registered encoder trained jointly; its weights are below
        try:
            model = build_world_model(
                cfg, action_dim=int(meta["action_dim"]), state_dim=int(meta["state_dim"]), encoder=encoder
            )
        except Exception as err:
            raise CheckpointError(
                f"{source}: cannot rebuild the world model from its saved config ({type(err).__name__}: {err})"
            ) from None
    _load_components(model, state, source)
    return model.eval()


@dataclass
class WorldModelRun:
    """A world model with what its run knew: the resolved config, the checkpoint file and its step."""

    model: WorldModel
    config: DictConfig
    source: Path
    step: int


def load_world_model_run(path_or_run: str | Path, *, device: str | torch.device = "cpu") -> WorldModelRun:
    """`load_world_model`, keeping the run's config (where its episodes are) and the checkpoint it came from."""
    state, source = _read_world_model_state(path_or_run)
    model = world_model_from_state(state, source).to(device).eval()
    config = saved_config(state["config"], source=str(source))
    return WorldModelRun(model=model, config=config, source=source, step=int(state["step"]))


def load_world_model(path_or_run: str | Path, *, device: str | torch.device = "cpu") -> WorldModel:
    """Load a world model (encoder + action-conditioned predictor) written by `jepa-world train-wm`.

    The model is built from the tree of parts saved in the checkpoint (`meta["tree"]`; older checkpoints: from their
    config, upgraded to today's keys); then every component (`encoder`, `predictor`, `inverse_dynamics` when
    trained) is loaded strictly.

    Args:
        path_or_run: run folder (its newest `checkpoints/step_*.pt`) or a checkpoint file.
        device: where to put the model.

    Returns:
        The `WorldModel` in eval mode.

    Raises:
        CheckpointError: unreadable file, a pretraining checkpoint or export folder instead of a world model, or
            weights that do not fit (keys and shapes named).
    """
    return load_world_model_run(path_or_run, device=device).model


def init_world_model(model: WorldModel, path_or_run: str | Path) -> int:
    """Copy a train-wm run's weights into `model`, which was built from this run's config (not the saved one).

    The second stage of a two-stage recipe: train the readout and dynamics on a frozen ViT, then fine-tune from there
    (LP-FT; `wm.init_from`). Only weights move: the optimizer, schedules and step count start afresh. The two models
    must have the same architecture (readout width, predictor, inverse-dynamics head); which ViT blocks train may
    differ.

    Args:
        model: the freshly built world model to fill in place.
        path_or_run: train-wm run folder (its newest checkpoint) or a checkpoint file.

    Returns:
        The step of the checkpoint the weights came from.

    Raises:
        CheckpointError: not a world-model checkpoint, or components / keys / shapes that do not fit (named).
    """
    state, source = _read_world_model_state(path_or_run)
    _load_components(model, state, source)
    return int(state["step"])
