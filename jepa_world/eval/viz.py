"""Pictures people would rather look at than read: the energy landscape of a goal cost and an episode GIF.

Arena coordinates (Two-Rooms units, ``ARENA_SIZE`` wide) map to image pixels by the image's width.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from jepa_world.envs.clutter import Scene
from jepa_world.envs.geometry import ARENA_SIZE, FREE_MAX, FREE_MIN
from jepa_world.envs.two_rooms import TwoRoomsEnv
from jepa_world.eval.agents import encode_pixels, render_batch
from jepa_world.models.world_model import WorldModel
from jepa_world.planning import goal_distance


@torch.no_grad()
def energy_landscape(
    model: WorldModel, env: TwoRoomsEnv, goal: np.ndarray, *, resolution: int = 64, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Latent distance to the goal image for the dot rendered at every cell of a grid over the arena.

    Returns:
        ``(cost float [R, R], free bool [R, R])`` with rows = y and columns = x, cell centres at
        ``(i + 0.5) * ARENA_SIZE / R``; cells inside walls are marked not free (cost NaN).
    """
    c = (np.arange(resolution) + 0.5) * (ARENA_SIZE / resolution)
    xx, yy = np.meshgrid(c, c)  # rows are y
    pts = np.stack([xx, yy], axis=-1).reshape(-1, 2)
    free = np.asarray(env.is_free(pts)) & np.all((pts >= FREE_MIN) & (pts <= FREE_MAX), axis=-1)
    z_goal = encode_pixels(model, env.render_state(goal)[None], normalize=normalize)
    cost = np.full(len(pts), np.nan)
    idx = np.flatnonzero(free)
    for chunk in np.array_split(idx, max(1, math.ceil(len(idx) / 512))):
        z = encode_pixels(model, render_batch(env, pts[chunk]), normalize=normalize)
        cost[chunk] = goal_distance(z, z_goal.expand_as(z)).cpu().numpy()
    return cost.reshape(resolution, resolution), free.reshape(resolution, resolution)


