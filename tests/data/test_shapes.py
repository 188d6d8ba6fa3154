"""Tests for the bouncing-shapes scenes: sampling and rendering (jepa_world/data/shapes.py)."""

from __future__ import annotations

import dataclasses

import numpy as np

from jepa_world.data.shapes import render_scene, sample_scene

PER_SHAPE_FIELDS = ("kind", "half_size", "velocity", "color", "texture", "texture_period", "texture_angle")


def test_trajectories_bounce_inside_and_keep_speed():
    size = 64
    steps_matching_velocity = []
    for i in range(20):
        scene = sample_scene(np.random.default_rng((6, i)), num_frames=16, image_size=size, num_shapes=(2, 4))
        h = scene.half_size[:, None]
        assert (scene.center >= h[..., None] - 1e-9).all() and (scene.center <= size - h[..., None] + 1e-9).all()
        speed = np.linalg.norm(scene.velocity, axis=-1)  # [n, T]
        np.testing.assert_allclose(speed, speed[:, :1].repeat(speed.shape[1], axis=1))
        assert ((speed > 0.9) & (speed < 3.1)).all()  # ~1-3 px/frame at 64 px
        step = np.diff(scene.center, axis=1)  # [n, T - 1, 2]
        assert (np.linalg.norm(step, axis=-1) <= speed[:, :-1] + 1e-9).all()
        steps_matching_velocity.append(np.isclose(step, scene.velocity[:, :-1]).all(axis=-1).ravel())
    # Away from bounces, the position advances by exactly the velocity.
    assert np.concatenate(steps_matching_velocity).mean() > 0.8


def test_later_shapes_occlude_earlier_ones():
    ys, xs = np.mgrid[0:64, 0:64] + 0.5
    for i in range(10):
        scene = sample_scene(np.random.default_rng((9, i)), num_frames=3, image_size=64, num_shapes=(2, 2))
        # Put both shapes on the same path so they overlap around their common centre.
        center = np.stack([scene.center[0], scene.center[0]])
        for order in ([0, 1], [1, 0]):
            stacked = dataclasses.replace(
                scene,
                **{f: getattr(scene, f)[order] for f in PER_SHAPE_FIELDS},
                center=center,
            )
            rgb = render_scene(stacked)  # [3, T, H, W]
            for t in range(rgb.shape[1]):
                # A disc of radius 0.4 h lies inside every kind (the triangle's side is h/sqrt5 from the box centre).
                radius = 0.4 * stacked.half_size.min() - 0.5  # minus the antialiasing band
                inside = np.hypot(xs - center[0, t, 0], ys - center[0, t, 1]) < radius
                pixels = rgb[:, t][:, inside].T  # [P, 3]
                dist = np.abs(pixels[:, None, :] - stacked.color[1][None]).max(axis=-1).min(axis=1)
                assert inside.any() and dist.max() < 1e-5, f"sample {i} frame {t}: top shape not on top"


def test_size_and_speed_scale_with_image_size():
    small = sample_scene(np.random.default_rng((10, 0)), num_frames=2, image_size=32, num_shapes=(2, 4))
    large = sample_scene(np.random.default_rng((10, 0)), num_frames=2, image_size=128, num_shapes=(2, 4))
    np.testing.assert_allclose(large.half_size, 4 * small.half_size)
    np.testing.assert_allclose(large.velocity, 4 * small.velocity)
