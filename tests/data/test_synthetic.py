"""Tests for the procedural bouncing-shapes data (jepa_world/data/synthetic.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from jepa_world.data.synthetic import (
    BouncingShapesVideo,
    MovingShapeVideo,
    ShapesImages,
    save_preview,
)
from jepa_world.data.transforms import denormalize

# Geometry facts, independent of the implementation: area / half_size**2 for circle, square (side 2h) and the
# triangle with apex (0, -h) and base corners (+-h, h).
AREA_FACTOR = {0: math.pi, 1: 4.0, 2: 2.0}


def direction_bin(dx: float, dy: float) -> int:
    """8 bins of 45 deg centred on 0 deg, image coordinates (y down): 0 right, 2 down, 4 left, 6 up."""
    angle = math.degrees(math.atan2(dy, dx)) % 360.0
    return int((angle + 22.5) // 45.0) % 8


def shape_mask(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """``[T, H, W]`` pixels that differ from the background (rgb ``[3, T, H, W]``, background ``[3, H, W]``)."""
    return np.abs(rgb - background[:, None]).max(axis=0) > 0.02


def centroids(mask: np.ndarray) -> np.ndarray:
    """``[T, 2]`` (x, y) centroid of pixel centres per frame."""
    _, height, width = mask.shape
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    count = mask.sum(axis=(1, 2))
    return np.stack([(mask * xs).sum(axis=(1, 2)) / count, (mask * ys).sum(axis=(1, 2)) / count], axis=1)


def test_video_shapes_dtypes_and_keys():
    ds = BouncingShapesVideo(num_samples=5, num_frames=6, image_size=48, seed=1)
    assert len(ds) == 5
    item = ds[2]
    assert item["x"].shape == (3, 6, 48, 48)
    assert item["x"].dtype == torch.float32
    assert isinstance(item["label"], int) and 0 <= item["label"] < 8
    assert item["skipped"] == 0
    assert torch.equal(ds[(2, 12345)]["x"], item["x"])  # aug_seed is accepted and ignored
    assert torch.equal(ds[-3]["x"], item["x"])
    with pytest.raises(IndexError):
        ds[5]


def test_images_shapes_and_frame_zero_of_video():
    images = ShapesImages(num_samples=4, image_size=40, seed=7)
    video = BouncingShapesVideo(num_samples=4, num_frames=3, image_size=40, seed=7)
    for i in range(4):
        item = images[i]
        assert item["x"].shape == (3, 40, 40) and item["x"].dtype == torch.float32
        assert item["skipped"] == 0 and item["label"] in (0, 1, 2)
        torch.testing.assert_close(item["x"], video[i]["x"][:, 0], rtol=0, atol=1e-6)


def test_determinism_same_key_same_tensor_different_index_differs():
    ds = BouncingShapesVideo(num_samples=10, num_frames=4, seed=0)
    again = BouncingShapesVideo(num_samples=10, num_frames=4, seed=0)
    other_seed = BouncingShapesVideo(num_samples=10, num_frames=4, seed=1)
    for i in range(3):
        assert torch.equal(ds[i]["x"], ds[i]["x"])
        assert torch.equal(ds[i]["x"], again[i]["x"])
        assert not torch.equal(ds[i]["x"], ds[i + 1]["x"])
        assert not torch.equal(ds[i]["x"], other_seed[i]["x"])


def test_consecutive_frames_differ():
    ds = BouncingShapesVideo(num_samples=8, num_frames=8, seed=2)
    for i in range(len(ds)):
        x = ds[i]["x"]
        step = (x[:, 1:] - x[:, :-1]).abs().amax(dim=(0, 2, 3))  # [T - 1]
        assert (step > 0.1).all(), f"sample {i} has a static step: {step}"


def test_values_normalised():
    ds = BouncingShapesVideo(num_samples=16, num_frames=4, seed=3)
    x = torch.stack([ds[i]["x"] for i in range(len(ds))])
    assert torch.isfinite(x).all()
    rgb = denormalize(x.transpose(0, 1))  # back to [0, 1] RGB: renders are convex blends of colours in [0, 1]
    assert rgb.min() >= -1e-4 and rgb.max() <= 1 + 1e-4
    assert abs(x.mean().item()) < 0.5
    assert 0.5 < x.std().item() < 1.5


def test_label_range_and_not_constant():
    ds = BouncingShapesVideo(num_samples=64, num_frames=2, image_size=32, seed=4)
    labels = [ds[i]["label"] for i in range(len(ds))]
    assert all(0 <= label < 8 for label in labels)
    assert len(set(labels)) >= 6
    kinds = [ShapesImages(num_samples=64, image_size=32, seed=4)[i]["label"] for i in range(32)]
    assert set(kinds) == {0, 1, 2}


def test_label_is_direction_of_largest_shape_from_state():
    ds = BouncingShapesVideo(num_samples=40, num_frames=2, image_size=32, seed=5)
    for i in range(len(ds)):
        scene = ds.scene(i)
        areas = [AREA_FACTOR[int(k)] * h**2 for k, h in zip(scene.kind, scene.half_size)]
        largest = int(np.argmax(areas))
        vx, vy = scene.velocity[largest, 0]
        assert ds[i]["label"] == direction_bin(vx, vy)


def test_pixels_follow_state_and_motion_gives_label():
    """With one shape, the changed pixels' centroid must move like the state says, and its direction is the label."""
    ds = BouncingShapesVideo(num_samples=40, num_frames=6, image_size=64, num_shapes=(1, 1), seed=8)
    matches = 0
    for i in range(len(ds)):
        item, scene = ds[i], ds.scene(i)
        mask = shape_mask(denormalize(item["x"]).numpy(), scene.background)
        assert mask.sum(axis=(1, 2)).min() > 20  # the shape is visible in every frame
        moved = centroids(mask) - centroids(mask)[:1]
        expected = scene.center[0] - scene.center[0, :1]
        assert np.abs(moved - expected).max() < 1.0, f"sample {i}: pixels moved {moved}, state moved {expected}"
        matches += direction_bin(*moved[1]) == item["label"]
    # A bounce between frames 0 and 1 changes the pixel direction, so "most", not all.
    assert matches >= 0.8 * len(ds), matches


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_samples": 0}, "num_samples"),
        ({"num_frames": 0}, "num_frames"),
        ({"image_size": 4}, "image_size"),
        ({"num_shapes": (0, 2)}, "num_shapes"),
        ({"num_shapes": (3, 2)}, "num_shapes"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        BouncingShapesVideo(**kwargs)


def test_save_preview_writes_png(tmp_path):
    ds = BouncingShapesVideo(num_samples=3, num_frames=5, image_size=16, seed=0)
    path = save_preview(ds, tmp_path / "preview.png", num_samples=2, max_frames=4, scale=2)
    with Image.open(path) as image:
        assert image.size == (4 * 16 * 2, 2 * 16 * 2)
        assert image.mode == "RGB"


# ---------------------------------------------------------------------------------------------------------------------
# MovingShapeVideo: the motion probe task
# ---------------------------------------------------------------------------------------------------------------------
def test_motion_probe_labelled_shape_is_largest_in_front_and_moves_straight():
    size, frames = 64, 8
    ds = MovingShapeVideo(num_samples=60, num_frames=frames, image_size=size, seed=11)
    counts = set()
    for i in range(len(ds)):
        scene = ds.scene(i)
        counts.add(len(scene.kind))
        areas = [AREA_FACTOR[int(k)] * h**2 for k, h in zip(scene.kind, scene.half_size)]
        last = len(areas) - 1
        assert int(np.argmax(areas)) == last  # drawn last = in front of every distractor
        assert all(a <= 0.5 * areas[last] + 1e-9 for a in areas[:last])
        center, h = scene.center[last], scene.half_size[last]  # [T, 2]
        step = np.diff(center, axis=0)
        np.testing.assert_allclose(step, np.broadcast_to(step[:1], step.shape), atol=1e-9)  # no bounce
        assert (center >= h - 1e-9).all() and (center <= size - h + 1e-9).all()
        dx, dy = center[-1] - center[0]
        assert ds[i]["label"] == direction_bin(dx, dy)
    assert counts == {2, 3, 4}  # 1-3 distractors by default


def test_motion_probe_pixels_move_in_the_label_direction():
    ds = MovingShapeVideo(num_samples=30, num_frames=6, image_size=64, num_distractors=(0, 0), seed=12)
    for i in range(len(ds)):
        item, scene = ds[i], ds.scene(i)
        mask = shape_mask(denormalize(item["x"]).numpy(), scene.background)
        moved = centroids(mask)[-1] - centroids(mask)[0]
        expected = scene.center[0, -1] - scene.center[0, 0]
        assert np.abs(moved - expected).max() < 1.0, f"sample {i}: pixels moved {moved}, state moved {expected}"
        assert direction_bin(*moved) == item["label"]  # every sample: the shape never bounces


def test_motion_probe_label_needs_motion():
    """The middle position of the labelled shape does not depend on its direction; its first position does."""
    ds = MovingShapeVideo(num_samples=3000, num_frames=8, image_size=64, seed=13)
    middle, first = {0: [], 4: []}, {0: [], 4: []}
    for i in range(len(ds)):
        scene = ds.scene(i)
        if scene.label in middle:
            middle[scene.label].append(scene.center[-1].mean(axis=0)[0])
            first[scene.label].append(scene.center[-1, 0, 0])
    # x of the middle position: the same distribution for right (0) and left (4) motion (std ~6 px, ~370 samples
    # each); the first frame is ~2 x 3.5 x speed px apart, so the test can tell.
    assert abs(np.mean(middle[0]) - np.mean(middle[4])) < 1.5
    assert np.mean(first[4]) - np.mean(first[0]) > 8.0


def test_motion_probe_long_clips_keep_the_path_inside():
    size = 32
    ds = MovingShapeVideo(num_samples=20, num_frames=32, image_size=size, seed=14)
    for i in range(len(ds)):
        scene = ds.scene(i)
        center, h = scene.center[-1], scene.half_size[-1]
        assert (center >= h - 1e-9).all() and (center <= size - h + 1e-9).all()
        assert np.linalg.norm(center[1] - center[0]) > 0  # still moving (the speed is capped, not zeroed)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"num_distractors": (-1, 2)}, "num_distractors"), ({"num_distractors": (3, 2)}, "num_distractors"),
     ({"num_frames": 1}, "num_frames"), ({"seed": -1}, "seed")],
)  # fmt: skip
def test_motion_probe_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MovingShapeVideo(**kwargs)
