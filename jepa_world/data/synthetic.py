"""Procedural bouncing-shapes clips and images: a deterministic, download-free data source for tests and demos.

The datasets draw sample ``i`` from ``numpy.random.default_rng((seed, i))`` and render it with
`jepa_world.data.shapes` (the scene family, the motion label and the coordinate conventions are documented there).
Frame 0 of a clip equals the image of `ShapesImages` with the same ``seed``, index, ``image_size`` and
``num_shapes``.

Shapes: ``x`` is ``[3, T, H, W]`` for clips and ``[3, H, W]`` for images, float32, ImageNet-normalised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from jepa_world.data.shapes import ShapeScene, render_scene, sample_motion_scene, sample_scene
from jepa_world.data.transforms import denormalize, normalize, split_key


class _ShapesSource(Dataset):
    """Shared sampling and rendering for `BouncingShapesVideo`, `MovingShapeVideo` and `ShapesImages`."""

    def __init__(
        self, *, num_samples: int, num_frames: int, image_size: int, num_shapes: tuple[int, int], seed: int
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {image_size}")
        if len(num_shapes) != 2 or not 1 <= num_shapes[0] <= num_shapes[1]:
            raise ValueError(f"num_shapes must be a range (low, high) with 1 <= low <= high, got {num_shapes}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.num_samples = num_samples
        self.num_frames = num_frames
        self.image_size = image_size
        self.num_shapes = (int(num_shapes[0]), int(num_shapes[1]))
        self.seed = seed

    def __len__(self) -> int:
        return self.num_samples

    def scene(self, key: Any) -> ShapeScene:
        """The scene behind a sample key (an int or ``(index, aug_seed)``; aug_seed is ignored)."""
        index, _ = split_key(key, self.num_samples)
        return self._sample(np.random.default_rng((self.seed, index)))

    def _sample(self, rng: np.random.Generator) -> ShapeScene:
        return sample_scene(rng, num_frames=self.num_frames, image_size=self.image_size, num_shapes=self.num_shapes)

    def _render(self, key: Any) -> tuple[torch.Tensor, ShapeScene]:
        scene = self.scene(key)
        x = normalize(torch.from_numpy(render_scene(scene)), inplace=True)  # [3, T, H, W]
        return x, scene


class _ShapeClips(_ShapesSource):
    """Labelled clips: items ``{"x": [3, T, H, W], "label": direction bin, "skipped": 0}``."""

    def __getitem__(self, key: Any) -> dict[str, Any]:
        x, scene = self._render(key)
        return {"x": x, "label": scene.label, "skipped": 0}


class BouncingShapesVideo(_ShapeClips):
    """Clips of textured shapes bouncing around a smooth background.

    Items: ``{"x": [3, T, H, W] float32 normalised, "label": int 0..7, "skipped": 0}``; ``label`` is the direction
    bin of the largest shape's motion at frame 0 (see the module docstring), predictable only from motion.

    Args:
        num_samples: Dataset length.
        num_frames: Frames per clip ``T``.
        image_size: Frame side ``H = W`` in px; sizes and speeds scale with it.
        num_shapes: Inclusive range of the number of shapes per clip.
        seed: Dataset seed; sample ``i`` depends only on ``(seed, i)`` and the other arguments.
    """

    def __init__(
        self,
        *,
        num_samples: int = 10_000,
        num_frames: int = 16,
        image_size: int = 64,
        num_shapes: tuple[int, int] = (2, 4),
        seed: int = 0,
    ) -> None:
        super().__init__(
            num_samples=num_samples, num_frames=num_frames, image_size=image_size, num_shapes=num_shapes, seed=seed
        )


class MovingShapeVideo(_ShapeClips):
    """Clips for the motion probe: one large shape moving in a straight line among smaller bouncing distractors.

    Same generator family as `BouncingShapesVideo` (backgrounds, kinds, textures, speeds, rendering), with the
    labelled shape made unambiguous (see `sample_motion_scene`): it is in front of the others, clearly the largest,
    and does not bounce during the clip, so its direction holds over every frame. A single frame cannot tell the
    label: the middle frame does not depend on it, and the time-reversed clip is as likely with the opposite label.

    Items: ``{"x": [3, T, H, W] float32 normalised, "label": int 0..7, "skipped": 0}``; ``label`` is the direction
    bin of the labelled shape (the largest; see the module docstring for the bins).

    Args:
        num_samples: Dataset length.
        num_frames: Frames per clip ``T`` (>= 2: a direction needs motion).
        image_size: Frame side ``H = W`` in px.
        num_distractors: Inclusive range of the number of distractor shapes (0 allowed).
        seed: Dataset seed; sample ``i`` depends only on ``(seed, i)`` and the other arguments.
    """

    def __init__(
        self,
        *,
        num_samples: int = 10_000,
        num_frames: int = 16,
        image_size: int = 64,
        num_distractors: tuple[int, int] = (1, 3),
        seed: int = 0,
    ) -> None:
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 (a direction of motion needs two frames), got {num_frames}")
        if len(num_distractors) != 2 or not 0 <= num_distractors[0] <= num_distractors[1]:
            raise ValueError(
                f"num_distractors must be a range (low, high) with 0 <= low <= high, got {num_distractors}"
            )
        lo, hi = int(num_distractors[0]), int(num_distractors[1])
        super().__init__(
            num_samples=num_samples,
            num_frames=num_frames,
            image_size=image_size,
            num_shapes=(lo + 1, hi + 1),
            seed=seed,
        )
        self.num_distractors = (lo, hi)

    def _sample(self, rng: np.random.Generator) -> ShapeScene:
        return sample_motion_scene(
            rng, num_frames=self.num_frames, image_size=self.image_size, num_distractors=self.num_distractors
        )


class ShapesImages(_ShapesSource):
    """Single frames of the bouncing-shapes generator (frame 0 of the clip with the same seed and index).

    Items: ``{"x": [3, H, W] float32 normalised, "label": int 0..2, "skipped": 0}``; ``label`` is the kind of the
    largest shape (index into `KIND_NAMES`), a static property usable by frozen probes.

    Args:
        num_samples: Dataset length.
        image_size: Image side in px.
        num_shapes: Inclusive range of the number of shapes per image.
        seed: Dataset seed.
    """

    def __init__(
        self, *, num_samples: int = 10_000, image_size: int = 64, num_shapes: tuple[int, int] = (2, 4), seed: int = 0
    ) -> None:
        super().__init__(num_samples=num_samples, num_frames=1, image_size=image_size, num_shapes=num_shapes, seed=seed)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        x, scene = self._render(key)
        return {"x": x[:, 0], "label": int(scene.kind[scene.largest]), "skipped": 0}


def save_preview(
    dataset: Dataset, path: str | Path, *, num_samples: int = 4, max_frames: int = 8, scale: int = 2
) -> Path:
    """Write a PNG grid (one row per sample, one column per frame) to look at a dataset.

    Args:
        dataset: Items with ``"x"`` of shape ``[3, T, H, W]`` or ``[3, H, W]``, ImageNet-normalised.
        path: Output PNG path.
        num_samples: Rows (first items of the dataset).
        max_frames: Most frames per row (evenly spaced over the clip).
        scale: Integer nearest-neighbour upscaling for viewing.

    Returns:
        The path written, as a `Path`.
    """
    from PIL import Image

    rows = []
    for i in range(min(num_samples, len(dataset))):
        x = dataset[i]["x"]
        x = x[:, None] if x.dim() == 3 else x  # [3, T, H, W]
        frames = np.linspace(0, x.shape[1] - 1, min(max_frames, x.shape[1])).round().astype(int)
        rgb = denormalize(x[:, frames]).clamp(0, 1).permute(2, 1, 3, 0)  # [H, T', W, 3]
        rows.append(rgb.reshape(rgb.shape[0], -1, 3))
    grid = (torch.cat(rows, dim=0).numpy() * 255).round().astype(np.uint8)
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    path = Path(path)
    Image.fromarray(grid).save(path)
    return path
