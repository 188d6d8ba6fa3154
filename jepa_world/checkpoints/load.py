"""The front doors: `load_encoder`, `load_predictor`, `load_ac_predictor`, `export_checkpoint` (world models:
`checkpoints.world_model.load_world_model`; policies: `checkpoints.policy.load_policy`).

What they read (see `docs/hub.md`):
    - a pretrained folder written by `save_pretrained` (`pretrained.py`), or by transformers' `save_pretrained` for
      `IJepaModel` / `VJEPA2Model` (`hf.py`);
    - a run folder (its newest `checkpoints/step_*.pt`) or one of our training checkpoints: the modules are rebuilt
      from the config saved in it (`jepa_world.factory`, never the training layer);
    - an official I-JEPA / V-JEPA / V-JEPA 2 / V-JEPA 2-AC checkpoint or a bare state dict (`official.py`).
Every load is strict (`state_dict.py`): missing, unexpected and wrongly shaped keys are reported by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from jepa_world.checkpoints.hf import hf_model_type, load_hf_component
from jepa_world.checkpoints.hf_export import hf_export_type, save_hf
from jepa_world.checkpoints.io import CheckpointError, load_checkpoint
from jepa_world.checkpoints.official import (
    detect_release,
    infer_ac_predictor_kwargs,
    infer_encoder_kwargs,
    infer_predictor_kwargs,
    is_ac_predictor,
    official_state_dict,
)
from jepa_world.checkpoints.paths import resolve_checkpoint
from jepa_world.checkpoints.pretrained import (
    MODEL_CLASSES,
    from_pretrained,
    module_config,
    save_pretrained,
)
from jepa_world.checkpoints.state_dict import abbrev, instantiate, is_state_dict
from jepa_world.checkpoints.timm import save_timm
from jepa_world.checkpoints.world_model import checkpoint_kind, expecting, world_model_from_state
from jepa_world.config import saved_config
from jepa_world.factory import build_jepa
from jepa_world.models.ac_predictor import ActionConditionedPredictor
from jepa_world.models.mlp_dynamics import ResidualMlpDynamics
from jepa_world.models.predictor import MaskPredictor
from jepa_world.models.vit import VisionTransformer

COMPONENTS = ("target_encoder", "encoder", "predictor")
ENCODER_COMPONENTS = ("target_encoder", "encoder")
EXPECTED_ENCODER = (
    "expected a pretraining run (jepa-world pretrain), an exported folder (jepa-world export), a transformers folder "
    "or an official I-JEPA / V-JEPA checkpoint"
)
EXPORT_FORMATS = ("jepa_world", "timm", "hf")


def _first_param_keys(state: Mapping) -> str:
    parts = []
    for key, value in state.items():
        if isinstance(value, Mapping) and value:
            parts.append(f"{key!r}: {abbrev([str(k) for k in value], 3)}")
    return "; first keys of its dicts: " + "; ".join(parts) if parts else ""


def _ours_kwargs(state: Mapping, component: str, path: Path) -> tuple[type[nn.Module], dict]:
    """Constructor kwargs of a component of one of our training checkpoints, rebuilt from its saved config."""
    try:
        with torch.device("meta"):
            jepa = build_jepa(saved_config(state["config"], source=str(path)))
    except Exception as err:  # a config from another version or task: say so rather than guess
        raise CheckpointError(
            f"{path}: cannot rebuild the model from the config saved in the checkpoint ({type(err).__name__}: {err})"
        ) from None
    module = {"encoder": jepa.encoder, "target_encoder": jepa.target_encoder, "predictor": jepa.predictor}[component]
    config = module_config(module)
    return MODEL_CLASSES[config["class"]], config["kwargs"]


def _load_component(path: str | Path, *, component: str, strict: bool, overrides: dict) -> nn.Module:
    with expecting(EXPECTED_ENCODER):
        source = resolve_checkpoint(path)
    if source.is_dir() and hf_model_type(source) is not None:
        return load_hf_component(source, component=component, strict=strict, **overrides)
    if source.is_dir():
        return from_pretrained(source, strict=strict, **overrides)
    with expecting(EXPECTED_ENCODER):
        state = load_checkpoint(source)
    what = f"{source} [{component}]"
    if state.get("task") == "policy" and str(state.get("format", "")).startswith("jepa_world/train/"):
        raise CheckpointError(f"{source} is {checkpoint_kind(state, source)}: it holds no {component!r}; "
                              f"{EXPECTED_ENCODER}")  # fmt: skip
    if str(state.get("format", "")).startswith("jepa_world/train/") and "config" in state:
        if component not in state and state.get("task") == "world_model":
            raise CheckpointError(
                f"{source} is a world-model run (jepa-world train-wm): it has no {component!r} (its encoder is "
                f"component 'encoder'; load_world_model reads the whole model); {EXPECTED_ENCODER}"
            )
        if component not in state:
            raise CheckpointError(f"{source} has no {component!r}; it holds {abbrev(sorted(map(str, state)))}")
        if state.get("task", "pretrain") == "pretrain":
            cls, kwargs = _ours_kwargs(state, component, source)
            return instantiate(cls, {**kwargs, **overrides}, state[component], strict=strict, what=what)
        if component == "predictor" and state.get("task") == "world_model":
            if overrides:
                raise CheckpointError(
                    f"{source}: a world model's predictor is rebuilt from the config saved with it; overrides "
                    f"{sorted(overrides)} are not supported"
                )
            return world_model_from_state(state, source).predictor
        # Other tasks (world models) keep a pretrained encoder: infer it like any state dict below.
    if is_state_dict(state):
        raw, encoder_raw, what = state, None, str(source)
    elif isinstance(state.get(component), Mapping):
        raw = state[component]
        encoder_raw = next((state[k] for k in ENCODER_COMPONENTS if isinstance(state.get(k), Mapping)), None)
    else:
        present = [k for k in COMPONENTS if k in state]
        hint = f"; it holds {present}" if present else ""
        raise CheckpointError(
            f"{source} matches no known checkpoint format: no {component!r} entry and not a state dict{hint}; "
            f"top-level keys {abbrev(sorted(map(str, state)), 10)}{_first_param_keys(state)}"
        )
    if not is_state_dict(raw):
        raise CheckpointError(f"{what} is not a dict of tensors (found {type(raw).__name__})")
    release = detect_release(raw)
    if release == "generic" and encoder_raw is not None:
        release = detect_release(encoder_raw)
    official = not str(state.get("format", "")).startswith("jepa_world/")
    if release == "generic" and official and isinstance(state.get("predictor"), Mapping):
        # Only V-JEPA 2-AC has this predictor; its encoder keys carry `module.` alone (no `backbone.` to tell).
        release = "vjepa2" if is_ac_predictor(state["predictor"]) else release
    state_dict = official_state_dict(raw)
    if component == "predictor" and is_ac_predictor(state_dict):
        kwargs = infer_ac_predictor_kwargs(state_dict, what=what, **overrides)
        return instantiate(ActionConditionedPredictor, kwargs, state_dict, strict=strict, what=what)
    if component == "predictor":
        enc = official_state_dict(encoder_raw) if encoder_raw is not None else None
        kwargs = infer_predictor_kwargs(state_dict, release=release, encoder_state_dict=enc, what=what, **overrides)
        return instantiate(MaskPredictor, kwargs, state_dict, strict=strict, what=what)
    kwargs = infer_encoder_kwargs(state_dict, release=release, what=what, **overrides)
    return instantiate(VisionTransformer, kwargs, state_dict, strict=strict, what=what)


def load_encoder(
    path_or_dir: str | Path, *, component: str = "target_encoder", strict: bool = True, **overrides
) -> VisionTransformer:
    """Load an encoder from any supported source (see the module docstring and docs/hub.md).

    Args:
        path_or_dir: pretrained folder, run folder, our training checkpoint, an official I-JEPA / V-JEPA /
            V-JEPA 2 checkpoint, or a bare state dict file.
        component: "target_encoder" (the EMA encoder the releases evaluate; default) or "encoder" (the context
            encoder, which the V-JEPA 2 hub and HF's I-JEPA conversion load). Ignored for pretrained folders.
        strict: missing / unexpected keys are an error (False: a warning). Wrong shapes are always an error.
        **overrides: VisionTransformer kwargs (e.g. `num_heads=22`, `num_frames=64`, `act_checkpoint=True`).

    Returns:
        The encoder in eval mode.

    Raises:
        CheckpointError: unreadable file, unknown format, or weights that do not fit (keys and shapes named).
        ValueError: bad `component`.
    """
    if component not in ENCODER_COMPONENTS:
        raise ValueError(f"component={component!r}; load_encoder expects one of {ENCODER_COMPONENTS}")
    module = _load_component(path_or_dir, component=component, strict=strict, overrides=overrides)
    if not isinstance(module, VisionTransformer):
        raise CheckpointError(f"{path_or_dir} holds a {type(module).__name__}, not an encoder; use load_predictor")
    return module


def load_predictor(path_or_dir: str | Path, *, strict: bool = True, **overrides) -> nn.Module:
    """Load the predictor a checkpoint holds: a mask predictor, or a V-JEPA 2-AC action-conditioned one.

    Reads our checkpoints and folders, official I-JEPA / V-JEPA / V-JEPA 2 checkpoints (a `MaskPredictor`), the
    official V-JEPA 2-AC checkpoint `vjepa2-ac-vitg.pt` (an `ActionConditionedPredictor`; its keys
    `action_encoder.*`, ... tell which) and our world-model checkpoints (the predictor preset of their saved config:
    an `ActionConditionedPredictor` or a `ResidualMlpDynamics`). `load_ac_predictor` insists on the transformer.

    Args:
        path_or_dir: as for `load_encoder`.
        strict: missing / unexpected keys are an error (False: a warning).
        **overrides: kwargs of the class built (e.g. `num_heads=`, `grid_size=`), plus, for a mask predictor,
            `num_frames=` (clip length used to read the grid of a video position table).

    Returns:
        The predictor in eval mode.
    """
    module = _load_component(path_or_dir, component="predictor", strict=strict, overrides=overrides)
    if not isinstance(module, MaskPredictor | ActionConditionedPredictor | ResidualMlpDynamics):
        raise CheckpointError(f"{path_or_dir} holds a {type(module).__name__}, not a predictor; use load_encoder")
    return module


def load_ac_predictor(path_or_dir: str | Path, *, strict: bool = True, **overrides) -> ActionConditionedPredictor:
    """Load a V-JEPA 2-AC action-conditioned predictor (official `vjepa2-ac-vitg.pt`, our world models, exports).

    The official file holds `encoder` and `predictor` (keys `module.` / `backbone.`-prefixed; both stripped). Widths
    and action / state / extrinsics dims come from the shapes; heads (16) and the frame grid (16 x 16) from the
    release (see `infer_ac_predictor_kwargs`).

    Args:
        path_or_dir: as for `load_encoder`.
        strict: missing / unexpected keys are an error (False: a warning).
        **overrides: ActionConditionedPredictor kwargs (e.g. `num_heads=`, `grid_size=(H', W')`).

    Returns:
        The predictor in eval mode: `model(z [B, T, HW, D], actions [B, T, A], states [B, T, S])`.

    Raises:
        CheckpointError: unreadable file, weights that do not fit (keys and shapes named), or a checkpoint whose
            predictor is a mask predictor.
    """
    module = load_predictor(path_or_dir, strict=strict, **overrides)
    if not isinstance(module, ActionConditionedPredictor):
        raise CheckpointError(
            f"{path_or_dir} holds a {type(module).__name__}, not a V-JEPA 2-AC action-conditioned predictor; use "
            "load_predictor"
        )
    return module


# --------------------------------------------------------------------------------------------------------------------


def export_checkpoint(
    run_or_ckpt: str | Path,
    output_dir: str | Path,
    *,
    component: str = "target_encoder",
    format: str = "jepa_world",
    **overrides,
) -> Path:
    """Turn a run folder, training checkpoint (ours or official) or pretrained folder into an export folder.

    Args:
        run_or_ckpt: anything `load_encoder` reads (a run folder uses its newest checkpoint).
        output_dir: folder to write config.json + model.safetensors to.
        component: "target_encoder", "encoder" or "predictor".
        format: "jepa_world" (`from_pretrained` / `load_encoder` read it), "timm" (image encoders only) or "hf"
            (transformers: an image encoder as `IJepaModel`; a RoPE video encoder with the source's predictor as
            `VJEPA2Model`; `component` picks the encoder).
        **overrides: passed to the loader (e.g. `num_heads=`, `num_frames=` for official checkpoints).

    Returns:
        The output folder.

    Raises:
        ValueError: bad component / format, or a model the format cannot represent (the reason named).
    """
    if component not in COMPONENTS:
        raise ValueError(f"component={component!r}; expected one of {COMPONENTS}")
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format={format!r}; expected one of {EXPORT_FORMATS}")
    if format in ("timm", "hf") and component == "predictor":
        raise ValueError(
            f"format={format!r} exports encoders only (with format='hf', a V-JEPA 2 encoder takes its predictor "
            "along); use component='target_encoder' or 'encoder'"
        )
    if component == "predictor":
        module: nn.Module = load_predictor(run_or_ckpt, **overrides)
    else:
        module = load_encoder(run_or_ckpt, component=component, **overrides)
    if format == "timm":
        return save_timm(module, output_dir)
    source = resolve_checkpoint(run_or_ckpt)
    if format == "hf":
        predictor = None
        if hf_export_type(module) == "vjepa2":
            try:
                predictor = load_predictor(run_or_ckpt, **overrides)
            except CheckpointError as err:
                raise ValueError(
                    f"transformers' VJEPA2Model is the encoder and its predictor in one model, and {source} gives no "
                    f"predictor ({err}); export from the run or checkpoint that holds both"
                ) from None
        return save_hf(module, output_dir, predictor=predictor, source=f"{source.name} [{component}]")
    return save_pretrained(module, output_dir, source=f"{source.name} [{component}]")
