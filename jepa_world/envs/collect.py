"""Offline collection: roll a behaviour policy out in a pixel environment and write episodes in the documented format.

The format (`jepa_world.data.episodes`): one ``episode_{i:06d}.npz`` per episode with ``frames`` / ``actions`` /
``states``, plus ``metadata.json``; or, with ``format="lerobot"``, a LeRobot v3 dataset
(`jepa_world.data.lerobot_writer`; the collection's metadata in ``meta/jepa_world.json``). Two-Rooms / point-arena
envs are built directly; any other gymnasium id is rendered through ``PixelObservationAdapter``. Episode ``i`` draws
everything from ``numpy.random.default_rng((seed, i))``.
"""

from __future__ import annotations

import json
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
from jepa_world.envs import ALIAS_KWARGS, ENV_ALIASES, PixelObservationAdapter, make_env
from jepa_world.envs.geometry import MAX_ACTION_NORM, clip_action_norm
from jepa_world.envs.policies import make_policy
from jepa_world.envs.two_rooms import TwoRoomsEnv

COLLECT_RECORD = ".collect.json"  # the settings of a collection in progress (a rerun with the same ones resumes)
FORMATS = ("episodes", "lerobot")  # ours, LeRobot v3


def _make_collection_env(env_name: str, image_size: int, steps: int, env_kwargs: dict[str, Any]) -> Any:
    """A pixel env for ``env_name``: Two-Rooms aliases directly, other gymnasium ids through the pixel adapter."""
    alias = {env_id: name for name, env_id in ENV_ALIASES.items()}.get(env_name, env_name)
    if alias in ENV_ALIASES:
        kwargs = {**ALIAS_KWARGS[alias], **env_kwargs}
        return TwoRoomsEnv(image_size=image_size, max_steps=max(steps, 1), **kwargs)
    env = make_env(env_name, render_mode="rgb_array", **env_kwargs)
    space = env.observation_space
    is_frame = getattr(space, "dtype", None) == np.uint8 and getattr(space, "shape", None) == (
        image_size,
        image_size,
        3,
    )
    return env if is_frame else PixelObservationAdapter(env, image_size=image_size)


def _state_from_info(info: dict[str, Any]) -> np.ndarray | None:
    state = info.get("state", info.get("proprio"))
    return None if state is None else np.asarray(state, dtype=np.float32).reshape(-1)


