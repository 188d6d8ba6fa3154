"""Offline collection: roll a behaviour policy out in a pixel environment and write episodes in the documented format.

The format (`jepa_world.data.episodes`): one ``episode_{i:06d}.npz`` per episode with ``frames`` / ``actions`` /
``states``, plus ``metadata.json``; or, with ``format="lerobot"``, a LeRobot v3 dataset
(`jepa_world.data.lerobot_writer`; the collection's metadata in ``meta/jepa_world.json``). Two-Rooms / point-arena
envs are built directly; any other gymnasium id (``swm/...`` and ``module:EnvId`` included,
`jepa_world.envs.field_envs`) is stepped on its raw observations and its ``render()`` frames, with the behaviour
policies of `jepa_world.envs.field_policies`. Episode ``i`` draws everything from
``numpy.random.default_rng((seed, i))``.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from jepa_world.atomic import atomic_write_text
from jepa_world.data.episodes import (
    EPISODE_GLOB,
    FORMAT_VERSION,
    METADATA_FILE,
    episode_filename,
    write_episode,
    write_metadata,
)
from jepa_world.data.lerobot_writer import LeRobotWriter
from jepa_world.data.npz import read_npz_header
from jepa_world.envs import ALIAS_KWARGS, DISCRETE_ENV_ALIASES, ENV_ALIASES
from jepa_world.envs.field_envs import (
    env_state_spec,
    make_field_env,
    read_env_state,
    render_frame,
    renders_with_torch,
    resolve_env_id,
    state_from_observation,
    torch_single_thread,
)
from jepa_world.envs.field_policies import DEFAULT_FIELD_POLICY, FIELD_POLICIES, make_field_policy
from jepa_world.envs.geometry import MAX_ACTION_NORM, clip_action_norm
from jepa_world.envs.policies import POLICIES, make_policy
from jepa_world.envs.two_rooms import TwoRoomsEnv

COLLECT_RECORD = ".collect.json"  # the settings of a collection in progress (a rerun with the same ones resumes)
FORMATS = ("episodes", "lerobot")  # ours, LeRobot v3


def _two_rooms_alias(env_name: str) -> str | None:
    """The Two-Rooms alias of ``env_name`` (an alias or its gymnasium id), or None."""
    alias = {env_id: name for name, env_id in ENV_ALIASES.items()}.get(env_name, env_name)
    return alias if alias in ENV_ALIASES else None


def default_policy(env_name: str) -> str:
    """The behaviour policy ``collect`` uses for ``env_name`` when none is given."""
    if _two_rooms_alias(env_name) is not None:
        return "von_mises"
    return DEFAULT_FIELD_POLICY.get(env_name.split(":", 1)[-1], "random")


def policy_names(env_name: str) -> list[str]:
    """The policy names valid for ``env_name`` (besides a callable)."""
    return sorted(POLICIES) if _two_rooms_alias(env_name) is not None else sorted(FIELD_POLICIES)


def _one_collection_per_folder(collect: Callable[..., Path]) -> Callable[..., Path]:
    """Run `collect` holding an exclusive lock on its output folder itself (no file is added to it): a second
    collection into the folder is refused. A folder this call created is removed again if it fails leaving it empty."""

    @functools.wraps(collect)
    def locked(*, output_dir: str | Path, **kwargs) -> Path:
        out = Path(output_dir)
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_RDONLY)
        try:
            try:
                import fcntl  # POSIX; elsewhere collections are not locked

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except ImportError:
                pass
            except BlockingIOError:
                raise RuntimeError(f"output_dir={str(out)!r} (--output on the command line) is in use by another "
                                   "collection; wait for it to finish, or choose another folder") from None  # fmt: skip
            try:
                return collect(output_dir=out, **kwargs)
            except BaseException:
                if created and not any(out.iterdir()):
                    out.rmdir()
                raise
        finally:
            os.close(fd)  # releases the lock

    return locked


@_one_collection_per_folder
def collect_episodes(
    *,
    env_name: str,
    num_episodes: int,
    steps: int,
    output_dir: str | Path,
    policy: str | Callable[..., np.ndarray] | None = "von_mises",
    seed: int = 0,
    image_size: int = 64,
    progress: bool = True,
    policy_kwargs: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    compress: bool = True,
    overwrite: bool = False,
    format: str = "episodes",
    fps: int = 10,
    state_key: str | None = None,
) -> Path:
    """Roll out a behaviour policy and write episodes plus ``metadata.json`` to ``output_dir``.

    Episode ``i`` draws everything (reset seed, then policy noise) from ``numpy.random.default_rng((seed, i))``,
    so a dataset is reproducible from ``seed`` and each episode independently of ``num_episodes``.

    Args:
        env_name: ``"two_rooms"``, ``"point_arena"``, ``"two_rooms_clutter"`` or a gymnasium id: any registered id,
            ``swm/...`` (imports stable-worldmodel) or ``module:EnvId`` (imports ``module`` first); frames are its
            ``render()`` at ``image_size`` (`jepa_world.envs.field_envs.make_field_env`).
        num_episodes: Number of episodes.
        steps: Actions per episode T (frames T+1). An env that ends earlier gives a shorter episode.
        output_dir: Target directory (created).
        policy: For Two-Rooms envs a name of ``jepa_world.envs.policies.POLICIES`` or a callable
            ``policy(state, goal, rng) -> action`` (``state`` the true xy, ``goal`` None); for any other env a name of
            ``jepa_world.envs.field_policies.FIELD_POLICIES`` (``random``, ``tworoom_expert``, ``pusht_weak``) or a
            callable ``policy(obs, info, rng) -> action`` on the env's raw observation and info. None: the env's
            default (``default_policy``). An object with ``reset()`` is reset every episode.
        seed: Base seed.
        image_size: Frame side in pixels.
        progress: Show a tqdm progress bar.
        policy_kwargs: Constructor arguments for a named policy (e.g. ``{"kappa": 5.0}``).
        env_kwargs: Extra environment constructor arguments.
        compress: Compressed episode files (see the module docstring).
        overwrite: Replace episodes already in ``output_dir`` instead of refusing.
        format: ``"episodes"`` (ours) or ``"lerobot"`` (a LeRobot v3 dataset; video frames, see
            `jepa_world.data.lerobot_writer`; no resumption: an interrupted one is replaced with ``overwrite``).
        fps: Frame rate recorded in a LeRobot dataset.
        state_key: Which key of a dict observation is stored as ``states`` (None: ``"state"`` when the observation
            has it, else no states; ``""``: no states). Other observations store ``info["state"]`` when the env
            reports it, else the flattened observation.

    Returns:
        ``output_dir`` as a Path.

    Nothing is lost on a crash or a full disk: every episode file and the metadata are written atomically, the
    metadata last. Rerunning the same collection into a folder without ``metadata.json`` (an interrupted one, recorded
    in ``.collect.json``) resumes it: episodes already there are kept (they are a function of ``(seed, i)``), missing
    or unreadable ones are written, and the unreadable ones are named.

    Stored actions are those the environment applied: for Two-Rooms after the rescale to norm <= ``MAX_ACTION_NORM``,
    for other Box action spaces clipped to the env's own bounds. Envs with an ``EnvStateSpec``
    (`jepa_world.envs.field_envs`: swm Push-T and TwoRoom) also store ``env_states`` (our episode format only), and
    the metadata records ``env_id``, ``env_kwargs`` and ``env_state``. Envs that render with torch step with one
    torch thread (restored after).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes (--episodes) must be >= 1, got {num_episodes}")
    if steps < 1:
        raise ValueError(f"steps (--steps) must be >= 1, got {steps}")
    if format not in FORMATS:
        raise ValueError(f"format={format!r}; expected one of {', '.join(FORMATS)}")
    out = Path(output_dir)
    env_kwargs = dict(env_kwargs or {})
    policy_kwargs = dict(policy_kwargs or {})
    if policy is None:
        policy = default_policy(env_name)
    two_rooms = _two_rooms_alias(env_name) is not None
    if isinstance(policy, str) and policy not in policy_names(env_name):
        if two_rooms or policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r} for env {env_name!r}; known: {policy_names(env_name)} "
                             "(or a callable, in Python)")  # fmt: skip
        raise ValueError(f"policy={policy!r} is only defined for Two-Rooms envs; for {env_name!r} use one of "
                         f"{policy_names(env_name)} or a callable")  # fmt: skip
    params = dict(env_name=env_name, num_episodes=num_episodes, steps=steps, seed=seed, image_size=image_size,
                  compress=compress, env_kwargs=env_kwargs, policy_kwargs=policy_kwargs,
                  policy=policy if isinstance(policy, str) else None)  # fmt: skip
    if two_rooms:
        env_id = ENV_ALIASES[_two_rooms_alias(env_name)]
        env = TwoRoomsEnv(image_size=image_size, max_steps=max(steps, 1),
                          **{**ALIAS_KWARGS[_two_rooms_alias(env_name)], **env_kwargs})  # fmt: skip
    else:
        env_id = resolve_env_id(DISCRETE_ENV_ALIASES.get(env_name, env_name))
        env = make_field_env(DISCRETE_ENV_ALIASES.get(env_name, env_name), image_size=image_size,
                             env_kwargs=env_kwargs)  # fmt: skip
    try:
        if callable(policy):
            policy_fn, policy_name = policy, getattr(policy, "__qualname__", type(policy).__qualname__)
        elif two_rooms:
            policy_fn, policy_name = make_policy(policy, **policy_kwargs), policy
        else:
            policy_fn, policy_name = make_field_policy(policy, env, **policy_kwargs), policy
        spec = None if two_rooms else env_state_spec(env_id)
        writer = None
        if format == "lerobot":
            names = {"action_names": ["dx", "dy"], "state_names": ["x", "y"]} if two_rooms else {}
            task = f"{env_name}: {policy_name} behaviour policy"
            writer = LeRobotWriter(root=out, fps=fps, task=task, overwrite=overwrite, **names)

        lengths: list[int] = []
        action_dim = state_dim = None
        used_key = None if two_rooms else _resolve_state_key(env, state_key)
        if used_key is not None or state_key is not None:
            params["state_key"] = used_key
        keep = _resumable(out, params, overwrite=overwrite) if format == "episodes" else {}
        with torch_single_thread(renders_with_torch(env)):
            for i in tqdm(range(num_episodes), desc=f"collect {env_name}", disable=not progress):
                if i in keep:  # resumed: this episode was written by the interrupted run
                    lengths.append(keep[i]["actions"].shape[0])
                    action_dim = keep[i]["actions"].shape[1]
                    state_dim = keep[i]["states"].shape[1] if "states" in keep[i] else None
                    continue
                rng = np.random.default_rng((seed, i))
                if hasattr(policy_fn, "reset"):
                    policy_fn.reset()
                if two_rooms:
                    episode = _rollout_two_rooms(env, policy_fn, rng, steps)
                else:
                    episode = _rollout(env, env_id, policy_fn, rng, steps, image_size, used_key)
                if writer is not None:
                    episode.pop("env_states", None)
                    writer.add_episode(**episode)
                else:
                    write_episode(out / episode_filename(i), **episode, compress=compress)
                lengths.append(len(episode["actions"]))
                action_dim = episode["actions"].shape[1]
                state_dim = None if episode["states"] is None else episode["states"].shape[1]
    finally:
        env.close()
    metadata = {
        "env_name": env_name,
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "image_size": image_size,
        "action_dim": action_dim,
        "state_dim": state_dim,
        "state_key": used_key,
        "env_state": None if spec is None or format != "episodes" else spec.metadata(env_id),
        "num_episodes": num_episodes,
        "steps": steps,
        "episode_lengths": lengths,
        "policy": policy_name,
        "policy_kwargs": policy_kwargs,
        "seed": seed,
        "actions_note": f"actions as applied by the env (Two-Rooms: rescaled to norm <= {MAX_ACTION_NORM}; other "
        "Box spaces: clipped to the env's bounds)",
    }
    if writer is not None:
        writer.close(extra_metadata={"format_version": FORMAT_VERSION, **metadata, "fps": fps})
    else:
        write_metadata(out, metadata)
    return out


