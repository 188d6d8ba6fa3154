"""Pixel control environments (gymnasium; imported on use: ``import jepa_world`` does not import it).

- ``TwoRoomsEnv``: a dot in two rooms joined by a door, stop-at-first-contact collisions (PLDM / EB-JEPA geometry),
  registered as ``jepa_world/TwoRooms-v0``; with ``wall=False`` it is the empty point arena,
  ``jepa_world/PointArena-v0``; with a textured floor per episode and three dots that move on their own
  (``jepa_world.envs.clutter``) it is ``jepa_world/TwoRoomsClutter-v0``.
- ``DiscreteActions``: ``Discrete(K)`` indices -> rows of a ``[K, A]`` displacement table; Two-Rooms with the eight
  full-step headings plus a no-op (``two_rooms.discrete_action_table``) is ``jepa_world/TwoRoomsDiscrete-v0``.
- ``PixelObservationAdapter``: any ``render_mode="rgb_array"`` gymnasium env -> ``uint8 [S, S, 3]`` observations.
- Baseline / behaviour policies in ``jepa_world.envs.policies``; offline collection in ``jepa_world.envs.collect``.
- Any gymnasium env (stable-worldmodel's ``swm/PushT-v1`` / ``swm/TwoRoom-v1``, ``module:EnvId``) as a pixel source,
  and the env state that restores a row: ``jepa_world.envs.field_envs``; the field's behaviour policies (TwoRoom's
  noisy expert, Push-T's weak policy, random in the env's box): ``jepa_world.envs.field_policies``.

``make_env("two_rooms")`` / ``"point_arena"`` / ``"two_rooms_clutter"`` return the bare ``TwoRoomsEnv`` (so
helpers such as ``render_state`` and ``sample_eval_pair`` are directly reachable); ``make_env("two_rooms_discrete")``
returns it wrapped in ``DiscreteActions`` (the helpers are on ``env.unwrapped``); any other name is passed to
``gymnasium.make``.
The discrete alias lives in ``DISCRETE_ENV_ALIASES``, not ``ENV_ALIASES``: code that builds a bare ``TwoRoomsEnv``
for every ``ENV_ALIASES`` name (offline collection) must not silently drop the discrete wrapper.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from jepa_world.envs.field_envs import PACKAGE_PREFIXES, resolve_env_id
from jepa_world.envs.geometry import MAX_ACTION_NORM, discrete_action_table
from jepa_world.envs.policies import (
    DoorWaypointPolicy,
    NoOpPolicy,
    RandomPolicy,
    StraightLinePolicy,
    VonMisesRandomWalk,
    make_policy,
)
from jepa_world.envs.two_rooms import SUCCESS_THRESHOLD, TwoRoomsEnv
from jepa_world.envs.wrappers import DiscreteActions, PixelObservationAdapter, resize_frame

TWO_ROOMS_ID = "jepa_world/TwoRooms-v0"
POINT_ARENA_ID = "jepa_world/PointArena-v0"
TWO_ROOMS_CLUTTER_ID = "jepa_world/TwoRoomsClutter-v0"
TWO_ROOMS_DISCRETE_ID = "jepa_world/TwoRoomsDiscrete-v0"
ENV_ALIASES: dict[str, str] = {
    "two_rooms": TWO_ROOMS_ID,
    "point_arena": POINT_ARENA_ID,
    "two_rooms_clutter": TWO_ROOMS_CLUTTER_ID,
}
# The TwoRoomsEnv arguments of each alias (and of its gymnasium id).
ALIAS_KWARGS: dict[str, dict[str, Any]] = {
    "two_rooms": {"wall": True},
    "point_arena": {"wall": False},
    "two_rooms_clutter": {"wall": True, "texture": True, "distractors": 3},
}
DISCRETE_ENV_ALIASES: dict[str, str] = {"two_rooms_discrete": TWO_ROOMS_DISCRETE_ID}
_ENTRY_POINT = "jepa_world.envs.two_rooms:TwoRoomsEnv"
_DISCRETE_ENTRY_POINT = "jepa_world.envs:make_two_rooms_discrete"


def make_two_rooms_discrete(**kwargs: Any) -> DiscreteActions:
    """Two-Rooms (``wall=True``) with ``Discrete(9)`` actions: eight full-step headings, then a no-op.

    Args:
        **kwargs: ``TwoRoomsEnv`` constructor arguments except ``wall`` (``image_size``, ``max_steps``, ``seed``, ...).
    """
    if "wall" in kwargs:
        raise ValueError(f"two_rooms_discrete always has the wall; got wall={kwargs['wall']!r}")
    return DiscreteActions(TwoRoomsEnv(wall=True, **kwargs), discrete_action_table())


def register_envs() -> None:
    """Register the package's gymnasium ids; safe to call any number of times."""
    for alias, env_id in ENV_ALIASES.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=_ENTRY_POINT, kwargs=dict(ALIAS_KWARGS[alias]))
    if TWO_ROOMS_DISCRETE_ID not in gymnasium.registry:
        gymnasium.register(id=TWO_ROOMS_DISCRETE_ID, entry_point=_DISCRETE_ENTRY_POINT)


def make_env(name: str, **kwargs: Any) -> gymnasium.Env:
    """Create an environment by short name or gymnasium id.

    Args:
        name: ``"two_rooms"``, ``"point_arena"``, ``"two_rooms_clutter"`` (bare ``TwoRoomsEnv``),
            ``"two_rooms_discrete"`` (``TwoRoomsEnv`` in ``DiscreteActions``, no other wrapper) or any registered
            gymnasium id (through ``gymnasium.make``, with its default wrappers), including ``swm/...`` (imports
            stable-worldmodel) and ``module:EnvId`` (imports ``module``; `jepa_world.envs.field_envs`).
        **kwargs: Constructor arguments (``image_size``, ``max_steps``, ``seed``, ...).

    Raises:
        ValueError: For an unknown name, listing the known ones.
    """
    register_envs()
    if name in DISCRETE_ENV_ALIASES:
        return make_two_rooms_discrete(**kwargs)
    if name in ENV_ALIASES:
        return TwoRoomsEnv(**{**ALIAS_KWARGS[name], **kwargs})
    if name not in gymnasium.registry and (":" in name or name.startswith(tuple(PACKAGE_PREFIXES))):
        return gymnasium.make(resolve_env_id(name), **kwargs)  # after importing the package that registers the id
    if name in gymnasium.registry:
        return gymnasium.make(name, **kwargs)
    known = sorted(ENV_ALIASES) + sorted(DISCRETE_ENV_ALIASES) + sorted(gymnasium.registry)
    raise ValueError(f"unknown env name {name!r}; known: {known}")


register_envs()

__all__ = [
    "ALIAS_KWARGS",
    "DISCRETE_ENV_ALIASES",
    "ENV_ALIASES",
    "MAX_ACTION_NORM",
    "POINT_ARENA_ID",
    "SUCCESS_THRESHOLD",
    "TWO_ROOMS_CLUTTER_ID",
    "TWO_ROOMS_DISCRETE_ID",
    "TWO_ROOMS_ID",
    "DiscreteActions",
    "DoorWaypointPolicy",
    "NoOpPolicy",
    "PixelObservationAdapter",
    "RandomPolicy",
    "StraightLinePolicy",
    "TwoRoomsEnv",
    "VonMisesRandomWalk",
    "discrete_action_table",
    "make_env",
    "make_policy",
    "make_two_rooms_discrete",
    "register_envs",
    "resize_frame",
]
