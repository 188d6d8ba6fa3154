"""Bouncing-shapes scenes: sampling (`sample_scene`, `sample_motion_scene`) and rendering (`render_scene`).

The generator behind the datasets of `jepa_world.data.synthetic`.

Sample ``i`` of a dataset built with ``seed`` is drawn entirely from ``numpy.random.default_rng((seed, i))``: a
smooth random-colour background (two octaves of bilinearly upsampled noise), then 2-4 shapes (circle, square,
triangle) with a two-colour stripe or checker texture that moves with the shape, a random size, start position and
velocity, bouncing elastically off the borders. Shapes are i.i.d., so their list order is already a random depth
order; shape 0 is drawn first (at the back) and later shapes occlude it. Edges are antialiased from a signed
distance, so sub-pixel motion is visible.

Every draw is independent of ``num_frames`` (trajectories are closed-form), so frame 0 of a clip equals the image of
`ShapesImages` with the same ``seed``, index, ``image_size`` and ``num_shapes``.

Coordinates: x to the right, y down, in pixels; pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``.
Motion label: the velocity direction at frame 0 of the largest shape (by area), in 8 bins of 45 degrees centred on
0 deg (0 = right, 2 = down, 4 = left, 6 = up). Directions are drawn within +-15 deg of a bin centre so labels are
unambiguous. In `BouncingShapesVideo` the label is only a weak target (in 8-frame 64 px clips the largest shape
bounces during the clip in ~35% of samples and another shape overlaps it in ~40%); `MovingShapeVideo`, the motion
probe task, draws the same family with the labelled shape made unambiguous (largest, in front, no bounce during
the clip, middle position independent of the direction; see `sample_motion_scene`).

Shapes: `render_scene` returns ``[3, T, H, W]`` float32 RGB in [0, 1] (the datasets normalise it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

KIND_NAMES: tuple[str, ...] = ("circle", "square", "triangle")
TEXTURE_NAMES: tuple[str, ...] = ("stripes", "checker")
NUM_DIRECTIONS = 8

# Area of each kind divided by half_size**2 (triangle: apex (0, -h), base corners (+-h, h)).
_AREA_FACTOR = np.array([math.pi, 4.0, 2.0])
_HALF_SIZE_RANGE = (0.08, 0.18)  # fraction of image_size
_SPEED_RANGE = (1.0, 3.0)  # px/frame at 64 px, scaled with image_size
_PERIOD_RANGE = (2.5, 5.0)  # texture period, px at 64 px
_DIRECTION_JITTER = math.pi / 12  # +-15 deg around a bin centre; bins are +-22.5 deg wide
_INV_SQRT5 = 1.0 / math.sqrt(5.0)
# Motion probe task (`MovingShapeVideo`)
_PROBE_HALF_SIZE_RANGE = (0.13, 0.18)  # the labelled shape: the upper part of _HALF_SIZE_RANGE
_DISTRACTOR_AREA_RATIO = 0.5  # a distractor's area is at most this fraction of the labelled shape's
_PROBE_FREE_FRACTION = 0.2  # the labelled shape's middle position ranges over at least this fraction of the side


@dataclass(frozen=True)
class ShapeScene:
    """Everything drawn for one sample; `render_scene` turns it into pixels.

    Attributes:
        background: ``[3, H, W]`` float32 RGB in [0, 1].
        kind: ``[n]`` index into `KIND_NAMES`.
        half_size: ``[n]`` half the bounding-box side, px.
        center: ``[n, T, 2]`` bounding-box centre (x, y) per frame, px.
        velocity: ``[n, T, 2]`` (vx, vy) per frame, px/frame (signs flip at bounces).
        color: ``[n, 2, 3]`` base and texture colour, RGB in [0, 1].
        texture: ``[n]`` index into `TEXTURE_NAMES`.
        texture_period: ``[n]`` px.
        texture_angle: ``[n]`` rad, orientation of stripes / checker.
    """

    background: np.ndarray
    kind: np.ndarray
    half_size: np.ndarray
    center: np.ndarray
    velocity: np.ndarray
    color: np.ndarray
    texture: np.ndarray
    texture_period: np.ndarray
    texture_angle: np.ndarray

    @property
    def largest(self) -> int:
        """Index of the shape with the largest area."""
        return int(np.argmax(_AREA_FACTOR[self.kind] * self.half_size**2))

    @property
    def label(self) -> int:
        """Direction bin (0..7) of the largest shape's velocity at frame 0."""
        vx, vy = self.velocity[self.largest, 0]
        return round(math.atan2(vy, vx) / (2 * math.pi / NUM_DIRECTIONS)) % NUM_DIRECTIONS


