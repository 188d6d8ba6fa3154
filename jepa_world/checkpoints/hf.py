"""Hugging Face transformers interop, reading: `IJepaModel` / `VJEPA2Model` folders in (`hf_export.py` writes them).

A transformers folder is `config.json` (with `model_type`) plus `model.safetensors` (or shards with
`model.safetensors.index.json`, or `pytorch_model.bin`, read with `weights_only=True`). Only `model_type` "ijepa"
(an image encoder with a stored position table) and "vjepa2" (a video encoder with 3-D RoPE, and its mask predictor)
are read; the classification models' `ijepa.` / `vjepa2.` prefixes are stripped and their heads (`classifier.*`,
`pooler.*`) and I-JEPA's masked-image-modelling `embeddings.mask_token` are set aside. The mapping, and the
conventions in which transformers differs from the releases (layer-norm eps, the RoPE grid, input layout), are in
docs/hub.md. transformers itself is not needed: this module reads and writes the format.

Key names (ours <- transformers; `L` is `layers.{i}.` / `encoder.layer.{i}.` for I-JEPA, `encoder.layer.{i}.` /
`predictor.layer.{i}.` for V-JEPA 2):
    patch_embed.proj        <- embeddings.patch_embeddings.projection (I-JEPA) / encoder.embeddings.patch_embeddings.
                               proj (V-JEPA 2)
    pos_embed               <- embeddings.position_embeddings (I-JEPA; V-JEPA 2 has none)
    blocks.{i}.attn.qkv     <- concat of L attention.{q,k,v}_proj (transformers 5) / attention.attention.{query,key,
                               value} (4.x) / attention.{query,key,value} (V-JEPA 2), along the output axis
    blocks.{i}.attn.proj    <- L attention.o_proj / attention.output.dense / attention.proj
    blocks.{i}.norm1, norm2 <- L layernorm_before, layernorm_after / norm1, norm2
    blocks.{i}.mlp.fc1, fc2 <- L mlp.fc1, mlp.fc2 / intermediate.dense, output.dense
    norm                    <- layernorm / encoder.layernorm
    predictor_embed, predictor_norm, predictor_proj, predictor_blocks.{i}
                            <- predictor.embeddings.predictor_embeddings, predictor.layernorm, predictor.proj, L
    mask_tokens.{k} [1,1,P] <- predictor.embeddings.mask_tokens [K, 1, 1, P]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jepa_world.checkpoints.io import CheckpointError
from jepa_world.checkpoints.official import mlp_ratio_for
from jepa_world.checkpoints.pretrained import CONFIG_NAME, WEIGHTS_NAME, read_safetensors
from jepa_world.checkpoints.state_dict import abbrev, instantiate
from jepa_world.models.predictor import MaskPredictor
from jepa_world.models.vit import VisionTransformer

HF_MODEL_TYPES = ("ijepa", "vjepa2")
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_WEIGHTS = "pytorch_model.bin"
TORCH_INDEX = "pytorch_model.bin.index.json"
_SET_ASIDE = ("classifier.", "pooler.", "embeddings.mask_token")

# Per-block renames, old and new transformers names alike (applied to what follows the block prefix).
_BLOCK_RULES = [
    (r"attention\.(?:attention\.)?(?:query|q_proj)\.", "attn.q."),
    (r"attention\.(?:attention\.)?(?:key|k_proj)\.", "attn.k."),
    (r"attention\.(?:attention\.)?(?:value|v_proj)\.", "attn.v."),
    (r"attention\.(?:output\.dense|o_proj|proj)\.", "attn.proj."),
    (r"(?:layernorm_before|norm1)\.", "norm1."),
    (r"(?:layernorm_after|norm2)\.", "norm2."),
    (r"(?:intermediate\.dense|mlp\.fc1)\.", "mlp.fc1."),
    (r"(?:output\.dense|mlp\.fc2)\.", "mlp.fc2."),
]
_BLOCK_PREFIXES = [  # (transformers block prefix, ours)
    (r"^(?:encoder\.)?layers?\.(\d+)\.", "blocks.{}."),
    (r"^predictor\.layer\.(\d+)\.", "predictor_blocks.{}."),
]
PLAIN_KEYS = {
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "encoder.embeddings.patch_embeddings.proj.weight": "patch_embed.proj.weight",
    "encoder.embeddings.patch_embeddings.proj.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "encoder.layernorm.weight": "norm.weight",
    "encoder.layernorm.bias": "norm.bias",
    "predictor.embeddings.predictor_embeddings.weight": "predictor_embed.weight",
    "predictor.embeddings.predictor_embeddings.bias": "predictor_embed.bias",
    "predictor.layernorm.weight": "predictor_norm.weight",
    "predictor.layernorm.bias": "predictor_norm.bias",
    "predictor.proj.weight": "predictor_proj.weight",
    "predictor.proj.bias": "predictor_proj.bias",
}


# --------------------------------------------------------------------------------------------------------------------
# Reading a folder
# --------------------------------------------------------------------------------------------------------------------
def hf_model_type(directory: str | Path) -> str | None:
    """The `model_type` of a transformers folder (None if `config.json` is ours or has none)."""
    path = Path(directory) / CONFIG_NAME
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(config, dict) or "format" in config or "model_type" not in config:
        return None
    return str(config["model_type"])


def read_hf_config(directory: str | Path) -> dict:
    """`config.json` of a transformers folder; a `model_type` other than ijepa / vjepa2 is refused by name."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a transformers folder needs its config.json (model_type, sizes)")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds a JSON {type(config).__name__}; expected an object of settings")
    model_type = config.get("model_type")
    if model_type not in HF_MODEL_TYPES:
        raise CheckpointError(
            f"{path} is a transformers folder of model_type {model_type!r}; jepa_world reads transformers' "
            f"{list(HF_MODEL_TYPES)} folders (IJepaModel, VJEPA2Model and their classification models)"
        )
    if config.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{path}: hidden_act={config['hidden_act']!r}; jepa_world's blocks use exact GELU")
    return config


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a pickle with code in it, or a broken file: never fall back to weights_only=False
        raise CheckpointError(f"{path} cannot be read with weights_only=True ({type(err).__name__}: {err})") from None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def _read_sharded(directory: Path, index_name: str, read) -> dict[str, torch.Tensor]:
    index_path = directory / index_name
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{index_path} is not a shard index with a 'weight_map' ({err})") from None
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        if not (directory / shard).is_file():
            keys = sorted(k for k, v in weight_map.items() if v == shard)
            raise CheckpointError(f"{index_path} names shard {shard!r} (for {abbrev(keys, 3)}), which is missing")
        state.update(read(directory / shard))
    absent = sorted(set(weight_map) - set(state))
    if absent:
        raise CheckpointError(f"{index_path}: keys {abbrev(absent)} are not in the shards it names")
    return state