def _colormap(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB on a dark-blue -> teal -> yellow ramp (viridis-like); NaN -> grey."""
    stops = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64)
    t = np.clip(np.nan_to_num(v, nan=0.0), 0.0, 1.0) * (len(stops) - 1)
    i = np.minimum(t.astype(int), len(stops) - 2)
    f = (t - i)[..., None]
    rgb = stops[i] * (1 - f) + stops[i + 1] * f
    rgb[np.isnan(v)] = 128
    return rgb.astype(np.uint8)


def save_landscape_png(
    path: str | Path,
    panels: list[tuple[str, np.ndarray]],
    *,
    start: np.ndarray | None = None,
    goal: np.ndarray | None = None,
    scale: int = 6,
) -> Path:
    """Side-by-side heatmaps (each normalised to its own range) with the start (white) and goal (red) marked.

    Args:
        path: PNG to write.
        panels: ``(title, values [R, R])`` pairs, rows = y; NaN cells are drawn grey (walls).
        start: Start position in arena units, or None.
        goal: Goal position in arena units, or None.
        scale: Pixels per grid cell.
    """
    from PIL import Image, ImageDraw

    images = []
    for title, values in panels:
        lo, hi = np.nanmin(values), np.nanmax(values)
        img = Image.fromarray(_colormap((values - lo) / max(hi - lo, 1e-12))).resize(
            (values.shape[1] * scale, values.shape[0] * scale), Image.NEAREST
        )
        draw = ImageDraw.Draw(img)
        px = img.width / ARENA_SIZE
        for pos, color in ((start, (255, 255, 255)), (goal, (255, 0, 0))):
            if pos is not None:
                x, y = float(pos[0]) * px, float(pos[1]) * px
                draw.ellipse([x - 5, y - 5, x + 5, y + 5], outline=color, width=2)
        draw.text((4, 4), f"{title} [{lo:.3g}, {hi:.3g}]", fill=(255, 255, 255))
        images.append(img)
    out = Image.new("RGB", (sum(i.width for i in images) + 8 * (len(images) - 1), images[0].height), (255, 255, 255))
    x = 0
    for img in images:
        out.paste(img, (x, 0))
        x += img.width + 8
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path


def save_episodes_gif(
    path: str | Path,
    env: TwoRoomsEnv,
    paths: np.ndarray,
    goals: np.ndarray,
    *,
    every: int = 2,
    scale: int = 2,
    fps: int = 15,
    scenes: list[list[Scene]] | None = None,
) -> Path:
    """Animated GIF, one row per episode: observation with the path so far drawn | goal image.

    Args:
        path: GIF to write.
        env: Renderer (``render_state`` only).
        paths: True states ``[N, T + 1, 2]`` of the episodes to show.
        goals: Goals ``[N, 2]``.
        every: Keep every ``every``-th step (the last step is always kept).
        scale: Upscaling of the 64 px frames.
        fps: Frames per second.
        scenes: Each episode's scene at every step ``[N][T + 1]`` (``EpisodeStats.scenes`` of a cluttered
            env), so the frames show what the agent saw; None: the env's current scene.
    """
    import imageio.v2 as imageio
    from PIL import Image, ImageDraw

    n, t1 = paths.shape[:2]
    size = env.image_size * scale
    px = size / ARENA_SIZE

    def scene(k: int, t: int) -> Scene | None:
        return None if scenes is None else scenes[k][t]

    goal_imgs = [Image.fromarray(env.render_state(g, scene(k, 0))).resize((size, size), Image.NEAREST)
                 for k, g in enumerate(goals)]  # fmt: skip
    for img in goal_imgs:
        ImageDraw.Draw(img).text((2, 2), "goal", fill=(255, 255, 255))
    steps = sorted(set(range(0, t1, every)) | {t1 - 1})
    frames = []
    for t in steps:
        canvas = Image.new("RGB", (2 * size + 4, n * (size + 4)), (40, 40, 40))
        for k in range(n):
            obs = Image.fromarray(env.render_state(paths[k, t], scene(k, t))).resize((size, size), Image.NEAREST)
            draw = ImageDraw.Draw(obs)
            pts = [(float(x) * px, float(y) * px) for x, y in paths[k, : t + 1]]
            if len(pts) > 1:
                draw.line(pts, fill=(0, 200, 255), width=1)
            gx, gy = float(goals[k][0]) * px, float(goals[k][1]) * px
            draw.ellipse([gx - 4, gy - 4, gx + 4, gy + 4], outline=(0, 255, 0), width=1)
            draw.text((2, 2), f"t={t}", fill=(255, 255, 255))
            canvas.paste(obs, (0, k * (size + 4)))
            canvas.paste(goal_imgs[k], (size + 4, k * (size + 4)))
        frames.append(np.asarray(canvas))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, duration=1.0 / fps, loop=0)
    return path


def save_plan_pictures(
    output: str | Path,
    *,
    model: WorldModel,
    env: TwoRoomsEnv,
    pairs: np.ndarray,
    paths: np.ndarray,
    scenes: list[list[Scene]] | None = None,
    gif_episodes: int = 4,
) -> dict[str, str]:
    """The pictures of a `jepa-world plan` run: ``episodes.gif`` and ``landscape.png`` in ``output``.

    Args:
        output: Folder to write to.
        model: The world model whose goal cost the landscape shows.
        env: The protocol's environment (renderer and walls).
        pairs: Start / goal pairs ``[E, 2, 2]``; the landscape is drawn for the first pair.
        paths: True states ``[E, T + 1, 2]`` of the agent shown in the GIF.
        scenes: That agent's scenes per episode and step (a cluttered env), or None.
        gif_episodes: Episodes shown in the GIF (0: no GIF).

    Returns:
        ``{"gif": path, "png": path}`` (``gif`` only when one was written).
    """
    out = Path(output)
    files = {}
    n = min(gif_episodes, len(pairs))
    if n > 0:
        gif = save_episodes_gif(out / "episodes.gif", env, paths[:n], pairs[:n, 1],
                                scenes=None if scenes is None else scenes[:n])  # fmt: skip
        files["gif"] = str(gif)
    cost, _ = energy_landscape(model, env, pairs[0, 1])
    c = (np.arange(cost.shape[0]) + 0.5) * (ARENA_SIZE / cost.shape[0])
    xx, yy = np.meshgrid(c, c)
    euclid = np.where(np.isnan(cost), np.nan, np.hypot(xx - pairs[0, 1, 0], yy - pairs[0, 1, 1]))
    png = save_landscape_png(
        out / "landscape.png",
        [("latent L1 to goal", cost), ("euclidean px to goal", euclid)],
        start=pairs[0, 0],
        goal=pairs[0, 1],
    )
    files["png"] = str(png)
    return files
