"""Hugging Face transformers interop: read `IJepaModel` / `VJEPA2Model` folders, write folders that they load.

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
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from jepa_world.atomic import atomic_write
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
_PLAIN = {
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
    config = json.loads(path.read_text())
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
        if key in _PLAIN:
            out[_PLAIN[key]] = value
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
    return int(value)


def _encoder_kwargs(config: Mapping, path: Path) -> dict:
    width = int(config["hidden_size"])
    common = dict(
        patch_size=_side(config.get("patch_size", 16), "patch_size", path),
        embed_dim=width,
        depth=int(config["num_hidden_layers"]),
        num_heads=int(config["num_attention_heads"]),
        qkv_bias=bool(config.get("qkv_bias", True)),
        norm_eps=float(config.get("layer_norm_eps", 1e-12 if config["model_type"] == "ijepa" else 1e-6)),
    )
    if config["model_type"] == "ijepa":
        return dict(
            common,
            img_size=_side(config.get("image_size", 224), "image_size", path),
            in_chans=int(config.get("num_channels", 3)),
            mlp_ratio=mlp_ratio_for(int(config["intermediate_size"]), width),
            pos_embed="sincos",
            sincos_layout="ijepa",
        )
    tubelet, frames = int(config.get("tubelet_size", 2)), int(config.get("frames_per_clip", 64))
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
        predictor_embed_dim=int(config.get("pred_hidden_size", 384)),
        depth=int(config.get("pred_num_hidden_layers", 12)),
        num_heads=int(config.get("pred_num_attention_heads", 12)),
        mlp_ratio=float(config.get("pred_mlp_ratio", 4.0)),
        qkv_bias=enc["qkv_bias"],
        num_mask_tokens=int(config.get("pred_num_mask_tokens", 10)),
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
        kwargs = {**_predictor_kwargs(config, directory), **overrides}
        part = {k: v for k, v in state.items() if k.startswith(("predictor_", "mask_tokens."))}
        return instantiate(MaskPredictor, kwargs, part, strict=strict, what=what)
    kwargs = {**_encoder_kwargs(config, directory), **overrides}
    part = {k: v for k, v in state.items() if not k.startswith(("predictor_", "mask_tokens."))}
    return instantiate(VisionTransformer, kwargs, part, strict=strict, what=what)


# --------------------------------------------------------------------------------------------------------------------
# Writing a folder
# --------------------------------------------------------------------------------------------------------------------
def hf_export_type(encoder: nn.Module) -> str:
    """The transformers model_type an encoder exports to ("ijepa" or "vjepa2"); refuse what it cannot represent."""
    if not isinstance(encoder, VisionTransformer):
        raise TypeError(f"encoder is a {type(encoder).__name__}; only a VisionTransformer exports to transformers")
    h, w = encoder.grid_size[-2:]
    if h != w:
        raise ValueError(f"the encoder's token grid is {h}x{w}: transformers' I-JEPA / V-JEPA 2 take square crops only")
    if encoder.is_video and encoder.pos_embed is not None:
        raise ValueError(
            "a video encoder with a sin-cos position table (V-JEPA 1 style) has no transformers counterpart: "
            "VJEPA2Model uses 3-D RoPE only; use format='jepa_world'"
        )
    if not encoder.is_video and encoder.pos_embed is None:
        raise ValueError(
            "an image encoder with RoPE has no transformers counterpart (IJepaModel adds a position table); use "
            "format='jepa_world'"
        )
    return "vjepa2" if encoder.is_video else "ijepa"


def _check_exportable(encoder: nn.Module, predictor: nn.Module | None) -> str:
    """`hf_export_type`, plus the predictor VJEPA2Model needs (and IJepaModel cannot hold)."""
    model_type = hf_export_type(encoder)
    h, w = encoder.grid_size[-2:]
    if model_type == "ijepa":
        if predictor is not None:
            raise ValueError("transformers' IJepaModel holds no predictor: export the encoder alone")
        return "ijepa"
    if not isinstance(predictor, MaskPredictor):
        raise ValueError(
            "transformers' VJEPA2Model is the encoder and its mask predictor in one model: export from a run or "
            "checkpoint that holds both (a video encoder alone would load with the predictor missing)"
        )
    pc = predictor.config
    grid = (encoder.config["num_frames"] // encoder.tubelet_size, h, w)
    if pc["pos_embed"] != "rope" or tuple(pc["grid_size"]) != grid or pc["embed_dim"] != encoder.embed_dim:
        raise ValueError(
            f"the predictor (pos_embed={pc['pos_embed']!r}, grid {tuple(pc['grid_size'])}, width {pc['embed_dim']}) "
            f"does not match the encoder (RoPE, grid {grid}, width {encoder.embed_dim}) as VJEPA2Model requires"
        )
    if pc["qkv_bias"] != encoder.config["qkv_bias"] or pc["norm_eps"] != encoder.config["norm_eps"]:
        raise ValueError("VJEPA2Model shares qkv_bias and layer_norm_eps between encoder and predictor; these differ")
    return "vjepa2"


def hf_config(encoder: VisionTransformer, predictor: MaskPredictor | None = None) -> dict:
    """The transformers `config.json` of an exportable encoder (and, for V-JEPA 2, its predictor)."""
    model_type = _check_exportable(encoder, predictor)
    c = encoder.config
    common = dict(
        hidden_size=encoder.embed_dim,
        num_hidden_layers=c["depth"],
        num_attention_heads=c["num_heads"],
        qkv_bias=c["qkv_bias"],
        layer_norm_eps=c["norm_eps"],
        hidden_act="gelu",
        patch_size=encoder.patch_size,
        initializer_range=c["init_std"],
        attention_probs_dropout_prob=0.0,
        hidden_dropout_prob=0.0,
    )
    if model_type == "ijepa":
        return dict(
            model_type="ijepa",
            architectures=["IJepaModel"],
            **common,
            intermediate_size=int(encoder.embed_dim * c["mlp_ratio"]),
            image_size=encoder.grid_size[0] * encoder.patch_size,
            num_channels=c["in_chans"],
            pooler_output_size=encoder.embed_dim,
            pooler_act="tanh",
        )
    pc = predictor.config
    if pc.get("single_pass"):
        warnings.warn(
            "the predictor was trained with single_pass=True; transformers' VJEPA2Predictor runs the releases' "
            "per-block attention, so its predictions differ from ours (the weights are exported as they are)",
            stacklevel=3,
        )
    return dict(
        model_type="vjepa2",
        architectures=["VJEPA2Model"],
        **common,
        mlp_ratio=c["mlp_ratio"],
        crop_size=encoder.grid_size[-1] * encoder.patch_size,
        frames_per_clip=c["num_frames"],
        tubelet_size=encoder.tubelet_size,
        in_chans=c["in_chans"],
        drop_path_rate=0.0,
        attention_dropout=0.0,
        pred_hidden_size=pc["predictor_embed_dim"],
        pred_num_hidden_layers=pc["depth"],
        pred_num_attention_heads=pc["num_heads"],
        pred_mlp_ratio=pc["mlp_ratio"],
        pred_num_mask_tokens=pc["num_mask_tokens"],
        pred_zero_init_mask_tokens=True,
        num_pooler_layers=3,
    )


# ours -> transformers, per block. I-JEPA: the names transformers writes to disk (4.x names; transformers 5 renames
# them to q_proj / o_proj / mlp.* when it loads and back when it saves), so 4.x and 5.x both read the export.
_HF_BLOCK = {
    "ijepa": {"attn.proj": "attention.output.dense", "norm1": "layernorm_before", "norm2": "layernorm_after"}
    | {"mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"},
    "vjepa2": {"attn.proj": "attention.proj", "norm1": "norm1", "norm2": "norm2"},
}
_HF_QKV = {
    "ijepa": ("attention.attention.query", "attention.attention.key", "attention.attention.value"),
    "vjepa2": ("attention.query", "attention.key", "attention.value"),
}


def _block_to_hf(prefix: str, key: str, value: torch.Tensor, model_type: str) -> dict[str, torch.Tensor]:
    name, suffix = key.rsplit(".", 1)
    if name == "attn.qkv":
        parts = value.chunk(3, dim=0)
        return {f"{prefix}{theirs}.{suffix}": p for theirs, p in zip(_HF_QKV[model_type], parts, strict=True)}
    return {f"{prefix}{_HF_BLOCK[model_type].get(name, name)}.{suffix}": value}


def ours_to_hf(
    encoder: VisionTransformer, predictor: MaskPredictor | None = None, *, model_type: str
) -> dict[str, torch.Tensor]:
    """Our weights under the names transformers writes (qkv split; I-JEPA under its 4.x names, which 5.x reads)."""
    vjepa2 = model_type == "vjepa2"
    plain = {v: k for k, v in _PLAIN.items() if k.startswith(("encoder.", "predictor.")) == vjepa2}
    layer = "encoder.layer.{}."
    items = list(encoder.state_dict().items()) + list(predictor.state_dict().items() if predictor else [])
    out: dict[str, torch.Tensor] = {}
    tokens = []
    for key, value in items:
        if m := re.match(r"^(predictor_blocks|blocks)\.(\d+)\.(.*)$", key):
            fmt = "predictor.layer.{}." if m.group(1) == "predictor_blocks" else layer
            out.update(_block_to_hf(fmt.format(m.group(2)), m.group(3), value, model_type))
        elif m := re.match(r"^mask_tokens\.(\d+)$", key):
            tokens.append((int(m.group(1)), value))
        elif key in plain:
            out[plain[key]] = value
        else:
            raise ValueError(f"{key!r} has no transformers counterpart")
    if tokens:
        out["predictor.embeddings.mask_tokens"] = torch.stack([t.reshape(1, 1, -1) for _, t in sorted(tokens)])
    return {k: v.detach().contiguous().cpu() for k, v in out.items()}


def save_hf(
    encoder: VisionTransformer, directory: str | Path, *, predictor: MaskPredictor | None = None, source: str = ""
) -> Path:
    """Write a folder `transformers.AutoModel.from_pretrained` loads (IJepaModel, or VJEPA2Model with predictor).

    Raises:
        ValueError: what transformers cannot represent (sin-cos video, RoPE image, non-square, V-JEPA 2 without its
            predictor, I-JEPA with one).
    """
    config = hf_config(encoder, predictor)
    tensors = ours_to_hf(encoder, predictor, model_type=config["model_type"])
    directory = Path(directory)
    blob = save(tensors, metadata={"format": "pt"})
    atomic_write(directory / WEIGHTS_NAME, lambda f: f.write(blob))
    text = json.dumps({**config, "jepa_world_source": source}, indent=2) + "\n"
    atomic_write(directory / CONFIG_NAME, lambda f: f.write(text.encode()))
    return directory
