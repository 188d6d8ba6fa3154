"""Wrappers that turn gymnasium environments into pixel environments for world-model data.

``PixelObservationAdapter`` replaces any env's observation by its rendered frame, resized to a square
``uint8 [image_size, image_size, 3]`` with PIL, and keeps the original observation in ``info["proprio"]``
(flattened float32 ``[D]`` when the original observation space is a Box, unchanged otherwise). The wrapped env
must be created with ``render_mode="rgb_array"``.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from PIL import Image


def resize_frame(frame: np.ndarray, image_size: int) -> np.ndarray:
    """Resize an RGB frame ``[H, W, 3]`` (or grey ``[H, W]``) to ``uint8 [image_size, image_size, 3]``.

    Non-square frames are stretched (no cropping); bilinear resampling (antialiased by PIL when shrinking).
    """
    x = np.asarray(frame)
    if x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    if x.ndim != 3 or x.shape[-1] not in (3, 4):
        raise ValueError(f"frame must be [H, W, 3] (or RGBA / grey), got shape {x.shape}")
    x = x[..., :3]
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating) and x.size and float(np.nanmax(x)) <= 1.0:
            x = x * 255.0  # float frames in [0, 1]
        x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if x.shape[0] == image_size and x.shape[1] == image_size:
        return np.ascontiguousarray(x)
    img = Image.fromarray(np.ascontiguousarray(x))
    return np.asarray(img.resize((image_size, image_size), Image.Resampling.BILINEAR), dtype=np.uint8)


class PixelObservationAdapter(gymnasium.Wrapper):
    """Observation = the env's ``render()`` frame resized to ``uint8 [image_size, image_size, 3]``.

    Args:
        env: A gymnasium env created with ``render_mode="rgb_array"``.
        image_size: Side of the output frames in pixels.

    The original observation moves to ``info["proprio"]`` (flattened float32 if the original space is a Box).
    """

    def __init__(self, env: gymnasium.Env, *, image_size: int = 64) -> None:
        super().__init__(env)
        if getattr(env, "render_mode", None) != "rgb_array":
            raise ValueError(
                f"PixelObservationAdapter needs an env created with render_mode='rgb_array', "
                f"got render_mode={getattr(env, 'render_mode', None)!r}"
            )
        if not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.image_size = image_size
        self._proprio_is_box = isinstance(env.observation_space, spaces.Box)
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8)

    def _proprio(self, obs: Any) -> Any:
        if self._proprio_is_box:
            return np.asarray(obs, dtype=np.float32).reshape(-1)
        return obs

    def _frame(self) -> np.ndarray:
        frame = self.env.render()
        if frame is None:
            raise RuntimeError("env.render() returned None; create the env with render_mode='rgb_array'")
        return resize_frame(frame, self.image_size)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info["proprio"] = self._proprio(obs)
        return self._frame(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["proprio"] = self._proprio(obs)
        return self._frame(), reward, terminated, truncated, info
