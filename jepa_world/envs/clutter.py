"""Visual nuisances for Two-Rooms: a textured floor per episode and dots that move on their own (rendering only).

On the plain arena the state is one red dot on a fixed background, and the tokens of any ViT, even a random-init
one, hold its position linearly (``docs/notes/jepa-world-model.md``, "Why the frozen rows are level"). These
options make the frames cluttered while keeping the agent, its dynamics and the protocol unchanged, to test whether JEPA
pretraining earns its place when the state is not one dot on a fixed background:

- **Texture** (``TwoRoomsEnv(texture=True)``): the floor is a smooth random colour field drawn per episode: a
  ``TEXTURE_CELLS x TEXTURE_CELLS`` grid of RGB values uniform in ``[0, TEXTURE_MAX]``, bilinearly interpolated to
  the frame, plus static per-pixel noise of std ``TEXTURE_NOISE``. Its reds reach 170 of the agent's 255; the
  walls stay white on top of it.
- **Distractors** (``TwoRoomsEnv(distractors=K)``): K dots of the agent's size in other colours
  (``DISTRACTOR_RGB``, cycled; two of them share the agent's full red channel), spawned uniformly, moving
  ``DISTRACTOR_SPEED`` units per step with a heading that drifts by a normal of std ``DISTRACTOR_TURN`` rad per
  step. They collide as the agent does (stop at the first contact) and then draw a fresh uniform heading. They
  ignore the agent and its actions, and are drawn under it.

A ``Scene`` (background, distractor positions and headings) is everything that is not the agent's state; the env
holds the current one, and ``TwoRoomsEnv.render_state(xy, scene=...)`` draws any other.

Shapes: backgrounds ``uint8 [H, W, 3]``; distractor positions ``float64 [K, 2]`` in arena units, headings ``[K]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from jepa_world.envs.geometry import ARENA_SIZE, move_point

TEXTURE_CELLS = 6
TEXTURE_MAX = 170.0
TEXTURE_NOISE = 12.0
DISTRACTOR_SPEED = 1.5
DISTRACTOR_TURN = 0.4
DISTRACTOR_RGB = np.array([[0, 255, 0], [255, 255, 0], [40, 140, 255], [255, 0, 255]], dtype=np.float32)


@dataclass(frozen=True)
class Scene:
    """What a frame shows besides the agent.

    Attributes:
        background: ``uint8 [H, W, 3]``: the floor (plain or textured) with the walls on top.
        distractors: ``float64 [K, 2]`` distractor positions in arena units (``K = 0``: none).
        headings: ``float64 [K]`` their headings in radians (x = cos, y = sin).
    """

    background: np.ndarray
    distractors: np.ndarray
    headings: np.ndarray


def _interp_grid(grid: np.ndarray, image_size: int) -> np.ndarray:
    """Bilinear interpolation of a ``[C, C, 3]`` grid whose corners sit on the frame's corners: ``[S, S, 3]``."""
    cells = grid.shape[0]
    u = np.linspace(0.0, cells - 1.0, image_size)
    rows = np.stack(
        [np.stack([np.interp(u, np.arange(cells), grid[i, :, c]) for c in range(3)], -1) for i in range(cells)]
    )  # fmt: skip  [C, S, 3]
    return np.stack(
        [np.stack([np.interp(u, np.arange(cells), rows[:, j, c]) for c in range(3)], -1) for j in range(image_size)],
        axis=1,
    )  # fmt: skip  [S, S, 3]


def random_floor(rng: np.random.Generator, image_size: int) -> np.ndarray:
    """A textured floor ``float32 [S, S, 3]`` in ``[0, 255]``: smooth colour field plus static fine noise."""
    grid = rng.uniform(0.0, TEXTURE_MAX, size=(TEXTURE_CELLS, TEXTURE_CELLS, 3))
    field = _interp_grid(grid, image_size) + rng.normal(0.0, TEXTURE_NOISE, size=(image_size, image_size, 3))
    return np.clip(field, 0.0, 255.0).astype(np.float32)


def compose(floor: np.ndarray, wall_coverage: np.ndarray, wall_rgb: np.ndarray) -> np.ndarray:
    """Walls over a floor by their pixel coverage ``[S, S]`` (anti-aliased): ``uint8 [S, S, 3]``."""
    cov = wall_coverage[..., None].astype(np.float32)
    return np.rint(floor * (1.0 - cov) + wall_rgb * cov).astype(np.uint8)


def advance(scene: Scene, rng: np.random.Generator, rects: np.ndarray) -> Scene:
    """One step of the distractors: drift the headings, move with stop-at-first-contact, re-aim the blocked ones."""
    if len(scene.distractors) == 0:
        return scene
    k = len(scene.distractors)
    headings = scene.headings + rng.normal(0.0, DISTRACTOR_TURN, size=k)
    step = DISTRACTOR_SPEED * np.stack([np.cos(headings), np.sin(headings)], axis=-1)  # [K, 2]
    moved = move_point(scene.distractors, step, rects)  # [K, 2]
    blocked = np.linalg.norm(moved - scene.distractors, axis=-1) < 0.999 * DISTRACTOR_SPEED
    fresh = rng.uniform(0.0, 2.0 * math.pi, size=k)
    return Scene(background=scene.background, distractors=moved, headings=np.where(blocked, fresh, headings))


def draw_blob(
    frame: np.ndarray, xy: tuple[float, float], rgb: np.ndarray, *, centres: np.ndarray, radius_px: int, sigma: float
) -> None:
    """Blend a Gaussian blob of colour ``rgb`` centred at ``xy`` (arena units) into ``frame`` ``uint8 [S, S, 3]``.

    Only a window of ``radius_px`` pixels around the centre is touched; outside it the blend would round back to
    the frame's own values. ``centres`` are the pixel centres in arena units ``[S]``.
    """
    x, y = xy
    size = frame.shape[0]
    px_per_unit = size / ARENA_SIZE
    c0 = max(int(x * px_per_unit) - radius_px, 0)
    c1 = min(int(x * px_per_unit) + radius_px + 1, size)
    r0 = max(int(y * px_per_unit) - radius_px, 0)
    r1 = min(int(y * px_per_unit) + radius_px + 1, size)
    if c0 >= c1 or r0 >= r1:
        return
    inv = -0.5 / (sigma * sigma)
    gx = np.exp(inv * (centres[c0:c1] - x) ** 2)
    gy = np.exp(inv * (centres[r0:r1] - y) ** 2)
    blob = np.outer(gy, gx).astype(np.float32)[..., None]  # [h, w, 1], rows are y
    bg = frame[r0:r1, c0:c1].astype(np.float32)
    frame[r0:r1, c0:c1] = np.rint(bg + blob * (rgb - bg)).astype(np.uint8)
