"""Our pretrained format: `config.json` (class name + constructor kwargs, no registry names) + `model.safetensors`.

`save_pretrained` writes what `from_pretrained` (and `load_encoder` / `load_predictor`) read back bit-exactly. The
architecture is the model's own `config` (the kwargs it was built with) minus the training-only ones (drop path,
activation checkpointing, init), which keep their defaults and can be passed as overrides when loading. Nothing named
in a config is imported or executed: only the classes in `MODEL_CLASSES` are built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import Enum
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from jepa_world.atomic import atomic_write
from jepa_world.checkpoints.io import CheckpointError
from jepa_world.checkpoints.state_dict import instantiate, unwrap
from jepa_world.models.ac_predictor import ActionConditionedPredictor
from jepa_world.models.predictor import MaskPredictor
from jepa_world.models.vit import VisionTransformer

PRETRAINED_FORMAT = "jepa_world/pretrained/v1"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "VisionTransformer": VisionTransformer,
    "MaskPredictor": MaskPredictor,
    "ActionConditionedPredictor": ActionConditionedPredictor,
}
TRAINING_ONLY = ("drop_path_rate", "act_checkpoint", "init_std", "zero_init_mask_tokens")


def _version() -> str:
    """The installed jepa_world version for `config.json` (from the package metadata: the face sits above us)."""
    try:
        return metadata.version("jepa_world")
    except metadata.PackageNotFoundError:
        return "unknown"


def _plain(value: Any) -> Any:
    # JSON- and weights_only-safe values (OmegaConf containers and tuples become lists, config choices strings).
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def module_config(module: nn.Module) -> dict:
    """Registry-free description of an encoder or predictor: `{"class": name, "kwargs": constructor kwargs}`.

    The kwargs are the module's `config` (what it was built with), without the training-only ones.

    Raises:
        TypeError: `module` is not a VisionTransformer, MaskPredictor or ActionConditionedPredictor.
    """
    module = unwrap(module)
    name = type(module).__name__
    if MODEL_CLASSES.get(name) is not type(module):
        raise TypeError(
            f"module is a {name}; expected a VisionTransformer, MaskPredictor or ActionConditionedPredictor"
        )
    kwargs = {k: _plain(v) for k, v in module.config.items() if k not in TRAINING_ONLY}
    return {"class": name, "kwargs": kwargs}


def decode_kwargs(kwargs: Mapping) -> dict:
    out = dict(kwargs)
    for key in ("img_size", "grid_size"):
        if isinstance(out.get(key), list):
            out[key] = tuple(out[key])
    return out


def save_pretrained(module: nn.Module, directory: str | Path, *, source: str | None = None) -> Path:
    """Write `config.json` (class + constructor kwargs) and `model.safetensors` (weights, no pickle) to a folder.

    Args:
        module: a VisionTransformer, MaskPredictor or ActionConditionedPredictor.
        directory: output folder (created).
        source: where the weights came from, recorded in config.json.

    Returns:
        The folder.
    """
    module = unwrap(module)
    directory = Path(directory)
    config = {"format": PRETRAINED_FORMAT, **module_config(module), "jepa_world_version": _version()}
    if source is not None:
        config["source"] = source
    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    blob = save(tensors, metadata={"format": "pt", "jepa_world": PRETRAINED_FORMAT, "class": config["class"]})
    atomic_write(directory / WEIGHTS_NAME, lambda f: f.write(blob))
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(directory / CONFIG_NAME, lambda f: f.write(text.encode()))
    return directory


def read_pretrained_config(directory: Path) -> dict:
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory} has no {CONFIG_NAME}; it is not a pretrained folder")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds a JSON {type(config).__name__}, not an object")
    if "architecture" in config and "format" not in config:
        raise CheckpointError(
            f"{directory} is a timm export; load it with timm.create_model('local-dir:{directory}', pretrained=True)"
        )
    if config.get("format") != PRETRAINED_FORMAT:
        raise CheckpointError(
            f"{path} has format {config.get('format')!r}; expected {PRETRAINED_FORMAT!r} (written by save_pretrained)"
        )
    if config.get("class") not in MODEL_CLASSES:
        raise CheckpointError(
            f"{path} names class {config.get('class')!r}; jepa_world builds only {sorted(MODEL_CLASSES)} "
            "(nothing named in a config is imported or executed)"
        )
    if not isinstance(config.get("kwargs"), dict):
        raise CheckpointError(f"{path} has no 'kwargs' object with the constructor arguments")
    return config


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights not found: {path}")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None


def from_pretrained(directory: str | Path, *, strict: bool = True, **overrides) -> nn.Module:
    """Rebuild the module saved by `save_pretrained` and load its weights (bit-exact, strict).

    Args:
        directory: folder with config.json and model.safetensors.
        strict: report missing / unexpected keys as an error (False: warn and keep the random init for missing).
        **overrides: constructor kwargs replacing the saved ones (e.g. `act_checkpoint=True`); a change of shape
            fails the strict load with the key and both shapes named.

    Returns:
        The module in eval mode.
    """
    directory = Path(directory)
    config = read_pretrained_config(directory)
    cls = MODEL_CLASSES[config["class"]]
    kwargs = {**decode_kwargs(config["kwargs"]), **overrides}
    state_dict = read_safetensors(directory / WEIGHTS_NAME)
    return instantiate(cls, kwargs, state_dict, strict=strict, what=str(directory))
