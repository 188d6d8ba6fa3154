"""torch.hub entry points: one per registered encoder preset of jepa_world.

    encoder = torch.hub.load("OWNER/jepa_world", "vit_small", patch_size=16, img_size=224)
    encoder = torch.hub.load("path/to/jepa_world", "vit_nano", source="local", num_frames=16)

Entries build architectures only: jepa_world hosts no weights, so `pretrained=True` is an error. Load weights with
`jepa_world.load_encoder(PATH)`, which reads our exports and run folders and the official I-JEPA / V-JEPA / V-JEPA 2
checkpoints. Keyword arguments are VisionTransformer kwargs (img_size, patch_size, num_frames, pos_embed, ...).
"""

from __future__ import annotations

from jepa_world.models import create_model
from jepa_world.models.vit import VisionTransformer

dependencies = ["torch", "timm"]


def _build(name: str, pretrained: bool, kwargs: dict) -> VisionTransformer:
    if pretrained:
        raise ValueError(
            f"pretrained=True for {name!r}: jepa_world hosts no weights. Build with pretrained=False, or load weights "
            "with jepa_world.load_encoder(PATH) (export folders, run folders, official I-JEPA / V-JEPA / V-JEPA 2 "
            "checkpoints)"
        )
    return create_model(name, **kwargs)


def vit_nano(*, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-nano (width 128, depth 4, 4 heads): jepa_world's size for CPU tests and demos."""
    return _build("vit_nano", pretrained, kwargs)


def vit_tiny(*, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-Ti (width 192, depth 12, 3 heads)."""
    return _build("vit_tiny", pretrained, kwargs)


def vit_small(*, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-S (width 384, depth 12, 6 heads)."""
    return _build("vit_small", pretrained, kwargs)


def vit_base(*, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-B (width 768, depth 12, 12 heads)."""
    return _build("vit_base", pretrained, kwargs)


def vit_large(*, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-L (width 1024, depth 24, 16 heads)."""
    return _build("vit_large", pretrained, kwargs)


def vit_huge(*, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-H (width 1280, depth 32, 16 heads)."""
    return _build("vit_huge", pretrained, kwargs)


def vit_giant(*, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-g (width 1408, depth 40, 16 heads, MLP 6144); V-JEPA 2's released ViT-g uses num_heads=22."""
    return _build("vit_giant", pretrained, kwargs)
