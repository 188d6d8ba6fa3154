"""timm interop: export an image encoder to a folder `timm.create_model("local-dir:DIR", pretrained=True)` loads.

Every encoder key has the same name in timm's VisionTransformer (no CLS token, no registers, fused qkv), so the export
is a strict key check plus the timm kwargs that rebuild the architecture. Video (tubelet) and RoPE encoders have no
timm counterpart and are refused with a message that says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save
from torch import nn

from jepa_world.atomic import atomic_write
from jepa_world.checkpoints.pretrained import CONFIG_NAME, WEIGHTS_NAME, module_config
from jepa_world.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from jepa_world.models.vit import VisionTransformer

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
    h, w = encoder.input_size
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
    tensors = {k: v.contiguous() for k, v in export_timm_state_dict(encoder).items()}
    model_args = timm_model_kwargs(encoder)
    arch = _TIMM_ARCH.get(encoder.embed_dim, "vit_base_patch16_224")  # every architecture kwarg is overridden
    h, w = encoder.input_size
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
    atomic_write(directory / WEIGHTS_NAME, lambda f: f.write(blob))
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(directory / CONFIG_NAME, lambda f: f.write(text.encode()))
    return directory
