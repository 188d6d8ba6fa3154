"""Labelled datasets for frozen probes: the built-in motion / shape tasks and a user's labelled videos or images.

Built-in: `MovingShapeVideo` clips labelled with the motion direction of the largest shape (8 classes, needs motion),
or `ShapesImages` with the kind of the largest shape (3 classes) for image encoders, each split from its own dataset
seed (`BUILTIN_SEEDS`), never the pretraining data's. A user's data: a video index (`path label` lines) or a folder
with one subfolder per class, read through the same index reader and datasets as pretraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from jepa_world.data.images import ImageFolderDataset
from jepa_world.data.index import class_of, detect_kind, read_index
from jepa_world.data.sampler import derive_seed
from jepa_world.data.shapes import KIND_NAMES, NUM_DIRECTIONS
from jepa_world.data.synthetic import MovingShapeVideo, ShapesImages
from jepa_world.data.video.dataset import VideoClipDataset

BUILTIN_SEEDS = {"train": 10_001, "val": 10_002, "test": 10_003}  # never the pretraining data's seed (cfg.seed)


def builtin_datasets(
    *,
    num_frames: int,
    image_size: int,
    num_train: int = 2000,
    num_val: int = 500,
    num_test: int = 1000,
    num_distractors: tuple[int, int] = (1, 3),
) -> tuple[Dataset, Dataset, Dataset, int, str]:
    """Built-in labelled splits, each from its own dataset seed (`BUILTIN_SEEDS`), disjoint from pretraining data.

    Videos (num_frames > 1): `MovingShapeVideo` (the bouncing-shapes family of the pretraining data, with the
    labelled shape made unambiguous: largest, in front, no bounce during the clip), label = its motion direction
    (8 classes; a single frame cannot tell it).
    Images: `ShapesImages`, label = kind of the largest shape (3 classes).

    Args:
        num_frames: clip length (1: images).
        image_size: frame side.
        num_train, num_val, num_test: split sizes.
        num_distractors: inclusive range of the number of smaller shapes besides the labelled one (videos).

    Returns:
        (train, val, test, num_classes, description).
    """
    sizes = {"train": num_train, "val": num_val, "test": num_test}
    for split, n in sizes.items():
        if n < 1:
            raise ValueError(f"num_{split}={n} must be >= 1")
    if num_frames > 1:
        lo, hi = num_distractors
        sets = [
            MovingShapeVideo(
                num_samples=n,
                num_frames=num_frames,
                image_size=image_size,
                num_distractors=(lo, hi),
                seed=BUILTIN_SEEDS[s],
            )
            for s, n in sizes.items()
        ]
        what = (
            f"built-in MovingShapeVideo {num_frames}x{image_size}px ({lo}-{hi} distractors), motion direction of "
            "the largest shape"
        )
        return (*sets, NUM_DIRECTIONS, what)
    sets = [ShapesImages(num_samples=n, image_size=image_size, seed=BUILTIN_SEEDS[s]) for s, n in sizes.items()]
    return (*sets, len(KIND_NAMES), f"built-in ShapesImages {image_size}px, kind of the largest shape")


class LabelledMedia(Dataset):
    """A user's labelled videos or images for probing: items `{"x", "label"}` with deterministic eval transforms.

    Labels come from the index's label column (`path label` V-JEPA CSV, `path,label`), else from the top-level
    subfolder of a folder (ImageNet layout). Class names are sorted (numerically when they are all integers) unless
    `classes` is given (to share one mapping between splits).

    Args:
        path: a folder, or an index file of videos.
        num_frames: clip length for video encoders (1: image encoder; images are repeated over the clip otherwise).
        image_size: output side.
        classes: class names in label order.
        frame_step: distance between sampled video frames.
    """

    def __init__(
        self,
        *,
        path: str | Path,
        num_frames: int,
        image_size: int,
        classes: Sequence[str] | None = None,
        frame_step: int = 4,
    ):
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"probe data {path} does not exist")
        self.kind = detect_kind(path)
        self.num_frames = num_frames
        if self.kind == "video":
            if num_frames < 2:
                raise ValueError(f"{path} holds videos but the encoder takes images (num_frames={num_frames})")
            self.dataset: Dataset = VideoClipDataset(
                index=path, frames_per_clip=num_frames, frame_step=frame_step, image_size=image_size, train=False
            )
            entries = [(e.path, e.label) for e in read_index(path)]
        else:
            if not path.is_dir():
                raise ValueError(f"{path}: image data for probing must be a folder with one subfolder per class")
            self.dataset = ImageFolderDataset(index=path, image_size=image_size, train=False)
            entries = [(p, None) for p in self.dataset.paths]
        names = [label if label is not None else (class_of(p, path) if path.is_dir() else "") for p, label in entries]
        if any(not n for n in names):
            raise ValueError(
                f"{path}: some items have no label (an index needs a label column; a folder needs one subfolder per "
                "class)"
            )
        if classes is None:
            found = sorted(set(names))
            classes = sorted(found, key=int) if all(n.lstrip("-").isdigit() for n in found) else found
        self.classes = list(classes)
        lookup = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(names) - set(lookup))
        if unknown:
            raise ValueError(f"{path}: labels {unknown[:5]} are not among the training classes {self.classes[:10]}")
        self.labels = [lookup[n] for n in names]
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        if self.kind == "video":
            label = self.labels[int(item["video_index"])]
            return {"x": item["x"], "label": label}
        # A skipped unreadable image is replaced by the next one: its label follows it.
        label = self.labels[(index + int(item["skipped"])) % len(self.labels)]
        x = item["x"]
        if self.num_frames > 1:
            x = x.unsqueeze(1).expand(-1, self.num_frames, -1, -1).contiguous()  # [3, T, H, W]
        return {"x": x, "label": label}


def _split_indices(n: int, fractions: Sequence[float], seed: int) -> list[list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, 2))).tolist()
    cuts = [round(n * sum(fractions[: i + 1])) for i in range(len(fractions))]
    starts = [0, *cuts[:-1]]
    return [sorted(order[a:b]) for a, b in zip(starts, cuts)]


def user_datasets(
    data: str | Path,
    *,
    num_frames: int,
    image_size: int,
    val_data: str | Path | None = None,
    test_data: str | Path | None = None,
    split: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> tuple[Dataset, Dataset, Dataset | None, int, str]:
    """Labelled splits from user data: separate train / val (/ test) paths, or one path split by `split` fractions.

    Returns:
        (train, val, test or None, num_classes, description).
    """
    train = LabelledMedia(path=data, num_frames=num_frames, image_size=image_size)
    if val_data is None:
        if test_data is not None:
            raise ValueError("test_data without val_data: pass val_data too, or neither to split data")
        parts = _split_indices(len(train), split, seed)
        if any(len(p) == 0 for p in parts):
            raise ValueError(f"{data} has {len(train)} items: too few to split into train / val / test by {split}")
        sets = [Subset(train, p) for p in parts]
        what = f"{data} ({train.kind}s, split {'/'.join(f'{f:g}' for f in split)} with seed {seed})"
        return (*sets, train.num_classes, what)
    kw = dict(num_frames=num_frames, image_size=image_size, classes=train.classes)
    val = LabelledMedia(path=val_data, **kw)
    test = LabelledMedia(path=test_data, **kw) if test_data is not None else None
    return train, val, test, train.num_classes, f"{data} (val {val_data}" + (f", test {test_data})" if test else ")")
