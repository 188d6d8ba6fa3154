"""Every checkpoint read and write of jepa_world.

Training checkpoints are `torch.save` dicts with the keys users of the releases recognise (`encoder`,
`target_encoder`, `predictor`, `opt`, `step`) plus what exact resumption needs (`rng`, `config`). They hold only
tensors, numbers, strings, lists and dicts, so they load with `torch.load(..., weights_only=True)`: nothing in a
checkpoint is ever executed. Writes are atomic (temporary file, fsync, rename), so a crash during a save never
destroys the previous checkpoint.

What `load_encoder` / `load_predictor` read (see `docs/hub.md`):
    - a pretrained folder written by `save_pretrained`: `config.json` (class name + constructor kwargs, no registry
      names) and `model.safetensors` (no pickle at all);
    - a run folder (its newest `checkpoints/step_*.pt`) or one of our training checkpoints: the architecture is
      rebuilt from the config saved in it;
    - an official I-JEPA (`.pth.tar`), V-JEPA or V-JEPA 2 (`.pt`) training checkpoint, or a bare state dict: the
      architecture is inferred from the tensor shapes (width, depth, patch, tubelet, MLP ratio, RoPE or table, grid,
      mask tokens), the release from the key names and prefixes; what weights cannot tell (heads, clip length) comes
      from a table keyed by release and width, overridable with `num_heads=` / `num_frames=`;
    - the V-JEPA 2-AC action-conditioned predictor (`vjepa2-ac-vitg.pt`, keys `action_encoder.*` ...): widths and
      action / state / extrinsics dims from the shapes, heads (16) and frame grid (16 x 16) from the release,
      overridable with `num_heads=` / `grid_size=`; it becomes an `ActionConditionedPredictor`.
Stored position tables are copied as they are (never recomputed), and every load is strict: missing, unexpected and
wrongly shaped keys are reported by name. Modules are built on the meta device and take the loaded tensors, so
loading a ViT-g does not pay for a random init (and draws nothing from the global RNG).

Shapes: encoder `pos_embed [1, N, D]`, predictor `predictor_pos_embed [1, N, P]`, mask tokens `[1, 1, P]`; video
patch weights `[D, C, t, p, p]`, image `[D, C, p, p]`.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jepa_world.models.dynamics import ActionConditionedPredictor, ResidualMlpDynamics
from jepa_world.models.predictor import MaskPredictor
from jepa_world.models.vit import VisionTransformer

CHECKPOINT_FORMAT = "jepa_world/train/v1"
PRETRAINED_FORMAT = "jepa_world/pretrained/v1"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")
PREFIXES = ("module.", "_orig_mod.", "backbone.")

COMPONENTS = ("target_encoder", "encoder", "predictor")
ENCODER_COMPONENTS = ("target_encoder", "encoder")
EXPORT_FORMATS = ("jepa_world", "timm")
RELEASES = ("ijepa", "vjepa", "vjepa2", "generic")

# Heads are not stored in the weights. Widths of the releases' presets (docs/hub.md); V-JEPA 2's ViT-g / ViT-G
# ("xformers" variants) use head width 64, i.e. 22 / 26 heads, where the earlier releases use 16.
HEADS_BY_WIDTH = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16, 1664: 16}
HEADS_BY_WIDTH_VJEPA2 = {**HEADS_BY_WIDTH, 1408: 22, 1664: 26}
VJEPA2_PREDICTOR_HEADS = 12
# V-JEPA 2-AC (vjepa2-ac-vitg.pt): VisionTransformerPredictorAC's default heads, and its 256 px / patch 16 frame grid.
AC_PREDICTOR_HEADS = 16
AC_PREDICTOR_GRID = (16, 16)
_AC_PREFIXES = ("action_encoder.", "state_encoder.", "extrinsics_encoder.")
DEFAULT_NUM_FRAMES = 16  # clip length of the video releases (the grid's time axis cannot be read from a table)
_ROPE_IMG_SIZE = {"vjepa2": 256}  # nominal size only: RoPE models take any size, nothing numeric depends on it

# Position settings of each release (facts sheet sections 1 and 5; V-JEPA pretrain configs set uniform_power: true).
_RELEASE_POS = {
    "ijepa": dict(sincos_layout="ijepa", uniform_power=False),
    "vjepa": dict(sincos_layout="vjepa", uniform_power=True),
    "vjepa2": dict(sincos_layout="vjepa", uniform_power=True),
}
_MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "VisionTransformer": VisionTransformer,
    "MaskPredictor": MaskPredictor,
    "ActionConditionedPredictor": ActionConditionedPredictor,
}


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message says which file or key."""


# --------------------------------------------------------------------------------------------------------------------
# State dicts
# --------------------------------------------------------------------------------------------------------------------
def _strip_key(key: str, prefixes: tuple[str, ...]) -> str:
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...] = PREFIXES) -> dict:
    """Remove wrapper prefixes (`module.` from DDP, `_orig_mod.` from torch.compile, `backbone.` from V-JEPA).

    Prefixes are removed repeatedly from the front of each key, in any order (`module.backbone.blocks.0...`).
    """
    return {_strip_key(key, prefixes): value for key, value in state_dict.items()}


def _abbrev(items: list[str], n: int = 6) -> str:
    shown = ", ".join(items[:n])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > n else ''}]"


