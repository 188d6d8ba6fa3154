"""A toy gymnasium env with a dict observation, registered on import as ``ToyDict-v0`` (for ``module:EnvId`` tests).

A point in the unit square moved by actions in a box that is NOT symmetric per dim (x in [-0.3, 0.3], y in
[-0.1, 0.2]); the observation is ``{"state": xy, "speed": |action|}``; frames are 30 x 40 (non-square, so the
collector must resize them) with one white pixel at the point.
"""

from __future__ import annotations

import gymnasium
import numpy as np

ENV_ID = "ToyDict-v0"
LOW = np.array([-0.3, -0.1], dtype=np.float32)
HIGH = np.array([0.3, 0.2], dtype=np.float32)


class ToyDictEnv(gymnasium.Env):
    """A point in [0, 1]^2 with a dict observation (``state``, ``speed``) and an ``rgb_array`` render."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012 (gymnasium API attribute)

    def __init__(self, *, render_mode: str | None = None, start_scale: float = 1.0) -> None:
        self.render_mode = render_mode
        self.start_scale = float(start_scale)
        self.observation_space = gymnasium.spaces.Dict(
            {
                "state": gymnasium.spaces.Box(0.0, 1.0, (2,), dtype=np.float64),
                "speed": gymnasium.spaces.Box(0.0, 1.0, (1,), dtype=np.float64),
            }
        )
        self.action_space = gymnasium.spaces.Box(LOW, HIGH, dtype=np.float32)
        self.p = np.zeros(2)

    def _obs(self, speed: float) -> dict[str, np.ndarray]:
        return {"state": self.p.copy(), "speed": np.array([speed])}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.p = self.np_random.uniform(0.0, self.start_scale, size=2)
        return self._obs(0.0), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        a = np.asarray(action, dtype=np.float64)
        self.p = np.clip(self.p + a, 0.0, 1.0)
        return self._obs(float(np.linalg.norm(a))), 0.0, False, False, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((30, 40, 3), np.uint8)
        frame[round(float(self.p[1]) * 29), round(float(self.p[0]) * 39)] = 255
        return frame


if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point=ToyDictEnv)