def read_hf_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """Weights of a transformers folder: safetensors (single or sharded), else `pytorch_model.bin` (weights_only)."""
    directory = Path(directory)
    if (directory / WEIGHTS_NAME).is_file():
        return read_safetensors(directory / WEIGHTS_NAME)
    if (directory / SAFETENSORS_INDEX).is_file():
        return _read_sharded(directory, SAFETENSORS_INDEX, read_safetensors)
    if (directory / TORCH_WEIGHTS).is_file():
        return _read_torch(directory / TORCH_WEIGHTS)
    if (directory / TORCH_INDEX).is_file():
        return _read_sharded(directory, TORCH_INDEX, _read_torch)
    raise CheckpointError(
        f"{directory} has a transformers config.json but no weights: expected {WEIGHTS_NAME}, {SAFETENSORS_INDEX}, "
        f"{TORCH_WEIGHTS} or {TORCH_INDEX}; it holds {abbrev(sorted(p.name for p in directory.iterdir()))}"
    )


def hf_to_ours(state: Mapping[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """Rename a transformers state dict to ours (q / k / v fused; heads set aside); unknown keys keep their names."""
    prefix = f"{model_type}."
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key[len(prefix) :] if key.startswith(prefix) else key
        if key.startswith(_SET_ASIDE):
            continue
        if key in PLAIN_KEYS:
            out[PLAIN_KEYS[key]] = value
            continue
        if key == "predictor.embeddings.mask_tokens":
            out.update({f"mask_tokens.{k}": value[k].reshape(1, 1, -1) for k in range(value.shape[0])})
            continue
        for pattern, target in _BLOCK_PREFIXES:
            if m := re.match(pattern, key):
                rest = key[m.end() :]
                for rule, repl in _BLOCK_RULES:
                    if re.match(rule, rest):
                        rest = re.sub(rule, repl, rest, count=1)
                        break
                key = target.format(m.group(1)) + rest
                break
        out[key] = value
    for name in sorted({k.rsplit(".attn.q.", 1)[0] for k in out if ".attn.q." in k}):
        for suffix in ("weight", "bias"):
            parts = [out.pop(f"{name}.attn.{c}.{suffix}", None) for c in "qkv"]
            if all(p is not None for p in parts):
                out[f"{name}.attn.qkv.{suffix}"] = torch.cat(parts, dim=0)
            else:
                out.update({f"{name}.attn.{c}.{suffix}": p for c, p in zip("qkv", parts, strict=True) if p is not None})
    return out


def _side(value: Any, name: str, path: Path) -> int:
    if isinstance(value, list | tuple):
        if len(set(value)) != 1:
            raise CheckpointError(f"{path}: {name}={value} is not square; jepa_world reads square {name}s only")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{path}: {name}={value!r}; expected an integer >= 1")
    return value


def _blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".", 1)[0] for k in state if k.startswith(prefix)})