def collect_episodes(
    *,
    env_name: str,
    num_episodes: int,
    steps: int,
    output_dir: str | Path,
    policy: str | Callable[..., np.ndarray] = "von_mises",
    seed: int = 0,
    image_size: int = 64,
    progress: bool = True,
    policy_kwargs: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    compress: bool = True,
    overwrite: bool = False,
    format: str = "episodes",
    fps: int = 10,
) -> Path:
    """Roll out a behaviour policy and write episodes plus ``metadata.json`` to ``output_dir``.

    Episode ``i`` draws everything (reset seed, then policy noise) from ``numpy.random.default_rng((seed, i))``,
    so a dataset is reproducible from ``seed`` and each episode independently of ``num_episodes``.

    Args:
        env_name: ``"two_rooms"``, ``"point_arena"``, ``"two_rooms_clutter"`` or a gymnasium id (rendered through
            ``PixelObservationAdapter``).
        num_episodes: Number of episodes.
        steps: Actions per episode T (frames T+1). An env that ends earlier gives a shorter episode.
        output_dir: Target directory (created).
        policy: A policy name of ``jepa_world.envs.policies`` (Two-Rooms; ``"random"`` samples the action space of
            other envs) or a callable ``policy(state, goal, rng) -> action`` (``goal`` is None; an object with
            ``reset()`` is reset every episode).
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

    Returns:
        ``output_dir`` as a Path.

    Nothing is lost on a crash or a full disk: every episode file and the metadata are written atomically, the
    metadata last. Rerunning the same collection into a folder without ``metadata.json`` (an interrupted one, recorded
    in ``.collect.json``) resumes it: episodes already there are kept (they are a function of ``(seed, i)``), missing
    or unreadable ones are written, and the unreadable ones are named.

    Stored actions are those the environment applied: for Two-Rooms after the rescale to norm <= ``MAX_ACTION_NORM``,
    for other Box action spaces clipped to the bounds.
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if format not in FORMATS:
        raise ValueError(f"format={format!r}; expected one of {', '.join(FORMATS)}")
    out = Path(output_dir)
    env_kwargs = dict(env_kwargs or {})
    policy_kwargs = dict(policy_kwargs or {})
    params = dict(env_name=env_name, num_episodes=num_episodes, steps=steps, seed=seed, image_size=image_size,
                  compress=compress, env_kwargs=env_kwargs, policy_kwargs=policy_kwargs,
                  policy=policy if isinstance(policy, str) else None)  # fmt: skip
    keep = _resumable(out, params, overwrite=overwrite) if format == "episodes" else {}
    env = _make_collection_env(env_name, image_size, steps, env_kwargs)
    two_rooms = isinstance(env, TwoRoomsEnv)
    if callable(policy):
        policy_fn, policy_name = policy, getattr(policy, "__qualname__", type(policy).__qualname__)
    elif two_rooms:
        policy_fn, policy_name = make_policy(policy, **policy_kwargs), policy
    elif policy == "random":
        policy_fn, policy_name = None, policy
    else:
        raise ValueError(f"policy={policy!r} is only defined for Two-Rooms envs; use 'random' or a callable")
    box = getattr(env.action_space, "low", None) is not None
    writer = None
    if format == "lerobot":
        names = {"action_names": ["dx", "dy"], "state_names": ["x", "y"]} if two_rooms else {}
        task = f"{env_name}: {policy_name} behaviour policy"
        writer = LeRobotWriter(root=out, fps=fps, task=task, overwrite=overwrite, **names)

    lengths: list[int] = []
    action_dim = state_dim = None
    for i in tqdm(range(num_episodes), desc=f"collect {env_name}", disable=not progress):
        if i in keep:  # resumed: this episode was written by the interrupted run
            lengths.append(keep[i]["actions"].shape[0])
            action_dim = keep[i]["actions"].shape[1]
            state_dim = keep[i]["states"].shape[1] if "states" in keep[i] else None
            continue
        rng = np.random.default_rng((seed, i))
        reset_seed = int(rng.integers(2**31 - 1))
        reset_kwargs: dict[str, Any] = {"seed": reset_seed}
        if two_rooms:
            reset_kwargs["options"] = {"goal": None}
        obs, info = env.reset(**reset_kwargs)
        if policy_fn is None:
            env.action_space.seed(int(rng.integers(2**31 - 1)))
        elif hasattr(policy_fn, "reset"):
            policy_fn.reset()
        frames, actions, states = [np.asarray(obs)], [], [_state_from_info(info)]
        for _ in range(steps):
            raw = env.action_space.sample() if policy_fn is None else policy_fn(states[-1], None, rng)
            a = np.asarray(raw, dtype=np.float64).reshape(-1)
            if two_rooms:
                a = clip_action_norm(a)
            elif box:
                a = np.clip(a, env.action_space.low.reshape(-1), env.action_space.high.reshape(-1))
            obs, _, terminated, truncated, info = env.step(a.reshape(np.shape(raw)).astype(np.float32))
            frames.append(np.asarray(obs))
            actions.append(a.astype(np.float32))
            states.append(_state_from_info(info))
            if terminated or truncated:
                break
        has_states = all(s is not None for s in states)
        episode = {"frames": np.stack(frames), "actions": np.stack(actions)}
        episode["states"] = np.stack(states) if has_states else None
        if writer is not None:
            writer.add_episode(**episode)
        else:
            write_episode(out / episode_filename(i), **episode, compress=compress)
        lengths.append(len(actions))
        action_dim = len(actions[0])
        state_dim = len(states[0]) if has_states else None
    env.close()
    metadata = {
        "env_name": env_name,
        "env_kwargs": env_kwargs,
        "image_size": image_size,
        "action_dim": action_dim,
        "state_dim": state_dim,
        "num_episodes": num_episodes,
        "steps": steps,
        "episode_lengths": lengths,
        "policy": policy_name,
        "policy_kwargs": policy_kwargs,
        "seed": seed,
        "actions_note": f"actions as applied by the env (Two-Rooms: rescaled to norm <= {MAX_ACTION_NORM})",
    }
    if writer is not None:
        writer.close(extra_metadata={"format_version": FORMAT_VERSION, **metadata, "fps": fps})
    else:
        write_metadata(out, metadata)
    return out


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
            raise ValueError(f"output_dir={str(out)!r} already holds {len(existing)} episodes; pass overwrite=True")
        if previous != params or params["policy"] is None:
            changed = sorted(k for k in params if previous.get(k) != params[k]) or ["policy (a callable)"]
            raise ValueError(
                f"output_dir={str(out)!r} holds an interrupted collection with other settings ({', '.join(changed)}); "
                "rerun it with the same settings to resume, or pass overwrite=True"
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