def _upsample_matrix(size: int, grid: int) -> np.ndarray:
    """``[size, grid]`` bilinear interpolation weights from a coarse grid spanning the image to pixel centres."""
    pos = (np.arange(size) + 0.5) / size * (grid - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), grid - 2)
    frac = pos - lo
    weights = np.zeros((size, grid))
    weights[np.arange(size), lo] = 1.0 - frac
    weights[np.arange(size), lo + 1] = frac
    return weights


def _sample_background(rng: np.random.Generator, size: int) -> np.ndarray:
    coarse_grid = int(rng.integers(2, 5))
    coarse = rng.uniform(0.1, 0.9, (3, coarse_grid, coarse_grid))
    fine = rng.uniform(-0.12, 0.12, (3, 8, 8))
    bg = np.zeros((3, size, size))
    for grid, values in ((coarse_grid, coarse), (8, fine)):
        up = _upsample_matrix(size, grid)  # [S, g]
        bg += up @ values @ up.T  # [3, S, S]
    return np.clip(bg, 0.0, 1.0).astype(np.float32)


def _bounce(
    start: np.ndarray, velocity: np.ndarray, low: np.ndarray, span: np.ndarray, times: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form elastic bouncing in ``[low, low + span]``: unfold the motion, fold it back with a triangle wave.

    Shapes: start, velocity ``[n, 2]``; low, span ``[n, 1]``; times ``[T]``; returns two ``[n, T, 2]`` arrays.
    """
    unfolded = (start - low)[:, None, :] + velocity[:, None, :] * times[None, :, None]  # [n, T, 2]
    phase = np.mod(unfolded, 2 * span[:, None])
    position = low[:, None] + span[:, None] - np.abs(phase - span[:, None])
    direction = np.where(phase < span[:, None], 1.0, -1.0)
    return position, direction * velocity[:, None, :]


def sample_scene(
    rng: np.random.Generator, *, num_frames: int, image_size: int, num_shapes: tuple[int, int]
) -> ShapeScene:
    """Draw one scene. The draws do not depend on ``num_frames``; only the trajectory length does.

    Args:
        rng: Source of all randomness for this sample.
        num_frames: ``T``.
        image_size: Side ``S`` in px.
        num_shapes: Inclusive range of the number of shapes.

    Returns:
        The `ShapeScene`.
    """
    size = image_size
    background = _sample_background(rng, size)
    n = int(rng.integers(num_shapes[0], num_shapes[1] + 1))
    kind = rng.integers(0, len(KIND_NAMES), n)
    half_size = rng.uniform(*_HALF_SIZE_RANGE, n) * size
    color, texture, texture_period, texture_angle = _sample_appearance(rng, n, size)
    center, velocity = _sample_bouncing(rng, half_size, size, num_frames)
    return ShapeScene(
        background=background,
        kind=kind,
        half_size=half_size,
        center=center,
        velocity=velocity,
        color=color,
        texture=texture,
        texture_period=texture_period,
        texture_angle=texture_angle,
    )


def _sample_appearance(
    rng: np.random.Generator, n: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Colours ``[n, 2, 3]``, texture kinds ``[n]``, texture periods ``[n]`` (px) and angles ``[n]`` (rad)."""
    base = rng.uniform(0.0, 1.0, (n, 3))
    # Texture colour: a darker shade of light shapes and a lighter one of dark shapes, so stripes always show.
    shade = np.where(base.mean(1, keepdims=True) > 0.5, 0.4 * base, base + 0.6 * (1.0 - base))
    texture = rng.integers(0, len(TEXTURE_NAMES), n)
    texture_period = rng.uniform(*_PERIOD_RANGE, n) * size / 64
    texture_angle = rng.uniform(0.0, math.pi, n)
    return np.stack([base, shade], axis=1), texture, texture_period, texture_angle


def _sample_direction(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``[n, 2]`` velocities (px/frame): a direction within +-15 deg of a random bin centre, a random speed."""
    angle = rng.integers(0, NUM_DIRECTIONS, n) * (2 * math.pi / NUM_DIRECTIONS)
    angle = angle + rng.uniform(-_DIRECTION_JITTER, _DIRECTION_JITTER, n)
    speed = rng.uniform(*_SPEED_RANGE, n) * size / 64
    return speed[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _sample_bouncing(
    rng: np.random.Generator, half_size: np.ndarray, size: int, num_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform start inside the image, random velocity, elastic bounces: centre and velocity ``[n, T, 2]``."""
    n = len(half_size)
    start = half_size[:, None] + rng.uniform(0.0, 1.0, (n, 2)) * (size - 2 * half_size[:, None])
    velocity0 = _sample_direction(rng, n, size)  # [n, 2]
    return _bounce(
        start, velocity0, half_size[:, None], size - 2 * half_size[:, None], np.arange(num_frames, dtype=np.float64)
    )


def sample_motion_scene(
    rng: np.random.Generator, *, num_frames: int, image_size: int, num_distractors: tuple[int, int]
) -> ShapeScene:
    """Draw one scene of the motion probe task (`MovingShapeVideo`).

    The labelled shape is the last one (drawn in front, so never occluded) and the largest: its half size is drawn
    in `_PROBE_HALF_SIZE_RANGE` and every distractor has at most `_DISTRACTOR_AREA_RATIO` of its area. It moves in a
    straight line with no bounce during the clip: its speed is capped so that the whole path fits, and the clip's
    middle position is uniform over the box that keeps the path inside the image for ANY direction at that speed.
    So the middle frame is independent of the direction, and the time-reversed clip (the same frames in reverse
    order) is exactly as likely with the opposite label: the label can only be read from the order of the frames.
    Distractors look and bounce as in `sample_scene`.

    Args:
        rng: Source of all randomness for this sample.
        num_frames: ``T``.
        image_size: Side ``S`` in px.
        num_distractors: Inclusive range of the number of distractor shapes (0 allowed).

    Returns:
        The `ShapeScene`; its `label` is the labelled shape's direction bin.
    """
    size = image_size
    background = _sample_background(rng, size)
    n = int(rng.integers(num_distractors[0], num_distractors[1] + 1)) + 1
    kind = rng.integers(0, len(KIND_NAMES), n)
    main_half = rng.uniform(*_PROBE_HALF_SIZE_RANGE) * size
    main_area = _AREA_FACTOR[kind[-1]] * main_half**2
    # Distractor half sizes: up to the one giving _DISTRACTOR_AREA_RATIO of the labelled shape's area.
    biggest = np.sqrt(_DISTRACTOR_AREA_RATIO * main_area / _AREA_FACTOR[kind[:-1]])  # [n - 1]
    half_size = np.append(rng.uniform(0.5, 1.0, n - 1) * biggest, main_half)
    color, texture, texture_period, texture_angle = _sample_appearance(rng, n, size)
    center, velocity = _sample_bouncing(rng, half_size[:-1], size, num_frames)
    v = _sample_direction(rng, 1, size)[0]  # [2]
    # Half the path length must leave at least _PROBE_FREE_FRACTION * S of room for the middle position.
    half_time = (num_frames - 1) / 2
    room = size / 2 - main_half - _PROBE_FREE_FRACTION * size / 2
    speed = float(np.linalg.norm(v))
    if half_time > 0 and speed * half_time > room:
        v = v * room / (speed * half_time)
        speed = room / half_time
    reach = main_half + speed * half_time  # the path stays inside for every direction at this speed
    middle = reach + rng.uniform(0.0, 1.0, 2) * (size - 2 * reach)  # [2]
    times = np.arange(num_frames, dtype=np.float64) - half_time
    main_center = middle + times[:, None] * v  # [T, 2]
    return ShapeScene(
        background=background,
        kind=kind,
        half_size=half_size,
        center=np.concatenate([center, main_center[None]]),
        velocity=np.concatenate([velocity, np.broadcast_to(v, (1, num_frames, 2))]),
        color=color,
        texture=texture,
        texture_period=texture_period,
        texture_angle=texture_angle,
    )


def _signed_distance(kind: int, dx: np.ndarray, dy: np.ndarray, half_size: float) -> np.ndarray:
    """Signed distance (px, negative inside) to a shape centred at the origin; dx ``[T, 1, W]``, dy ``[T, H, 1]``."""
    if kind == 0:
        return np.sqrt(dx * dx + dy * dy) - half_size
    if kind == 1:
        return np.maximum(np.abs(dx), np.abs(dy)) - half_size
    # Triangle: the base line y = h and the two sides 2|x| = y + h, distances normalised by |(2, -1)| = sqrt(5).
    return np.maximum(dy - half_size, (2.0 * np.abs(dx) - dy - half_size) * _INV_SQRT5)


def _texture_mask(texture: int, dx: np.ndarray, dy: np.ndarray, period: float, angle: float) -> np.ndarray:
    """True where the texture colour shows, in the shape's own frame so the pattern moves with it. ``[T, H, W]``."""
    # Stripe floor(d / period) is odd iff frac(d / (2 period)) >= 0.5; this is cheaper than np.mod on floats.
    cos, sin = 0.5 * math.cos(angle) / period, 0.5 * math.sin(angle) / period
    u = dx * cos + dy * sin
    odd = u - np.floor(u) >= 0.5
    if texture == 1:
        v = dy * cos - dx * sin
        odd ^= v - np.floor(v) >= 0.5
    return odd


def _window_starts(center: np.ndarray, half_size: float, width: int, size: int) -> np.ndarray:
    """``[T]`` first pixel of a ``width``-px window covering a shape's antialiased footprint along one axis."""
    # Antialiasing reaches up to ~1.2 px past the bounding box (the triangle's apex); 1.5 px is a safe margin.
    return np.clip(np.floor(center - half_size - 1.5), 0, size - width).astype(np.int64)


def render_scene(scene: ShapeScene) -> np.ndarray:
    """Render a scene back to front with antialiased edges.

    Each shape is evaluated only in a per-frame window around its bounding box (vectorised over frames): at the
    default sizes that is a few times less work than evaluating every shape over whole frames.

    Args:
        scene: From `sample_scene`.

    Returns:
        ``[3, T, H, W]`` float32 RGB in [0, 1].
    """
    _, size, _ = scene.background.shape
    num_frames = scene.center.shape[1]
    img = np.repeat(scene.background[:, None], num_frames, axis=1)  # [3, T, H, W]
    offsets = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    for k in range(len(scene.kind)):
        half_size = float(scene.half_size[k])
        width = min(size, math.ceil(2 * half_size) + 4)
        x0 = _window_starts(scene.center[k, :, 0], half_size, width, size)  # [T]
        y0 = _window_starts(scene.center[k, :, 1], half_size, width, size)
        center = scene.center[k].astype(np.float32)  # [T, 2]
        dx = (x0[:, None].astype(np.float32) + offsets[:width] - center[:, 0, None])[:, None, :]  # [T, 1, w]
        dy = (y0[:, None].astype(np.float32) + offsets[:width] - center[:, 1, None])[:, :, None]  # [T, w, 1]
        sdf = _signed_distance(int(scene.kind[k]), dx, dy, half_size)  # [T, w, w]
        alpha = np.clip(0.5 - sdf, 0.0, 1.0)  # pixel coverage
        tex = _texture_mask(
            int(scene.texture[k]), dx, dy, float(scene.texture_period[k]), float(scene.texture_angle[k])
        )
        alpha_tex = alpha * tex
        base, shade = scene.color[k, :, :, None, None, None].astype(np.float32)  # [3, 1, 1, 1] each
        # Gather the per-frame windows, blend, scatter back; windows of different frames never overlap.
        windows = sliding_window_view(img, (width, width), axis=(2, 3), writeable=True)  # [3, T, ., ., w, w]
        frames = np.arange(num_frames)
        patch = windows[:, frames, y0, x0]  # [3, T, w, w] copy
        patch += alpha * (base - patch) + alpha_tex * (shade - base)
        windows[:, frames, y0, x0] = patch
    return img