def _check_against_weights(config: Mapping, state: Mapping[str, torch.Tensor], path: Path, component: str) -> None:
    """config.json's sizes agree with the weights next to it; the first that does not is named with both values."""
    found: dict[str, tuple[int, str]] = {}  # config key -> (value in the weights, where it was read)
    if component == "predictor":
        if "predictor_embed.weight" in state:
            found["pred_hidden_size"] = (state["predictor_embed.weight"].shape[0], "the predictor embedding's rows")
        found["pred_num_hidden_layers"] = (_blocks(state, "predictor_blocks."), "predictor blocks in the weights")
        found["pred_num_mask_tokens"] = (_blocks(state, "mask_tokens."), "mask tokens in the weights")
    else:
        if "patch_embed.proj.weight" in state:
            weight = state["patch_embed.proj.weight"]
            found["hidden_size"] = (weight.shape[0], f"the patch embedding's width {list(weight.shape)}")
            found["patch_size"] = (weight.shape[-1], f"the patch embedding's kernel {list(weight.shape)}")
        found["num_hidden_layers"] = (_blocks(state, "blocks."), "blocks in the weights")
        if config["model_type"] == "ijepa" and "blocks.0.mlp.fc1.weight" in state:
            found["intermediate_size"] = (state["blocks.0.mlp.fc1.weight"].shape[0], "the MLP width of block 0")
    defaults = {"patch_size": 16, "pred_hidden_size": 384, "pred_num_hidden_layers": 12, "pred_num_mask_tokens": 10}
    for key, (value, where) in found.items():
        said = config.get(key, defaults.get(key))
        said = said[0] if isinstance(said, list | tuple) and said else said
        if value and said is not None and said != value:
            raise CheckpointError(
                f"{path / CONFIG_NAME}: {key}={said} disagrees with the weights ({where}: {value}); the config.json "
                "and the weights are from different models: use the config.json saved with these weights"
            )


def _size(config: Mapping, key: str, path: Path, default: int | None = None) -> int:
    """`config[key]` as an int >= 1 (or `default` when absent); a missing or bad value is named with its file."""
    if key not in config:
        if default is None:
            raise CheckpointError(
                f"{path}: {key!r} is missing (a transformers {config.get('model_type')} config needs it)"
            )
        return default
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"{path}: {key}={value!r}; expected an integer >= 1")
    return value