def _resolve_state_key(env: Any, state_key: str | None) -> str | None:
    """The dict-observation key stored as ``states`` (None: not a dict observation, or no states)."""
    space = env.observation_space
    keys = list(space.spaces) if hasattr(space, "spaces") and isinstance(space.spaces, dict) else None
    if keys is None or state_key == "":
        return None
    if state_key is None:
        return "state" if "state" in keys else None
    if state_key not in keys:
        raise ValueError(f"state_key={state_key!r} is not a key of the observation of this env; keys: {sorted(keys)}")
    return state_key


def _rollout_two_rooms(env: TwoRoomsEnv, policy_fn: Callable, rng: np.random.Generator, steps: int) -> dict:
    """One Two-Rooms episode: frames are the observations, states the true xy, policies ``(state, goal, rng)``."""
    obs, info = env.reset(seed=int(rng.integers(2**31 - 1)), options={"goal": None})
    frames, actions, states = [np.asarray(obs)], [], [np.asarray(info["state"], dtype=np.float32).reshape(-1)]
    for _ in range(steps):
        raw = policy_fn(states[-1], None, rng)
        a = clip_action_norm(np.asarray(raw, dtype=np.float64).reshape(-1))
        obs, _, terminated, truncated, info = env.step(a.reshape(np.shape(raw)).astype(np.float32))
        frames.append(np.asarray(obs))
        actions.append(a.astype(np.float32))
        states.append(np.asarray(info["state"], dtype=np.float32).reshape(-1))
        if terminated or truncated:
            break
    return {"frames": np.stack(frames), "actions": np.stack(actions), "states": np.stack(states)}


