"""Wrappers that turn gymnasium environments into pixel environments for world-model data, or discrete-action ones.

``PixelObservationAdapter`` replaces any env's observation by its rendered frame, resized to a square
``uint8 [image_size, image_size, 3]`` with PIL, and keeps the original observation in ``info["proprio"]``
(flattened float32 ``[D]`` when the original observation space is a Box, unchanged otherwise). The wrapped env
must be created with ``render_mode="rgb_array"``.

``DiscreteActions`` turns a continuous ``Box([A])`` action space into ``Discrete(K)``: index ``k`` plays row ``k`` of
a fixed ``[K, A]`` table (e.g. the eight headings plus a no-op of ``two_rooms.discrete_action_table``), for discrete
planners such as tree search.
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


class DiscreteActions(gymnasium.ActionWrapper):
    """Discrete actions over a continuous env: index ``k`` in ``Discrete(K)`` plays row ``k`` of ``headings``.

    Args:
        env: An env whose action space is a 1-D ``Box`` of shape ``[A]``.
        headings: Action table ``[K, A]`` (K >= 1), every row finite and inside the Box bounds; stored as a read-only
            copy in the Box's dtype (attribute ``headings``).

    ``step(k)`` raises ValueError for an index outside ``[0, K)`` (or a non-integer); ``unwrapped`` is the wrapped
    env, so its helpers (e.g. ``render_state``) stay reachable.
    """

    def __init__(self, env: gymnasium.Env, headings: np.ndarray) -> None:
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"DiscreteActions needs an env with a 1-D Box action space [A], got {space}")
        table = np.array(headings, dtype=space.dtype)
        a = space.shape[0]
        if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] != a:
            raise ValueError(
                f"headings must have shape [K, {a}] with K >= 1 (A = {a} from the action space {space}), "
                f"got shape {np.shape(headings)}"
            )
        if not np.all(np.isfinite(table)):
            raise ValueError(f"headings must be finite, got {table.tolist()}")
        outside = np.flatnonzero(np.any((table < space.low) | (table > space.high), axis=1))
        if outside.size:
            raise ValueError(
                f"headings rows {outside.tolist()} lie outside the action space bounds "
                f"[{space.low.tolist()}, {space.high.tolist()}]: {table[outside].tolist()}"
            )
        table.setflags(write=False)
        self.headings = table  # [K, A]
        self.action_space = spaces.Discrete(table.shape[0])

    def action(self, action: Any) -> np.ndarray:
        """Row ``action`` of ``headings`` (a copy), after checking it is an integer index in ``[0, K)``."""
        k = self.headings.shape[0]
        idx = np.asarray(action)
        if idx.shape != () or idx.dtype == np.bool_ or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"action must be an integer index in [0, {k}), got {action!r}")
        i = int(idx)
        if not 0 <= i < k:
            raise ValueError(f"action index {i} is out of range [0, {k})")
        return self.headings[i].copy()