def _encoder_kwargs(config: Mapping, path: Path) -> dict:
    width = _size(config, "hidden_size", path)
    common = dict(
        patch_size=_side(config.get("patch_size", 16), "patch_size", path),
        embed_dim=width,
        depth=_size(config, "num_hidden_layers", path),
        num_heads=_size(config, "num_attention_heads", path),
        qkv_bias=bool(config.get("qkv_bias", True)),
        norm_eps=float(config.get("layer_norm_eps", 1e-12 if config["model_type"] == "ijepa" else 1e-6)),
    )
    if config["model_type"] == "ijepa":
        return dict(
            common,
            img_size=_side(config.get("image_size", 224), "image_size", path),
            in_chans=int(config.get("num_channels", 3)),
            mlp_ratio=mlp_ratio_for(_size(config, "intermediate_size", path), width),
            pos_embed="sincos",
            sincos_layout="ijepa",
        )
    tubelet, frames = _size(config, "tubelet_size", path, 2), _size(config, "frames_per_clip", path, 64)
    if frames < tubelet or frames % tubelet:
        raise CheckpointError(f"{path}: frames_per_clip={frames} is not a multiple of tubelet_size={tubelet}")
    return dict(
        common,
        img_size=_side(config.get("crop_size", 256), "crop_size", path),
        num_frames=frames,
        tubelet_size=tubelet,
        in_chans=int(config.get("in_chans", 3)),
        mlp_ratio=float(config.get("mlp_ratio", 4.0)),
        pos_embed="rope",
    )


def _predictor_kwargs(config: Mapping, path: Path) -> dict:
    if config["model_type"] != "vjepa2":
        raise CheckpointError(
            f"{path} is a transformers {config['model_type']!r} folder: IJepaModel holds no predictor (only V-JEPA 2's "
            "VJEPA2Model does); load_encoder reads its encoder"
        )
    enc = _encoder_kwargs(config, path)
    side = enc["img_size"] // enc["patch_size"]
    return dict(
        grid_size=(enc["num_frames"] // enc["tubelet_size"], side, side),
        embed_dim=enc["embed_dim"],
        predictor_embed_dim=_size(config, "pred_hidden_size", path, 384),
        depth=_size(config, "pred_num_hidden_layers", path, 12),
        num_heads=_size(config, "pred_num_attention_heads", path, 12),
        mlp_ratio=float(config.get("pred_mlp_ratio", 4.0)),
        qkv_bias=enc["qkv_bias"],
        num_mask_tokens=_size(config, "pred_num_mask_tokens", path, 10),
        pos_embed="rope",
        norm_eps=enc["norm_eps"],
    )


def load_hf_component(directory: str | Path, *, component: str, strict: bool = True, **overrides) -> nn.Module:
    """Build our encoder (component "target_encoder" / "encoder") or V-JEPA 2 predictor from a transformers folder.

    Raises:
        CheckpointError: another model_type, no weights, a missing shard, or weights that do not fit (keys named).
    """
    directory = Path(directory)
    config = read_hf_config(directory)
    state = hf_to_ours(read_hf_weights(directory), config["model_type"])
    what = f"{directory} [transformers {config['model_type']}, {component}]"
    if component == "predictor":
        kwargs = {**_predictor_kwargs(config, directory / CONFIG_NAME), **overrides}
        part = {k: v for k, v in state.items() if k.startswith(("predictor_", "mask_tokens."))}
        if strict:
            _check_against_weights(config, part, directory, component)
        return instantiate(MaskPredictor, kwargs, part, strict=strict, what=what)
    kwargs = {**_encoder_kwargs(config, directory / CONFIG_NAME), **overrides}
    part = {k: v for k, v in state.items() if not k.startswith(("predictor_", "mask_tokens."))}
    if strict:
        _check_against_weights(config, part, directory, component)
    return instantiate(VisionTransformer, kwargs, part, strict=strict, what=what)
