"""Features from a (frozen) encoder: pooled vectors, intermediate blocks, long videos in sliding windows.

References:
    Bardes et al. 2024 (V-JEPA: frozen evaluation on pooled / attentive features, clips of 16 frames); Assran et al.
    2025 (V-JEPA 2). timm's `forward_intermediates` for the intermediate-layer convention (negative indices count
    from the last block, optional final norm).

Shapes:
    images `[B, 3, H, W]`, videos `[B, 3, T, H, W]`; tokens `[B, N, D]`; pooled `[B, D]`; a long video `[3, T, H, W]`
    gives `[num_windows, D]`, one row per window start of `window_starts(T, window, stride)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jepa_world.models.vit import VisionTransformer


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """First frame of each window: every `stride` frames, plus a last window ending on the last frame.

    Raises:
        ValueError: window longer than the video, or a non-positive window / stride.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window={window} and stride={stride} must be >= 1")
    if window > num_frames:
        raise ValueError(f"window={window} is longer than the video ({num_frames} frames)")
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:  # the tail would otherwise never be seen
        starts.append(num_frames - window)
    return starts


def pooled_features(encoder: VisionTransformer, x: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over tokens of the encoder output: `[B, D]` (what a linear probe reads).

    Args:
        encoder: a VisionTransformer.
        x: `[B, 3, H, W]` or `[B, 3, T, H, W]`.
        idx: optional `[B, K]` token indices to keep.
    """
    return encoder(x, idx).mean(dim=1)


def intermediate_layers(
    encoder: VisionTransformer, x: torch.Tensor, layers: Sequence[int] | int = 1, *, norm: bool = True
) -> list[torch.Tensor]:
    """Token outputs of chosen blocks.

    Args:
        encoder: a VisionTransformer.
        x: `[B, 3, H, W]` or `[B, 3, T, H, W]`.
        layers: block indices (negative counts from the end: -1 is the last block), or an int n for the last n.
        norm: pass each output through the encoder's final LayerNorm (the last block then gives `encoder(x)`).

    Returns:
        One `[B, N, D]` tensor per requested layer, in the requested order.

    Raises:
        ValueError: an index outside the encoder's blocks.
    """
    depth = len(encoder.blocks)
    if isinstance(layers, int):
        if not 1 <= layers <= depth:
            raise ValueError(f"layers={layers}: ask for between 1 and {depth} last blocks")
        layers = list(range(depth - layers, depth))
    wanted = []
    for i in layers:
        if not -depth <= i < depth:
            raise ValueError(f"layer index {i} is outside the encoder's {depth} blocks")
        wanted.append(i % depth)

    # Hooks read the blocks' outputs inside the encoder's own forward, so masking, positions and RoPE are its own.
    outputs: dict[int, torch.Tensor] = {}

    def keep(i: int):
        def hook(_module, _inputs, output):
            outputs.setdefault(i, output)

        return hook

    handles = [encoder.blocks[i].register_forward_hook(keep(i)) for i in sorted(set(wanted))]
    try:
        encoder(x)
    finally:
        for h in handles:
            h.remove()
    return [encoder.norm(outputs[i]) if norm else outputs[i] for i in wanted]


@torch.no_grad()
def encode_long_video(
    encoder: VisionTransformer, video: torch.Tensor, *, window: int, stride: int, batch_size: int = 8
) -> torch.Tensor:
    """Pooled features of a long video, one per sliding window (no gradient).

    Args:
        encoder: a video VisionTransformer.
        video: `[3, T, H, W]`.
        window: frames per window (a multiple of the tubelet size; other lengths than the encoder's nominal clip
            interpolate its position table).
        stride: frames between window starts; a last window is added so the final frames are covered.
        batch_size: windows encoded together.

    Returns:
        `[num_windows, D]`, row i for the window starting at `window_starts(T, window, stride)[i]`.
    """
    if not encoder.is_video:
        raise ValueError("encode_long_video needs a video encoder (num_frames > 1); this one is an image encoder")
    if video.ndim != 4:
        raise ValueError(f"video must be [3, T, H, W], got shape {tuple(video.shape)}")
    if window % encoder.tubelet_size:
        raise ValueError(f"window={window} is not a multiple of the tubelet size {encoder.tubelet_size}")
    starts = window_starts(video.shape[1], window, stride)
    feats = []
    for i in range(0, len(starts), batch_size):
        clips = torch.stack([video[:, s : s + window] for s in starts[i : i + batch_size]])  # [b, 3, window, H, W]
        feats.append(pooled_features(encoder, clips))
    return torch.cat(feats)  # [num_windows, D]
