"""Any gymnasium env as a pixel source for collection, and the env state that restores a row of an episode.

Env ids (``make_field_env``):

- any id in ``gymnasium.registry``;
- ids that a package registers on import: ``swm/...`` imports ``stable_worldmodel`` (stable-worldmodel, MIT) on
  demand, with an error that says what to pip install when it is missing;
- ``module:EnvId``: ``module`` is imported first (it registers ``EnvId``), then ``EnvId`` is made.

Frames are the env's ``render()`` (``render_mode="rgb_array"``) at the size asked for: an env whose constructor takes
``resolution`` (swm Push-T) renders at that size directly; any other frame is resized with
``wrappers.resize_frame``. ``SDL_VIDEODRIVER=dummy`` is set (unless already set) before an env's package is imported,
so pygame renders headless.

Env state (``EnvStateSpec``, ``env_state_spec``, ``read_env_state``, ``restore_env_state``): for the envs in
``ENV_STATE_SPECS`` a float64 vector per step from which ``restore_env_state`` puts the env back into that row
exactly (the re-rendered frame equals the stored one). It is stored next to the frames as ``env_states`` (see
`jepa_world.data.episodes`) for evaluation only; a pixel-only model never reads it. Its first ``goal_dims`` entries
are the state that the env's own success check compares against a goal, so the goal of a row is
``env_states[row + k, :goal_dims]``.

- ``swm/PushT-v1``: ``[agent x, agent y, block x, block y, block angle, agent vx, agent vy]`` (= ``obs["state"]``,
  swm's ``state``; ``goal_dims`` 7) followed by ``[block vx, block vy, block angular velocity]`` (not in swm's state:
  without them a restored row is exact in its frame but not in the block's next motion). Success: ``terminated`` of
  ``step`` (``PushT.eval_state(goal_state, state)``: agent and block positions within 20 units of the goal's and
  block angle within pi/9).
- ``swm/TwoRoom-v1``: ``[agent x, agent y]`` at 224 px scale (= ``info["state"]``; ``goal_dims`` 2); the goal is set
  with the reset option ``target_state``. Success: ``terminated`` of ``step`` (distance to the target < 16 px at
  224; ``info["distance_to_target"]``).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import gymnasium
import numpy as np
import yaml

from jepa_world.envs.wrappers import resize_frame

SWM_PACKAGES = "stable-worldmodel==0.1.1 imageio pygame pymunk shapely opencv-python-headless"
# Id prefixes that a package registers on import: prefix -> (module to import, what to pip install).
PACKAGE_PREFIXES: dict[str, tuple[str, str]] = {
    "swm/": ("stable_worldmodel", f'"jepa_world[field]" (or: pip install {SWM_PACKAGES})'),
}


# ---------------------------------------------------------------------------------------------------------- ids
def _import_for_env(module: str, env_name: str, install: str | None) -> ModuleType:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless pygame, before any env package imports it
    try:
        return importlib.import_module(module)
    except ImportError as err:
        what = f"pip install {install}" if install else f"install the package that provides {module!r}"
        raise ImportError(
            f"env {env_name!r} needs the module {module!r}, which cannot be imported ({type(err).__name__}: {err}); "
            f"{what}"
        ) from err


def resolve_env_id(name: str) -> str:
    """The gymnasium id of ``name``, after importing the package that registers it.

    Args:
        name: A registered id, an id with a known package prefix (``swm/...``) or ``module:EnvId``.

    Raises:
        ImportError: The package of the id cannot be imported (the message says what to pip install).
        ValueError: The id is not registered, even after the import.
    """
    env_id = name
    if ":" in name:
        module, env_id = name.split(":", 1)
        _import_for_env(module, name, None)
    else:
        for prefix, (module, install) in PACKAGE_PREFIXES.items():
            if name.startswith(prefix):
                _import_for_env(module, name, install)
    if env_id not in gymnasium.registry:
        close = sorted(k for k in gymnasium.registry if k.split("/")[0] == env_id.split("/")[0] and "/" in env_id)
        hint = f"; ids with its prefix: {close}" if close else ""
        raise ValueError(f"unknown env {name!r}: {env_id!r} is not a registered gymnasium id{hint}")
    return env_id


def _entry_parameters(env_id: str) -> set[str]:
    """Names of the constructor parameters of a registered env (empty when they cannot be read)."""
    entry = gymnasium.spec(env_id).entry_point
    try:
        creator = gymnasium.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
        return set(inspect.signature(creator).parameters)
    except (ImportError, AttributeError, TypeError, ValueError):
        return set()


def make_field_env(name: str, *, image_size: int, env_kwargs: dict[str, Any] | None = None) -> gymnasium.Env:
    """A gymnasium env that renders ``rgb_array`` frames (at ``image_size`` when its constructor takes ``resolution``).

    Args:
        name: A gymnasium id, ``swm/...`` or ``module:EnvId`` (see ``resolve_env_id``).
        image_size: Frame side in pixels (passed as ``resolution`` when the env takes it and it is not in
            ``env_kwargs``; other frames are resized by ``render_frame``).
        env_kwargs: Constructor arguments.

    The env checker of ``gymnasium.make`` is off (collection is not the place to lint an env; swm TwoRoom returns
    torch tensors, which it warns about at every step).
    """
    env_id = resolve_env_id(name)
    kwargs = dict(env_kwargs or {})
    kwargs.setdefault("render_mode", "rgb_array")
    if "resolution" in _entry_parameters(env_id):
        kwargs.setdefault("resolution", image_size)
    return gymnasium.make(env_id, disable_env_checker=True, **kwargs)


def render_frame(env: gymnasium.Env, image_size: int) -> np.ndarray:
    """The env's current frame as ``uint8 [image_size, image_size, 3]``."""
    frame = env.render()
    if frame is None:
        raise RuntimeError("env.render() returned None; make the env with render_mode='rgb_array'")
    if not isinstance(frame, np.ndarray):
        frame = np.asarray(frame.cpu() if hasattr(frame, "cpu") else frame)
    return resize_frame(frame, image_size)


