"""Hugging Face transformers interop, writing: folders that `IJepaModel` / `VJEPA2Model` load (`hf.py` reads them).

`save_hf` writes `config.json` (`hf_config`) and `model.safetensors` (`ours_to_hf`, the inverse of `hf.hf_to_ours`
over the key table in `hf.py`'s docstring). Only what transformers can represent is exported (`hf_export_type`
refuses the rest, with the reason).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from jepa_world.atomic import atomic_write
from jepa_world.checkpoints.hf import PLAIN_KEYS
from jepa_world.checkpoints.pretrained import CONFIG_NAME, WEIGHTS_NAME
from jepa_world.models.predictor import MaskPredictor
from jepa_world.models.vit import VisionTransformer


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
            image_size=encoder.input_size[0],
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
        crop_size=encoder.input_size[-1],
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
    plain = {v: k for k, v in PLAIN_KEYS.items() if k.startswith(("encoder.", "predictor.")) == vjepa2}
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
