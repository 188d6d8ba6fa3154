"""Pixel control environments (gymnasium; imported on use: ``import jepa_world`` does not import it).

- ``TwoRoomsEnv``: a dot in two rooms joined by a door, stop-at-first-contact collisions (PLDM / EB-JEPA geometry),
  registered as ``jepa_world/TwoRooms-v0``; with ``wall=False`` it is the empty point arena,
  ``jepa_world/PointArena-v0``.
- ``PixelObservationAdapter``: any ``render_mode="rgb_array"`` gymnasium env -> ``uint8 [S, S, 3]`` observations.
- Baseline / behaviour policies in ``jepa_world.envs.policies``; offline collection in ``jepa_world.envs.collect``.

``make_env("two_rooms")`` / ``make_env("point_arena")`` return the bare ``TwoRoomsEnv`` (so helpers such as
``render_state`` and ``sample_eval_pair`` are directly reachable); any other name is passed to ``gymnasium.make``.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from jepa_world.envs.policies import (
    DoorWaypointPolicy,
    NoOpPolicy,
    RandomPolicy,
    StraightLinePolicy,
    VonMisesRandomWalk,
    make_policy,
)
from jepa_world.envs.two_rooms import MAX_ACTION_NORM, SUCCESS_THRESHOLD, TwoRoomsEnv
from jepa_world.envs.wrappers import PixelObservationAdapter, resize_frame

TWO_ROOMS_ID = "jepa_world/TwoRooms-v0"
POINT_ARENA_ID = "jepa_world/PointArena-v0"
ENV_ALIASES: dict[str, str] = {"two_rooms": TWO_ROOMS_ID, "point_arena": POINT_ARENA_ID}
_ENTRY_POINT = "jepa_world.envs.two_rooms:TwoRoomsEnv"


def register_envs() -> None:
    """Register the package's gymnasium ids; safe to call any number of times."""
    for env_id, wall in ((TWO_ROOMS_ID, True), (POINT_ARENA_ID, False)):
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=_ENTRY_POINT, kwargs={"wall": wall})


def make_env(name: str, **kwargs: Any) -> gymnasium.Env:
    """Create an environment by short name or gymnasium id.

    Args:
        name: ``"two_rooms"``, ``"point_arena"`` (bare ``TwoRoomsEnv``) or any registered gymnasium id (through
            ``gymnasium.make``, with its default wrappers).
        **kwargs: Constructor arguments (``image_size``, ``max_steps``, ``seed``, ...).

    Raises:
        ValueError: For an unknown name, listing the known ones.
    """
    register_envs()
    if name in ENV_ALIASES:
        return TwoRoomsEnv(wall=name == "two_rooms", **kwargs)
    if name in gymnasium.registry:
        return gymnasium.make(name, **kwargs)
    known = sorted(ENV_ALIASES) + sorted(gymnasium.registry)
    raise ValueError(f"unknown env name {name!r}; known: {known}")


register_envs()

__all__ = [
    "ENV_ALIASES",
    "MAX_ACTION_NORM",
    "POINT_ARENA_ID",
    "SUCCESS_THRESHOLD",
    "TWO_ROOMS_ID",
    "DoorWaypointPolicy",
    "NoOpPolicy",
    "PixelObservationAdapter",
    "RandomPolicy",
    "StraightLinePolicy",
    "TwoRoomsEnv",
    "VonMisesRandomWalk",
    "make_env",
    "make_policy",
    "register_envs",
    "resize_frame",
]
