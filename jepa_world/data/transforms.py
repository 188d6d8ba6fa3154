"""Image transforms, ImageNet normalisation and the sample-key contract shared by all datasets.

Sample keys: every dataset's ``__getitem__`` takes either an ``int`` index or a pair ``(index, aug_seed)``. The
``aug_seed`` alone decides every random augmentation of that sample, so a key maps to the same tensor in any process
or DataLoader worker, and a resumed run that replays its sampler replays its augmentations too. A plain int means
``aug_seed = index``.

Torchvision's v2 transforms draw from torch's global CPU generator; `apply_seeded` runs them inside
``torch.random.fork_rng`` with that generator seeded from ``aug_seed``, so the global state outside is left untouched.

Shapes: transforms take a PIL image and return ``x`` as ``[3, S, S]`` float32, normalised with the ImageNet mean and
std (the statistics the I-JEPA / V-JEPA encoders are trained with, Assran et al. 2023, Bardes et al. 2024).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# torch.manual_seed takes any 64-bit pattern; masking lets negative or huge aug_seeds through deterministically.
_SEED_MASK = (1 << 64) - 1


# --------------------------------------------------------------------------------------------------------------------
# ImageNet normalisation: every path (float images, uint8 frames, uint8 clips, resized frames) goes through these two
# --------------------------------------------------------------------------------------------------------------------
def _imagenet_stats(view: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> tuple[torch.Tensor, ...]:
    """ImageNet (mean, std) shaped `view` (3 at the channel axis, 1 elsewhere)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype, device=device).view(view)
    std = torch.tensor(IMAGENET_STD, dtype=dtype, device=device).view(view)
    return mean, std