def _mismatches(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> tuple[list, list, list]:
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    return missing, unexpected, shapes


def load_state_dict_strict(
    module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str, assign: bool = False
) -> None:
    """Load strictly; on mismatch raise CheckpointError naming missing / unexpected keys and shape mismatches.

    Args:
        module: the model to fill.
        state_dict: tensors by parameter name.
        what: how the error message names the source (file and component).
        assign: take the given tensors instead of copying into the module's (for modules built on the meta device).
    """
    missing, unexpected, shapes = _mismatches(module, state_dict)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_abbrev(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_abbrev(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch {_abbrev(shapes)}")
        raise CheckpointError(f"{what} does not match the model: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True, assign=assign)


def _load_state_dict_lenient(module: nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str) -> None:
    # strict=False still refuses wrong shapes: a silently skipped tensor is how the releases hid real mismatches.
    missing, unexpected, shapes = _mismatches(module, state_dict)
    if shapes:
        raise CheckpointError(f"{what} does not match the model: shape mismatch {_abbrev(shapes)}")
    if missing or unexpected:
        warnings.warn(
            f"{what}: strict=False, missing keys {_abbrev(missing)} keep their random init; "
            f"unexpected keys {_abbrev(unexpected)} are ignored",
            stacklevel=3,
        )
    module.load_state_dict(state_dict, strict=False)


def _instantiate(cls: type[nn.Module], kwargs: dict, state_dict: Mapping, *, strict: bool, what: str) -> nn.Module:
    """Build `cls(**kwargs)` and load `state_dict` into it; returns the module in eval mode."""
    try:
        if strict:
            # Every tensor comes from the checkpoint: no random init to pay for, no global RNG draws.
            with torch.device("meta"):
                module = cls(**kwargs)
        else:
            with torch.random.fork_rng(devices=[]):
                module = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise type(err)(f"cannot build {cls.__name__} for {what} with {kwargs}: {err}") from None
    if strict:
        load_state_dict_strict(module, state_dict, what=what, assign=True)
    else:
        _load_state_dict_lenient(module, state_dict, what=what)
    return module.eval()


# --------------------------------------------------------------------------------------------------------------------
# Training checkpoints
# --------------------------------------------------------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[Any], None]) -> Path:
    """Call `write(binary_file)` on a temporary file in the same folder, fsync, then rename it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` atomically to `path` (temporary file in the same folder, fsync, rename)."""
    return _atomic_write(Path(path), lambda f: torch.save({"format": CHECKPOINT_FORMAT, **state}, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True` (never runs code from the file).

    Raises:
        CheckpointError: the file is missing, truncated, not a checkpoint, or needs arbitrary pickle code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise CheckpointError(
                f"{path} needs arbitrary pickle code to load, which jepa_world refuses (it could run anything). "
                "If you trust the file, convert it once: `torch.load(path, weights_only=False)` in a separate "
                f"session, then save only its tensors / state dicts. ({msg})"
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint: {msg}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    return state


def list_checkpoints(directory: str | Path) -> list[Path]:
    """`step_*.pt` files in a directory, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.pt"


def prune_checkpoints(directory: str | Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` step checkpoints."""
    for old in list_checkpoints(directory)[:-keep_last]:
        old.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------------------------
# Architecture <-> registry-free config
# --------------------------------------------------------------------------------------------------------------------
def _mlp_ratio(hidden: int, dim: int) -> float:
    # Blocks build int(dim * ratio) hidden units; make sure the float ratio gives back exactly `hidden`.
    ratio = hidden / dim
    return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


def _sincos_settings(table: torch.Tensor, grid: tuple[int, ...], dim: int) -> dict:
    """Which layout / uniform_power reproduces a stored sin-cos table ({} if none does: a learned or custom table)."""
    from jepa_world.models.layers import sincos_table

    candidates = (
        [dict(sincos_layout="vjepa", uniform_power=False), dict(sincos_layout="ijepa", uniform_power=False)]
        if len(grid) == 2
        else [dict(sincos_layout="vjepa", uniform_power=True), dict(sincos_layout="vjepa", uniform_power=False)]
    )
    table = table.detach().float().reshape(-1, dim)
    for cand in candidates:
        ref = sincos_table(grid, dim, layout=cand["sincos_layout"], uniform_power=cand["uniform_power"])
        if ref.shape == table.shape and torch.allclose(ref, table.cpu(), atol=1e-4):
            return cand
    return {}


def _unwrap(module: nn.Module) -> nn.Module:
    # torch.compile and (Distributed)DataParallel wrap the model; the architecture is the wrapped one.
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, nn.DataParallel | nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def module_config(module: nn.Module) -> dict:
    """Registry-free description of an encoder or predictor: `{"class": name, "kwargs": constructor kwargs}`.

    Only architecture kwargs are recorded; training-only ones (drop path, activation checkpointing, init std) keep
    their defaults and can be passed as overrides when loading.

    Raises:
        TypeError: `module` is not a VisionTransformer, MaskPredictor or ActionConditionedPredictor.
    """
    module = _unwrap(module)
    if isinstance(module, VisionTransformer):
        grid, p = module.grid_size, module.patch_size
        h, w = grid[-2] * p, grid[-1] * p
        hidden = module.blocks[0].mlp.fc1.out_features if len(module.blocks) else 4 * module.embed_dim
        kwargs = dict(
            img_size=h if h == w else [h, w],
            patch_size=p,
            num_frames=grid[0] * module.tubelet_size if module.is_video else 1,
            tubelet_size=module.tubelet_size,
            in_chans=module.patch_embed.proj.in_channels,
            embed_dim=module.embed_dim,
            depth=len(module.blocks),
            num_heads=module.num_heads,
            mlp_ratio=_mlp_ratio(hidden, module.embed_dim),
            qkv_bias=bool(len(module.blocks) and module.blocks[0].attn.qkv.bias is not None),
            pos_embed=module.pos_embed_kind,
            sincos_layout=module.sincos_layout,
            uniform_power=module.uniform_power,
        )
        return {"class": "VisionTransformer", "kwargs": kwargs}
    if isinstance(module, MaskPredictor):
        blocks = module.predictor_blocks
        width = module.predictor_embed_dim
        hidden = blocks[0].mlp.fc1.out_features if len(blocks) else 4 * width
        kwargs = dict(
            grid_size=list(module.grid_size),
            embed_dim=module.embed_dim,
            predictor_embed_dim=width,
            depth=len(blocks),
            num_heads=module.num_heads,
            mlp_ratio=_mlp_ratio(hidden, width),
            qkv_bias=bool(len(blocks) and blocks[0].attn.qkv.bias is not None),
            num_mask_tokens=len(module.mask_tokens),
            pos_embed=module.pos_embed_kind,
        )
        # MaskPredictor does not keep its table settings: read them back from the table (defaults for RoPE).
        if module.predictor_pos_embed is not None and module.predictor_pos_embed.device.type != "meta":
            kwargs.update(_sincos_settings(module.predictor_pos_embed, module.grid_size, width))
        for key in ("sincos_layout", "uniform_power"):
            if hasattr(module, key):
                kwargs[key] = getattr(module, key)
        return {"class": "MaskPredictor", "kwargs": kwargs}
    if isinstance(module, ActionConditionedPredictor):
        blocks, width = module.predictor_blocks, module.predictor_embed_dim
        hidden = blocks[0].mlp.fc1.out_features if len(blocks) else 4 * width
        kwargs = dict(
            embed_dim=module.embed_dim,
            action_dim=module.action_dim,
            state_dim=module.state_dim,
            extrinsics_dim=module.extrinsics_dim,
            grid_size=list(module.grid_size),
            predictor_embed_dim=width,
            depth=len(blocks),
            num_heads=module.num_heads,
            mlp_ratio=_mlp_ratio(hidden, width),
            qkv_bias=bool(len(blocks) and blocks[0].attn.qkv.bias is not None),
        )
        return {"class": "ActionConditionedPredictor", "kwargs": kwargs}
    raise TypeError(
        f"module is a {type(module).__name__}; expected a VisionTransformer, MaskPredictor or "
        "ActionConditionedPredictor"
    )


def _decode_kwargs(kwargs: Mapping) -> dict:
    out = dict(kwargs)
    for key in ("img_size", "grid_size"):
        if isinstance(out.get(key), list):
            out[key] = tuple(out[key])
    return out


# --------------------------------------------------------------------------------------------------------------------
# Our pretrained format: config.json + model.safetensors
# --------------------------------------------------------------------------------------------------------------------
def save_pretrained(module: nn.Module, directory: str | Path, *, source: str | None = None) -> Path:
    """Write `config.json` (class + constructor kwargs) and `model.safetensors` (weights, no pickle) to a folder.

    Args:
        module: a VisionTransformer, MaskPredictor or ActionConditionedPredictor.
        directory: output folder (created).
        source: where the weights came from, recorded in config.json.

    Returns:
        The folder.
    """
    from safetensors.torch import save

    from jepa_world import __version__

    module = _unwrap(module)
    directory = Path(directory)
    config = {"format": PRETRAINED_FORMAT, **module_config(module), "jepa_world_version": __version__}
    if source is not None:
        config["source"] = source
    tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    blob = save(tensors, metadata={"format": "pt", "jepa_world": PRETRAINED_FORMAT, "class": config["class"]})
    _atomic_write(directory / WEIGHTS_NAME, lambda f: f.write(blob))
    text = json.dumps(config, indent=2) + "\n"
    _atomic_write(directory / CONFIG_NAME, lambda f: f.write(text.encode()))
    return directory


def _read_pretrained_config(directory: Path) -> dict:
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
    if config.get("class") not in _MODEL_CLASSES:
        raise CheckpointError(
            f"{path} names class {config.get('class')!r}; jepa_world builds only {sorted(_MODEL_CLASSES)} "
            "(nothing named in a config is imported or executed)"
        )
    if not isinstance(config.get("kwargs"), dict):
        raise CheckpointError(f"{path} has no 'kwargs' object with the constructor arguments")
    return config


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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
    config = _read_pretrained_config(directory)
    cls = _MODEL_CLASSES[config["class"]]
    kwargs = {**_decode_kwargs(config["kwargs"]), **overrides}
    state_dict = _read_safetensors(directory / WEIGHTS_NAME)
    return _instantiate(cls, kwargs, state_dict, strict=strict, what=str(directory))


# --------------------------------------------------------------------------------------------------------------------
# Official checkpoints: release detection and architecture inference from the state dict
# --------------------------------------------------------------------------------------------------------------------
def default_num_heads(width: int, release: str = "generic", *, predictor: bool = False) -> int:
    """Heads the releases use for a width (heads are not stored in weights).

    Args:
        width: encoder width D (also for a predictor: I-JEPA / V-JEPA predictors use the encoder's heads).
        release: "ijepa", "vjepa", "vjepa2" or "generic".
        predictor: heads of the mask predictor (V-JEPA 2: 12) instead of the encoder.

    Raises:
        CheckpointError: unknown width; pass `num_heads=` explicitly.
    """
    if predictor and release == "vjepa2":
        return VJEPA2_PREDICTOR_HEADS
    table = HEADS_BY_WIDTH_VJEPA2 if release == "vjepa2" else HEADS_BY_WIDTH
    if width not in table:
        what = "the predictor of an encoder" if predictor else "an encoder"
        raise CheckpointError(
            f"cannot infer num_heads for {what} of width {width} (heads are not stored in the weights; known widths "
            f"{sorted(table)}); pass num_heads=..."
        )
    return table[width]


def _key_prefixes(state_dict: Mapping[str, Any]) -> set[str]:
    return {k[: len(k) - len(_strip_key(k, PREFIXES))] for k in state_dict}


def detect_release(state_dict: Mapping[str, Any]) -> str:
    """Which release wrote a component's state dict (keys as stored, prefixes included).

    `backbone.` (V-JEPA's wrapper) means V-JEPA; no position table then means V-JEPA 2 (RoPE). I-JEPA keys carry
    `module.` only, and its predictor has one `mask_token`. Anything else is "generic" (e.g. a stripped state dict).
    """
    prefixes = _key_prefixes(state_dict)
    keys = set(strip_prefixes(state_dict))
    is_predictor = "predictor_embed.weight" in keys
    pos_key = "predictor_pos_embed" if is_predictor else "pos_embed"
    if any("backbone." in p for p in prefixes):
        return "vjepa" if pos_key in keys else "vjepa2"
    if "mask_token" in keys:
        return "ijepa"
    if not is_predictor and any("module." in p for p in prefixes) and pos_key in keys:
        patch = strip_prefixes(state_dict).get("patch_embed.proj.weight")
        if patch is not None and patch.ndim == 4:
            return "ijepa"
    return "generic"


def _count_blocks(keys: set[str], prefix: str) -> int:
    ids = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)(\.|$)", k))}
    if ids != set(range(len(ids))):
        raise CheckpointError(f"{prefix}{{i}} blocks are not numbered 0..n-1: found {sorted(ids)}")
    return len(ids)


def _require(state_dict: Mapping, keys: tuple[str, ...], what: str, kind: str) -> None:
    absent = [k for k in keys if k not in state_dict]
    if absent:
        raise CheckpointError(
            f"{what} is not {kind} state dict: no {_abbrev(absent)}; its first keys are {_abbrev(list(state_dict), 8)}"
        )


def _grid_from_table(
    n_tokens: int, *, video: bool, tubelet: int, num_frames: int | None, what: str, key: str
) -> tuple[int, ...]:
    """Token grid of a stored table: square spatial grid, and for video num_frames / tubelet time steps."""
    if not video:
        side = math.isqrt(n_tokens)
        if side * side != n_tokens:
            raise CheckpointError(f"{what}: {key} holds {n_tokens} tokens, not a square grid; pass img_size=(H, W)")
        return (side, side)
    frames = num_frames or DEFAULT_NUM_FRAMES
    steps = frames // tubelet
    side = math.isqrt(n_tokens // steps) if steps and n_tokens % steps == 0 else 0
    if side == 0 or steps * side * side != n_tokens:
        raise CheckpointError(
            f"{what}: {key} holds {n_tokens} tokens, which is not {steps} time steps (num_frames={frames} / "
            f"tubelet {tubelet}) x a square grid; pass num_frames= (the clip length the model was trained with)"
        )
    return (steps, side, side)


def infer_encoder_kwargs(
    state_dict: Mapping[str, torch.Tensor], *, release: str = "generic", what: str = "state dict", **overrides
) -> dict:
    """VisionTransformer kwargs from a (prefix-stripped) encoder state dict; `overrides` win and guide the grid.

    Width from `norm.weight`, depth from the block count, patch / tubelet / channels from `patch_embed.proj.weight`
    (4-D image, 5-D video), MLP ratio from `fc1`, RoPE iff there is no `pos_embed`, the grid from `pos_embed`'s N,
    heads from `default_num_heads`, the sin-cos layout from the release.
    """
    needed = ("patch_embed.proj.weight", "norm.weight", "blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight")
    _require(state_dict, needed, what, "a ViT encoder")
    if "blocks.0.mlp.fc3.weight" in state_dict:
        raise CheckpointError(f"{what}: SwiGLU MLPs (fc1/fc2/fc3, the releases' use_silu=True) are not supported")
    keys = set(state_dict)
    patch = state_dict["patch_embed.proj.weight"]
    if patch.ndim not in (4, 5) or patch.shape[-1] != patch.shape[-2]:
        raise CheckpointError(
            f"{what}: patch_embed.proj.weight has shape {tuple(patch.shape)}; expected square patches"
        )
    width = state_dict["norm.weight"].shape[0]
    video = patch.ndim == 5
    tubelet = int(patch.shape[2]) if video else 2
    patch_size = int(patch.shape[-1])
    kwargs: dict[str, Any] = dict(
        patch_size=patch_size,
        tubelet_size=tubelet,
        in_chans=int(patch.shape[1]),
        embed_dim=int(width),
        depth=_count_blocks(keys, "blocks."),
        mlp_ratio=_mlp_ratio(state_dict["blocks.0.mlp.fc1.weight"].shape[0], width),
        qkv_bias="blocks.0.attn.qkv.bias" in keys,
    )
    num_frames = overrides.get("num_frames")
    kwargs["num_frames"] = (num_frames or DEFAULT_NUM_FRAMES) if video else 1
    pos = state_dict.get("pos_embed")
    if pos is None:
        kwargs["pos_embed"] = "rope"
        kwargs["img_size"] = _ROPE_IMG_SIZE.get(release, 224) // patch_size * patch_size
        kwargs.update(_RELEASE_POS.get(release, {}))
    else:
        kwargs["pos_embed"] = "sincos"
        if "img_size" not in overrides:
            grid = _grid_from_table(
                pos.shape[1], video=video, tubelet=tubelet, num_frames=num_frames, what=what, key="pos_embed"
            )
            kwargs["img_size"] = grid[-1] * patch_size
        grid = (kwargs["num_frames"] // tubelet,) if video else ()
        img = overrides.get("img_size", kwargs.get("img_size"))
        h, w = (img, img) if isinstance(img, int) else img
        grid = (*grid, h // patch_size, w // patch_size)
        kwargs.update(_RELEASE_POS.get(release) or _sincos_settings(pos, grid, width))
    if "num_heads" not in overrides:
        kwargs["num_heads"] = default_num_heads(width, release)
    return {**kwargs, **overrides}


def infer_predictor_kwargs(
    state_dict: Mapping[str, torch.Tensor],
    *,
    release: str = "generic",
    encoder_state_dict: Mapping[str, torch.Tensor] | None = None,
    what: str = "state dict",
    **overrides,
) -> dict:
    """MaskPredictor kwargs from a (prefix-stripped, `mask_token` renamed) predictor state dict.

    Widths from `predictor_embed.weight [P, D]`, depth from the block count, mask tokens from `mask_tokens.{i}`, the
    grid from `predictor_pos_embed` (video or image, patch and tubelet from the encoder of the same checkpoint when
    given, else from the release). `num_frames=` (clip length) guides the video grid; other overrides are
    MaskPredictor kwargs and win.
    """
    if is_ac_predictor(state_dict):
        raise CheckpointError(
            f"{what} is a V-JEPA 2-AC action-conditioned predictor, not a mask predictor; use "
            "infer_ac_predictor_kwargs (load_predictor / load_ac_predictor do)"
        )
    needed = (
        "predictor_embed.weight",
        "predictor_proj.weight",
        "predictor_norm.weight",
        "predictor_blocks.0.attn.qkv.weight",
        "predictor_blocks.0.mlp.fc1.weight",
    )
    _require(state_dict, needed, what, "a mask predictor")
    overrides = dict(overrides)
    num_frames = overrides.pop("num_frames", None)
    keys = set(state_dict)
    width, enc_width = (int(n) for n in state_dict["predictor_embed.weight"].shape)
    num_tokens = _count_blocks(keys, "mask_tokens.")
    if num_tokens == 0:
        raise CheckpointError(f"{what}: no mask_tokens.{{i}} (or I-JEPA mask_token); first keys {_abbrev(list(keys))}")
    kwargs: dict[str, Any] = dict(
        embed_dim=enc_width,
        predictor_embed_dim=width,
        depth=_count_blocks(keys, "predictor_blocks."),
        mlp_ratio=_mlp_ratio(state_dict["predictor_blocks.0.mlp.fc1.weight"].shape[0], width),
        qkv_bias="predictor_blocks.0.attn.qkv.bias" in keys,
        num_mask_tokens=num_tokens,
    )
    patch = (encoder_state_dict or {}).get("patch_embed.proj.weight")
    # Without an encoder alongside: the V-JEPA family is video, I-JEPA images.
    video = patch.ndim == 5 if patch is not None else (release in ("vjepa", "vjepa2") or (num_frames or 1) > 1)
    tubelet = int(patch.shape[2]) if patch is not None and video else 2
    patch_size = int(patch.shape[-1]) if patch is not None else 16
    pos = state_dict.get("predictor_pos_embed")
    if pos is None:
        kwargs["pos_embed"] = "rope"
        side = _ROPE_IMG_SIZE.get(release, 224) // patch_size
        kwargs["grid_size"] = ((num_frames or DEFAULT_NUM_FRAMES) // tubelet, side, side) if video else (side, side)
        kwargs.update(_RELEASE_POS.get(release, {}))
    else:
        kwargs["pos_embed"] = "sincos"
        grid = overrides.get("grid_size") or _grid_from_table(
            pos.shape[1], video=video, tubelet=tubelet, num_frames=num_frames, what=what, key="predictor_pos_embed"
        )
        kwargs["grid_size"] = tuple(grid)
        kwargs.update(_RELEASE_POS.get(release) or _sincos_settings(pos, tuple(grid), width))
    if "num_heads" not in overrides:
        kwargs["num_heads"] = default_num_heads(enc_width, release, predictor=True)
    return {**kwargs, **overrides}


def is_ac_predictor(state_dict: Mapping[str, Any]) -> bool:
    """Whether a predictor state dict (prefixes allowed) is a V-JEPA 2-AC action-conditioned predictor."""
    return any(_strip_key(k, PREFIXES).startswith(_AC_PREFIXES) for k in state_dict)


def infer_ac_predictor_kwargs(state_dict: Mapping[str, torch.Tensor], *, what: str = "state dict", **overrides) -> dict:
    """ActionConditionedPredictor kwargs from a (prefix-stripped) V-JEPA 2-AC predictor state dict.

    From the shapes: `predictor_embed.weight [P, D]` gives the widths, `action_encoder.weight [P, A]`,
    `state_encoder.weight [P, S]` and `extrinsics_encoder.weight [P, E]` the input dims (an absent encoder gives 0:
    our world models may have no state token; the release always stores all three), the block count the depth,
    `fc1` the MLP ratio, `attn.qkv.bias` the qkv bias. Not in the weights: heads (16, the release's; a width that
    16 does not divide needs `num_heads=`) and the frame grid (16 x 16: 256 px / patch 16; `grid_size=`). Overrides
    are ActionConditionedPredictor kwargs and win.
    """
    needed = (
        "predictor_embed.weight",
        "action_encoder.weight",
        "predictor_proj.weight",
        "predictor_norm.weight",
        "predictor_blocks.0.attn.qkv.weight",
        "predictor_blocks.0.mlp.fc1.weight",
    )
    _require(state_dict, needed, what, "a V-JEPA 2-AC predictor")
    if "predictor_blocks.0.mlp.fc3.weight" in state_dict:
        raise CheckpointError(f"{what}: SwiGLU MLPs (fc1/fc2/fc3, the release's use_pred_silu=True) are not supported")
    keys = set(state_dict)
    width, enc_width = (int(n) for n in state_dict["predictor_embed.weight"].shape)

    def in_dim(name: str) -> int:
        weight = state_dict.get(f"{name}.weight")
        return 0 if weight is None else int(weight.shape[1])

    kwargs: dict[str, Any] = dict(
        embed_dim=enc_width,
        action_dim=in_dim("action_encoder"),
        state_dim=in_dim("state_encoder"),
        extrinsics_dim=in_dim("extrinsics_encoder"),
        grid_size=AC_PREDICTOR_GRID,
        predictor_embed_dim=width,
        depth=_count_blocks(keys, "predictor_blocks."),
        mlp_ratio=_mlp_ratio(state_dict["predictor_blocks.0.mlp.fc1.weight"].shape[0], width),
        qkv_bias="predictor_blocks.0.attn.qkv.bias" in keys,
    )
    if "num_heads" not in overrides:
        if width % AC_PREDICTOR_HEADS:
            raise CheckpointError(
                f"{what}: cannot infer num_heads for a V-JEPA 2-AC predictor of width {width} (heads are not stored "
                f"in the weights; the release uses {AC_PREDICTOR_HEADS}, which does not divide {width}); "
                "pass num_heads=..."
            )
        kwargs["num_heads"] = AC_PREDICTOR_HEADS
    if "grid_size" in overrides:
        overrides = {**overrides, "grid_size": tuple(overrides["grid_size"])}
    return {**kwargs, **overrides}


def _official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes and rename I-JEPA's single `mask_token` to our `mask_tokens.0`."""
    out = strip_prefixes(state_dict)
    if "mask_token" in out:
        out["mask_tokens.0"] = out.pop("mask_token")
    return out


# --------------------------------------------------------------------------------------------------------------------
# Resolving what a path holds and loading one component
# --------------------------------------------------------------------------------------------------------------------
def resolve_checkpoint(path: str | Path) -> Path:
    """The file or pretrained folder a path stands for.

    A pretrained folder (config.json) is returned as is; a run folder gives its newest `checkpoints/step_*.pt`, a
    checkpoints folder its newest `step_*.pt`; `config.json` / `model.safetensors` give their folder; other files are
    returned as they are.

    Raises:
        CheckpointError: the path does not exist, or is a folder with nothing loadable in it.
    """
    path = Path(path)
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            return path
        found = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
        if found:
            return found[-1]
        listing = sorted(p.name for p in path.iterdir())
        raise CheckpointError(
            f"{path} is neither a pretrained folder ({CONFIG_NAME} + {WEIGHTS_NAME}) nor a run folder "
            f"(checkpoints/step_*.pt); it holds {_abbrev(listing)}"
        )
    if path.is_file():
        return path.parent if path.name == CONFIG_NAME or path.suffix == ".safetensors" else path
    raise CheckpointError(f"checkpoint not found: {path}")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _first_param_keys(state: Mapping) -> str:
    parts = []
    for key, value in state.items():
        if isinstance(value, Mapping) and value:
            parts.append(f"{key!r}: {_abbrev([str(k) for k in value], 3)}")
    return "; first keys of its dicts: " + "; ".join(parts) if parts else ""


def _ours_kwargs(state: Mapping, component: str, path: Path) -> tuple[type[nn.Module], dict]:
    """Constructor kwargs of a component of one of our training checkpoints, rebuilt from its saved config."""
    from omegaconf import OmegaConf

    from jepa_world.train import build_jepa

    try:
        with torch.device("meta"):
            jepa = build_jepa(OmegaConf.create(state["config"]))
    except Exception as err:  # a config from another version or task: say so rather than guess
        raise CheckpointError(
            f"{path}: cannot rebuild the model from the config saved in the checkpoint ({type(err).__name__}: {err})"
        ) from None
    module = {"encoder": jepa.encoder, "target_encoder": jepa.target_encoder, "predictor": jepa.predictor}[component]
    config = module_config(module)
    return _MODEL_CLASSES[config["class"]], config["kwargs"]


def _load_component(path: str | Path, *, component: str, strict: bool, overrides: dict) -> nn.Module:
    source = resolve_checkpoint(path)
    if source.is_dir():
        return from_pretrained(source, strict=strict, **overrides)
    state = load_checkpoint(source)
    what = f"{source} [{component}]"
    if str(state.get("format", "")).startswith("jepa_world/train/") and "config" in state:
        if component not in state:
            raise CheckpointError(f"{source} has no {component!r}; it holds {_abbrev(sorted(map(str, state)))}")
        if state.get("task", "pretrain") == "pretrain":
            cls, kwargs = _ours_kwargs(state, component, source)
            return _instantiate(cls, {**kwargs, **overrides}, state[component], strict=strict, what=what)
        if component == "predictor" and state.get("task") == "world_model":
            if overrides:
                raise CheckpointError(
                    f"{source}: a world model's predictor is rebuilt from the config saved with it; overrides "
                    f"{sorted(overrides)} are not supported"
                )
            return _world_model_from_state(state, source).predictor
        # Other tasks (world models) keep a pretrained encoder: infer it like any state dict below.
    if _is_state_dict(state):
        raw, encoder_raw, what = state, None, str(source)
    elif isinstance(state.get(component), Mapping):
        raw = state[component]
        encoder_raw = next((state[k] for k in ENCODER_COMPONENTS if isinstance(state.get(k), Mapping)), None)
    else:
        present = [k for k in COMPONENTS if k in state]
        hint = f"; it holds {present}" if present else ""
        raise CheckpointError(
            f"{source} matches no known checkpoint format: no {component!r} entry and not a state dict{hint}; "
            f"top-level keys {_abbrev(sorted(map(str, state)), 10)}{_first_param_keys(state)}"
        )
    if not _is_state_dict(raw):
        raise CheckpointError(f"{what} is not a dict of tensors (found {type(raw).__name__})")
    release = detect_release(raw)
    if release == "generic" and encoder_raw is not None:
        release = detect_release(encoder_raw)
    official = not str(state.get("format", "")).startswith("jepa_world/")
    if release == "generic" and official and isinstance(state.get("predictor"), Mapping):
        # Only V-JEPA 2-AC has this predictor; its encoder keys carry `module.` alone (no `backbone.` to tell).
        release = "vjepa2" if is_ac_predictor(state["predictor"]) else release
    state_dict = _official_state_dict(raw)
    if component == "predictor" and is_ac_predictor(state_dict):
        kwargs = infer_ac_predictor_kwargs(state_dict, what=what, **overrides)
        return _instantiate(ActionConditionedPredictor, kwargs, state_dict, strict=strict, what=what)
    if component == "predictor":
        enc = _official_state_dict(encoder_raw) if encoder_raw is not None else None
        kwargs = infer_predictor_kwargs(state_dict, release=release, encoder_state_dict=enc, what=what, **overrides)
        return _instantiate(MaskPredictor, kwargs, state_dict, strict=strict, what=what)
    kwargs = infer_encoder_kwargs(state_dict, release=release, what=what, **overrides)
    return _instantiate(VisionTransformer, kwargs, state_dict, strict=strict, what=what)


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


def load_world_model(path_or_run: str | Path, *, device: str | torch.device = "cpu"):
    """Load a world model (encoder + action-conditioned predictor) written by `jepa-world train-wm`.

    The model is rebuilt from the config and data dims saved in the checkpoint (`config`, `meta`): a ViT encoder from
    `meta["encoder_config"]`, a registered encoder (e.g. the pooled one) from `wm.encoder`; then every component
    (`encoder`, `predictor`, `inverse_dynamics` when trained) is loaded strictly.

    Args:
        path_or_run: run folder (its newest `checkpoints/step_*.pt`) or a checkpoint file.
        device: where to put the model.

    Returns:
        The `WorldModel` in eval mode.

    Raises:
        CheckpointError: unreadable file, a pretraining checkpoint or export folder instead of a world model, or
            weights that do not fit (keys and shapes named).
    """
    source = resolve_checkpoint(path_or_run)
    if source.is_dir():
        raise CheckpointError(
            f"{source} is an exported single-module folder, not a world model; pass the train-wm run folder or "
            "its checkpoints/step_*.pt"
        )
    return _world_model_from_state(load_checkpoint(source), source).to(device).eval()


def _world_model_from_state(state: Mapping, source: Path):
    """Rebuild a `WorldModel` from a train-wm checkpoint's config and meta, then load every component strictly."""
    from omegaconf import OmegaConf

    from jepa_world.tasks import build_world_model

    task = state.get("task", "pretrain" if "target_encoder" in state else None)
    if task != "world_model" or "config" not in state or "meta" not in state:
        hint = " (a pretraining checkpoint: use load_encoder, or wm.encoder_checkpoint=... in train-wm)"
        raise CheckpointError(
            f"{source} is not a world-model checkpoint (task={task!r}){hint if task == 'pretrain' else ''}; "
            f"it holds {_abbrev(sorted(map(str, state)))}"
        )
    meta = state["meta"]
    cfg = OmegaConf.create(state["config"])
    encoder = None
    enc_cfg = meta.get("encoder_config") or {}
    with torch.random.fork_rng(devices=[]):  # random init that the loaded weights replace: keep the caller's RNG
        if enc_cfg:
            if enc_cfg.get("class") not in _MODEL_CLASSES:
                raise CheckpointError(f"{source}: unknown encoder class {enc_cfg.get('class')!r} in meta")
            cls = _MODEL_CLASSES[enc_cfg["class"]]
            encoder = _instantiate(cls, _decode_kwargs(enc_cfg["kwargs"]), state["encoder"], strict=True,
                                   what=f"{source} [encoder]")  # fmt: skip
        else:
            cfg.wm.encoder_checkpoint = None  # the registered encoder trained jointly; its weights are below
        try:
            model = build_world_model(
                cfg, action_dim=int(meta["action_dim"]), state_dim=int(meta["state_dim"]), encoder=encoder
            )
        except Exception as err:
            raise CheckpointError(
                f"{source}: cannot rebuild the world model from its saved config ({type(err).__name__}: {err})"
            ) from None
    parts = {"encoder": model.encoder, "predictor": model.predictor}
    if model.inverse_dynamics is not None:
        parts["inverse_dynamics"] = model.inverse_dynamics
    for name in ("encoder", "predictor", "inverse_dynamics"):
        if name in parts and name not in state:
            raise CheckpointError(f"{source} has no {name!r}; it holds {_abbrev(sorted(map(str, state)))}")
        if name in state and name not in parts:
            raise CheckpointError(f"{source} holds {name!r}, which the model rebuilt from its config does not have")
    for name, module in parts.items():
        load_state_dict_strict(module, state[name], what=f"{source} [{name}]")
    return model.eval()


# --------------------------------------------------------------------------------------------------------------------
# timm interop
# --------------------------------------------------------------------------------------------------------------------
# Every encoder key has the same name in timm's VisionTransformer (no CLS token, no registers, fused qkv).
_TIMM_KEY = re.compile(
    r"^(pos_embed|patch_embed\.proj\.(weight|bias)|norm\.(weight|bias)"
    r"|blocks\.\d+\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias))$"
)
_TIMM_ARCH = {
    192: "vit_tiny_patch16_224",
    384: "vit_small_patch16_224",
    768: "vit_base_patch16_224",
    1024: "vit_large_patch16_224",
    1280: "vit_huge_patch14_224",
    1408: "vit_giant_patch14_224",
}


def _check_timm_exportable(encoder: nn.Module) -> None:
    if not isinstance(encoder, VisionTransformer):
        raise TypeError(f"encoder is a {type(encoder).__name__}; only a VisionTransformer can be exported to timm")
    if encoder.is_video:
        raise ValueError(
            "this is a video encoder (3-D tubelet patch embedding): timm's VisionTransformer has no tubelet "
            "embedding, so it cannot be exported to timm; use format='jepa_world'"
        )
    if encoder.pos_embed is None:
        raise ValueError(
            "this encoder uses 3-D RoPE (pos_embed='rope'), which timm's VisionTransformer does not implement; "
            "use format='jepa_world'"
        )


def timm_model_kwargs(encoder: VisionTransformer) -> dict:
    """Kwargs for `timm.create_model("vit_*", pretrained=False, **kwargs)` that rebuild this image encoder."""
    _check_timm_exportable(encoder)
    kwargs = module_config(encoder)["kwargs"]
    h, w = encoder.grid_size[0] * encoder.patch_size, encoder.grid_size[1] * encoder.patch_size
    return dict(
        img_size=h if h == w else (h, w),
        patch_size=encoder.patch_size,
        in_chans=kwargs["in_chans"],
        embed_dim=encoder.embed_dim,
        depth=kwargs["depth"],
        num_heads=encoder.num_heads,
        mlp_ratio=kwargs["mlp_ratio"],
        qkv_bias=kwargs["qkv_bias"],
        num_classes=0,
        global_pool="avg",
        class_token=False,
        no_embed_class=True,
        reg_tokens=0,
        fc_norm=False,  # keep the final LayerNorm in forward_features (timm moves it after pooling by default)
        pos_embed="learn",
        dynamic_img_size=False,
    )


def export_timm_state_dict(encoder: VisionTransformer) -> dict[str, torch.Tensor]:
    """State dict that timm's VisionTransformer built with `timm_model_kwargs(encoder)` loads strictly.

    Raises:
        ValueError: video or RoPE encoders (timm has no tubelet embedding and no V-JEPA 2 RoPE).
    """
    _check_timm_exportable(encoder)
    out = {}
    for key, value in encoder.state_dict().items():
        if not _TIMM_KEY.match(key):
            raise ValueError(f"encoder parameter {key!r} has no timm counterpart")
        out[key] = value.detach().clone()
    return out


def save_timm(encoder: VisionTransformer, directory: str | Path) -> Path:
    """Write a folder timm loads with `timm.create_model("local-dir:DIR", pretrained=True)`."""
    from safetensors.torch import save

    from jepa_world.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    tensors = {k: v.contiguous() for k, v in export_timm_state_dict(encoder).items()}
    model_args = timm_model_kwargs(encoder)
    arch = _TIMM_ARCH.get(encoder.embed_dim, "vit_base_patch16_224")  # every architecture kwarg is overridden
    h, w = encoder.grid_size[0] * encoder.patch_size, encoder.grid_size[1] * encoder.patch_size
    config = {
        "architecture": arch,
        "num_classes": 0,
        "num_features": encoder.embed_dim,
        "global_pool": "avg",
        "model_args": model_args,
        "pretrained_cfg": {
            "tag": "jepa_world",
            "input_size": [model_args["in_chans"], h, w],
            "fixed_input_size": True,
            "interpolation": "bicubic",
            "crop_pct": 1.0,
            "crop_mode": "center",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "first_conv": "patch_embed.proj",
            "classifier": "head",
        },
    }
    directory = Path(directory)
    blob = save(tensors, metadata={"format": "pt"})
    _atomic_write(directory / WEIGHTS_NAME, lambda f: f.write(blob))
    text = json.dumps(config, indent=2) + "\n"
    _atomic_write(directory / CONFIG_NAME, lambda f: f.write(text.encode()))
    return directory


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
        format: "jepa_world" (`from_pretrained` / `load_encoder` read it) or "timm" (image encoders only).
        **overrides: passed to the loader (e.g. `num_heads=`, `num_frames=` for official checkpoints).

    Returns:
        The output folder.
    """
    if component not in COMPONENTS:
        raise ValueError(f"component={component!r}; expected one of {COMPONENTS}")
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format={format!r}; expected one of {EXPORT_FORMATS}")
    if format == "timm" and component == "predictor":
        raise ValueError("format='timm' exports encoders only; use component='target_encoder' or 'encoder'")
    if component == "predictor":
        module: nn.Module = load_predictor(run_or_ckpt, **overrides)
    else:
        module = load_encoder(run_or_ckpt, component=component, **overrides)
    if format == "timm":
        return save_timm(module, output_dir)
    source = resolve_checkpoint(run_or_ckpt)
    return save_pretrained(module, output_dir, source=f"{source.name} [{component}]")