def renders_with_torch(env: gymnasium.Env) -> bool:
    """Whether the env's module uses torch (swm TwoRoom renders and steps with it)."""
    module = sys.modules.get(type(env.unwrapped).__module__)
    return module is not None and any(getattr(v, "__name__", None) == "torch" for v in vars(module).values())


@contextlib.contextmanager
def torch_single_thread(active: bool = True) -> Iterator[None]:
    """``torch.set_num_threads(1)`` inside the block (restored after); a no-op when not ``active``.

    Envs that render with torch are many times slower with several threads on small tensors and a busy machine.
    """
    if not active:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parse_key_values(items: Sequence[str] | None, *, what: str = "--env-kwargs") -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}`` with values read as YAML scalars (``3`` int, ``0.5`` float, ``true``
    bool, ``null`` None, ``[1, 2]`` list, ``1e-3`` float too, anything else a string).

    Raises:
        ValueError: An item without ``=`` or with an empty key.
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what}: expected key=value, got {item!r}")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        if isinstance(parsed, str) and parsed:
            with contextlib.suppress(ValueError):
                parsed = float(parsed)  # YAML 1.1 reads 1e-3 as text
        out[key.strip()] = parsed
    return out


# ---------------------------------------------------------------------------------------------------------- state
def state_from_observation(obs: Any, info: dict[str, Any], state_key: str | None) -> np.ndarray | None:
    """The low-dimensional state stored as ``states`` for a raw observation.

    A dict observation gives ``obs[state_key]`` (None without a key); any other observation gives ``info["state"]``
    when the env reports one, else the flattened observation.
    """
    if isinstance(obs, dict):
        if state_key is None:
            return None
        if state_key not in obs:
            raise KeyError(f"state_key={state_key!r} is not a key of the observation; keys: {sorted(obs)}")
        value = obs[state_key]
    else:
        value = info.get("state", obs)
    if hasattr(value, "cpu"):
        value = value.cpu()
    return np.asarray(value, dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class EnvStateSpec:
    """How to read and restore the exact state of one env.

    Attributes:
        names: Name of every entry of the state vector.
        goal_dims: The first ``goal_dims`` entries are the goal state that the env's success check compares.
        reset_option: ``reset(options=...)`` key that sets the state.
        goal_option: ``reset(options=...)`` key that sets the goal state.
        success: Where the env reports success, in words.
        read: ``read(env, obs, info) -> float64 [D]``.
        set_extra: ``set_extra(unwrapped env, full state vector) -> (obs, info)``, called after the reset to set what
            the reset option does not, returning the observation and info of the restored row (None: nothing).
    """

    names: tuple[str, ...]
    goal_dims: int
    reset_option: str
    goal_option: str
    success: str
    read: Callable[[gymnasium.Env, Any, dict[str, Any]], np.ndarray]
    set_extra: Callable[[Any, np.ndarray], tuple[Any, dict[str, Any]]] | None = None

    def metadata(self, env_id: str) -> dict[str, Any]:
        """The JSON record of this spec for an episode folder's metadata."""
        return {"env_id": env_id, "names": list(self.names), "goal_dims": self.goal_dims,
                "reset_option": self.reset_option, "goal_option": self.goal_option, "success": self.success,
                "restore": "jepa_world.envs.field_envs.restore_env_state"}  # fmt: skip


def _pusht_read(env: gymnasium.Env, obs: Any, info: dict[str, Any]) -> np.ndarray:
    block = env.unwrapped.block
    extra = [block.velocity.x, block.velocity.y, block.angular_velocity]
    return np.concatenate([np.asarray(obs["state"], dtype=np.float64), np.asarray(extra, dtype=np.float64)])


def _pusht_set(base: Any, state: np.ndarray) -> tuple[Any, dict[str, Any]]:
    # reset's own restore moves the bodies by one physics step (dt) after placing them; place them again exactly.
    base.agent.position = (float(state[0]), float(state[1]))
    base.agent.velocity = (float(state[5]), float(state[6]))
    base.block.position = (float(state[2]), float(state[3]))
    base.block.angle = float(state[4])
    base.block.velocity = (float(state[7]), float(state[8]))
    base.block.angular_velocity = float(state[9])
    for body in (base.agent, base.block):  # the shapes' cached world vertices (what is drawn) follow the bodies
        base.space.reindex_shapes_for_body(body)
    s = base._get_obs()
    return {"proprio": np.concatenate([s[:2], s[-2:]]), "state": s}, base._get_info()


def _tworoom_read(env: gymnasium.Env, obs: Any, info: dict[str, Any]) -> np.ndarray:
    return np.asarray(info["state"], dtype=np.float64).reshape(-1)


ENV_STATE_SPECS: dict[str, EnvStateSpec] = {
    "swm/PushT-v1": EnvStateSpec(
        names=(
            "agent_x",
            "agent_y",
            "block_x",
            "block_y",
            "block_angle",
            "agent_vx",
            "agent_vy",
            "block_vx",
            "block_vy",
            "block_angular_velocity",
        ),
        goal_dims=7,
        reset_option="state",
        goal_option="goal_state",
        success="terminated (PushT.eval_state: agent and block xy within 20 of the goal's, block angle within pi/9)",
        read=_pusht_read,
        set_extra=_pusht_set,
    ),
    "swm/TwoRoom-v1": EnvStateSpec(
        names=("agent_x", "agent_y"),
        goal_dims=2,
        reset_option="state",
        goal_option="target_state",
        success="terminated (distance to the target < 16 px at 224; info['distance_to_target'])",
        read=_tworoom_read,
    ),
}


def env_state_spec(env_id: str) -> EnvStateSpec | None:
    """The ``EnvStateSpec`` of a gymnasium id (``module:EnvId`` and ``swm/...`` forms accepted), or None."""
    return ENV_STATE_SPECS.get(env_id.split(":", 1)[-1])


def read_env_state(env: gymnasium.Env, env_id: str, obs: Any, info: dict[str, Any]) -> np.ndarray | None:
    """The env's exact state ``float64 [D]`` after a reset or step that returned ``obs, info`` (None: no spec)."""
    spec = env_state_spec(env_id)
    return None if spec is None else spec.read(env, obs, info)


def restore_env_state(
    env: gymnasium.Env,
    env_id: str,
    state: np.ndarray,
    *,
    goal: np.ndarray | None = None,
    seed: int | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Reset ``env`` into a stored row: ``state`` from ``env_states``, ``goal`` the goal row (its first ``goal_dims``
    entries are used; None keeps the goal the reset draws).

    Returns:
        ``(obs, info)`` of the restored row (the observation recomputed after the restore).

    Raises:
        ValueError: ``env_id`` has no ``EnvStateSpec`` or ``state`` has the wrong size.
    """
    spec = env_state_spec(env_id)
    if spec is None:
        raise ValueError(f"no env-state spec for {env_id!r}; known: {sorted(ENV_STATE_SPECS)}")
    state = np.asarray(state, dtype=np.float64).reshape(-1)
    if state.shape[0] != len(spec.names):
        raise ValueError(f"{env_id}: env state must have {len(spec.names)} entries {spec.names}, got {state.shape[0]}")
    options: dict[str, Any] = {spec.reset_option: state[: spec.goal_dims].copy()}
    if goal is not None:
        options[spec.goal_option] = np.asarray(goal, dtype=np.float64).reshape(-1)[: spec.goal_dims].copy()
    obs, info = env.reset(seed=seed, options=options)
    if spec.set_extra is not None:
        obs, info = spec.set_extra(env.unwrapped, state)
    return obs, info