def _uint8_affine(view: tuple[int, ...], device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with `x_uint8 * scale + shift == (x / 255 - mean) / std`, derived in float64, float32 out."""
    mean, std = _imagenet_stats(view, torch.float64, "cpu")
    return (1.0 / (255.0 * std)).float().to(device), (-mean / std).float().to(device)


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.dim() < 1 or x.shape[0] != 3:
        raise ValueError(f"x must be channel-first with 3 channels [3, ...], got shape {tuple(x.shape)}")
    return _imagenet_stats((3,) + (1,) * (x.dim() - 1), x.dtype, x.device)


def normalize(x: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """Normalise RGB values in [0, 1] with the ImageNet mean and std.

    Args:
        x: Float tensor ``[3, ...]`` (e.g. ``[3, H, W]`` or ``[3, T, H, W]``) with values in [0, 1].
        inplace: Overwrite ``x`` instead of allocating (saves a copy on large clips).

    Returns:
        ``(x - mean) / std`` per channel, same shape (``x`` itself when ``inplace``).
    """
    mean, std = _channel_stats(x)
    if inplace:
        return x.sub_(mean).div_(std)
    return (x - mean) / std


def uint8_to_float(x: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
    """Channel-first RGB ``uint8 [..., 3, H, W]`` -> float32 in [0, 1], ImageNet-normalised if `normalize`.

    Two passes over the data (convert, then one fused multiply-add), on whatever device `x` is: episode datasets
    can collate uint8 batches (4x less memory traffic) and convert them once per batch.
    """
    if x.dtype != torch.uint8 or x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"x must be uint8 [..., 3, H, W], got {x.dtype} {tuple(x.shape)}")
    if not normalize:
        return x.float().mul_(1.0 / 255.0)
    scale, bias = _uint8_affine((3, 1, 1), x.device)
    return torch.addcmul(bias, x.float(), scale)


def normalize_clip(clip: torch.Tensor) -> torch.Tensor:
    """``uint8 [T, 3, S, S]`` -> ``[3, T, S, S]`` float32, ImageNet-normalised (what the tubelet encoder takes).

    One copy into a fresh float tensor, then in-place scale and shift: about 5x faster than ToDtype + Normalize
    on the channels-last tensors the crop returns.
    """
    x = torch.empty((clip.shape[1], clip.shape[0], *clip.shape[2:]), dtype=torch.float32)
    x.copy_(clip.as_subclass(torch.Tensor).permute(1, 0, 2, 3))
    scale, shift = _uint8_affine((3, 1, 1, 1), "cpu")
    return x.mul_(scale).add_(shift)


def frames_to_tensor(frames: np.ndarray, *, normalize: bool = True, image_size: int | None = None) -> torch.Tensor:
    """RGB frames ``uint8 [T, H, W, 3]`` -> float ``[T, 3, S, S]`` in [0, 1], ImageNet-normalised if `normalize`.

    The one conversion shared by episode datasets and agents that encode live observations, so training and planning
    see identical tensors (`uint8_to_float` when no resize is needed).

    Args:
        frames: ``uint8 [T, H, W, 3]``.
        normalize: ImageNet mean / std normalisation; False leaves values in [0, 1].
        image_size: resize to ``S x S`` (bilinear, antialiased, clamped to [0, 1]); None keeps ``H x W``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # [T, 3, H, W] uint8
    if image_size is None or tuple(x.shape[-2:]) == (image_size, image_size):
        return uint8_to_float(x, normalize=normalize).contiguous()
    x = x.float().div_(255.0)
    x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True)
    x = x.clamp_(0.0, 1.0)
    if normalize:
        mean, std = _imagenet_stats((1, 3, 1, 1), x.dtype, x.device)
        x = x.sub_(mean).div_(std)
    return x.contiguous()


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Invert `normalize`: map a normalised ``[3, ...]`` tensor back to RGB values (about [0, 1]).

    Args:
        x: Float tensor ``[3, ...]`` produced by `normalize`.

    Returns:
        A new tensor of the same shape, ``x * std + mean`` per channel (not clamped).
    """
    mean, std = _channel_stats(x)
    return x * std + mean


def split_key(key: Any, length: int) -> tuple[int, int]:
    """Parse a sample key into ``(index, aug_seed)``.

    Args:
        key: An int index, or a tuple/list ``(index, aug_seed)`` of two ints. Negative indices count from the end,
            as for a list. Anything with ``__index__`` (numpy ints, 0-d integer tensors) counts as an int.
        length: Dataset length, for bounds checking.

    Returns:
        ``(index, aug_seed)`` with ``0 <= index < length``; for a plain int key, ``aug_seed`` is the (non-negative)
        index.

    Raises:
        TypeError: If ``key`` is neither an int nor a pair of ints.
        IndexError: If the index is outside ``[-length, length)``.
    """
    if isinstance(key, (tuple, list)):
        if len(key) != 2:
            raise TypeError(f"key must be an int or a pair (index, aug_seed), got {key!r}")
        raw_index, raw_seed = key
    else:
        raw_index, raw_seed = key, None
    try:
        if isinstance(raw_index, bool) or isinstance(raw_seed, bool):
            raise TypeError
        index = operator.index(raw_index)
        seed = None if raw_seed is None else operator.index(raw_seed)
    except TypeError:
        raise TypeError(f"key must be an int or a pair (index, aug_seed) of ints, got {key!r}") from None
    if not -length <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} items")
    index %= length
    return index, index if seed is None else seed


def apply_seeded(transform: Callable[[Any], torch.Tensor], image: Any, aug_seed: int) -> torch.Tensor:
    """Apply a (random) torchvision transform with all its randomness drawn from ``aug_seed``.

    Args:
        transform: Callable drawing its randomness from torch's global CPU generator (torchvision v2 transforms do).
        image: Its input, e.g. a PIL image.
        aug_seed: Seed; the same seed gives the same output. Any int (taken modulo 2**64).

    Returns:
        ``transform(image)``; torch's global CPU RNG state is restored afterwards.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(aug_seed & _SEED_MASK)
        return transform(image)


def make_train_transform(image_size: int, scale: tuple[float, float] = (0.3, 1.0)) -> v2.Compose:
    """Train transform: random resized crop, horizontal flip, to float32, ImageNet normalisation.

    Args:
        image_size: Output side ``S``.
        scale: Range of the crop's area as a fraction of the image area (I-JEPA uses (0.3, 1.0)).

    Returns:
        A v2 transform mapping a PIL RGB image to a ``[3, S, S]`` float32 tensor. Wrap calls in `apply_seeded`.
    """
    return v2.Compose(
        [
            # Crop and flip on the PIL image: PIL's antialiased resize is faster than the tensor path here.
            v2.RandomResizedCrop(image_size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
        ]
    )


def make_eval_transform(image_size: int, crop_fraction: float = 0.875) -> v2.Compose:
    """Eval transform: resize the short side to ``image_size / crop_fraction``, center crop, normalise.

    Args:
        image_size: Output side ``S``.
        crop_fraction: Fraction of the resized short side kept by the center crop (0.875: 256 -> 224).

    Returns:
        A deterministic v2 transform mapping a PIL RGB image to a ``[3, S, S]`` float32 tensor.
    """
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    return v2.Compose(
        [
            v2.Resize(round(image_size / crop_fraction), antialias=True),
            v2.CenterCrop(image_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
        ]
    )