def _rollout(
    env: Any,
    env_id: str,
    policy_fn: Callable,
    rng: np.random.Generator,
    steps: int,
    image_size: int,
    state_key: str | None,
) -> dict:
    """One episode of any env: rendered frames, applied actions, states and (with a spec) env states."""
    obs, info = env.reset(seed=int(rng.integers(2**31 - 1)))
    dict_obs = isinstance(obs, dict)
    space = env.action_space
    box = getattr(space, "low", None) is not None

    def state_of(o: Any, inf: dict) -> np.ndarray | None:
        return state_from_observation(o, inf, state_key) if dict_obs else _state_from_info(o, inf)

    frames, actions = [render_frame(env, image_size)], []
    states, env_states = [state_of(obs, info)], [read_env_state(env, env_id, obs, info)]
    for _ in range(steps):
        raw = policy_fn(obs, info, rng)
        raw = raw.cpu() if hasattr(raw, "cpu") else raw
        if box:  # the env's own bounds
            raw = np.clip(np.asarray(raw, dtype=np.float64).reshape(space.shape), space.low, space.high)
            applied = raw.astype(space.dtype)
        else:
            applied = raw
        obs, _, terminated, truncated, info = env.step(applied)
        frames.append(render_frame(env, image_size))
        actions.append(np.asarray(applied, dtype=np.float32).reshape(-1))
        states.append(state_of(obs, info))
        env_states.append(read_env_state(env, env_id, obs, info))
        if terminated or truncated:
            break
    episode = {"frames": np.stack(frames), "actions": np.stack(actions)}
    episode["states"] = np.stack(states) if all(s is not None for s in states) else None
    if all(e is not None for e in env_states):
        episode["env_states"] = np.stack(env_states)
    return episode


def _state_from_info(obs: Any, info: dict[str, Any]) -> np.ndarray | None:
    """``info["state"]`` when the env reports it, else the flattened (array) observation."""
    value = info.get("state", obs)
    if hasattr(value, "cpu"):
        value = value.cpu()
    value = np.asarray(value)
    return value.astype(np.float32).reshape(-1) if np.issubdtype(value.dtype, np.number) else None


def _resumable(out: Path, params: dict, *, overwrite: bool) -> dict[int, dict]:
    """Prepare `out`: the episodes an interrupted identical collection left (index -> npz members), else {}.

    Raises:
        ValueError: `out` holds a finished collection or other episodes, and `overwrite` is False.
    """
    record = out / COLLECT_RECORD
    existing = sorted(out.glob(EPISODE_GLOB)) if out.is_dir() else []
    if overwrite:
        for old in existing:
            old.unlink()
        (out / METADATA_FILE).unlink(missing_ok=True)
        existing = []
    elif existing:
        previous = json.loads(record.read_text()) if record.is_file() else None
        if (out / METADATA_FILE).exists() or previous is None:
            raise ValueError(
                f"output_dir={str(out)!r} already holds {len(existing)} episodes; pass overwrite=True "
                "(--overwrite on the command line) to replace them"
            )
        if previous != params or params["policy"] is None:
            changed = sorted(k for k in params if previous.get(k) != params[k]) or ["policy (a callable)"]
            raise ValueError(
                f"output_dir={str(out)!r} holds an interrupted collection with other settings ({', '.join(changed)}); "
                "rerun it with the same settings to resume, or pass overwrite=True (--overwrite on the command line)"
            )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json.dumps(params, sort_keys=True) + "\n")
    keep: dict[int, dict] = {}
    for path in existing:
        index = int(path.stem.split("_")[-1])
        try:
            keep[index] = read_npz_header(path)
        except (zipfile.BadZipFile, ValueError, OSError) as err:
            warnings.warn(f"collect: rewriting unreadable {path.name} ({type(err).__name__}: {err})", stacklevel=3)
    return keep
