"""The field's goal-reaching protocols, on any env whose state a stored row restores (swm Push-T and TwoRoom).

Protocols (``plan.protocol``; `plan_benchmark.run_plan_benchmark` runs them):

- ``swm``, as the papers report it (LeWM, DINO-WM, PLDM): ``plan.pairs`` (50) start rows drawn uniformly with a seed
  (``plan.pair_seed``, 42) from the dataset rows that have ``plan.offset`` (25) more steps in their episode; the goal
  is the same episode's row + offset (its stored frame as the goal image, its env state as the env's goal); the env is
  reset into the start row with that goal set; ``plan.budget`` (50) env steps; success if the env reports success
  (``terminated``) after ANY step.
- ``strict``: the same, but the pairs come from held-out episodes never trained on (the world model's last
  ``wm.val_episodes`` episodes, or a folder given as ``plan.episodes_dir``), pairs already solved at the start are
  dropped, on TwoRoom only pairs whose start and goal lie in different rooms (wall at x = 112 of 224) are kept, and
  success is the env's success after the FINAL step; ``plan.pairs`` defaults to 100 (per pair seed).

Every agent runs on the same pairs (`draw_pairs` depends only on the episodes, the settings and the seed). The
floors and the ceiling on those pairs: no-op (zero actions, which stand still in swm's envs whose actions are
relative), random (uniform in the env's Box), replay (the dataset's own ``offset`` actions from the start row, then
zeros: shows the goal is reachable) and, optionally, the planner on the true simulator (`SimulatorFieldCEMAgent`: each
sample restores the env and steps it; slow, off by default). Those agents: `field_agents.py`.

Episodes run E envs side by side (one per pair): the agents act on the batch, the envs step one by one. The learned
agent reads pixels only: the start frame is the env's ``render()`` at the model's input size (equal to the stored
frame when the episodes were collected at that size) and the goal image is the stored frame of the goal row.

Shapes: E pairs, A env action dim, D env-state dim; pixels ``uint8 [E, S, S, 3]``, env states ``float64 [E, D]``.
"""

from __future__ import annotations

import time
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jepa_world.data.episodes import EPISODE_GLOB, read_metadata
from jepa_world.data.npz import read_npz_header
from jepa_world.envs.field_envs import (
    ENV_STATE_SPECS,
    env_state_spec,
    read_env_state,
    render_frame,
    restore_env_state,
)
from jepa_world.envs.wrappers import resize_frame
from jepa_world.eval.agents import Agent, Observation
from jepa_world.eval.protocol import EpisodeStats

FIELD_PROTOCOLS = ("swm", "strict")
DEFAULT_PAIRS = {"swm": 50, "strict": 100}
SWM_PAIR_SEED = 42  # the papers' seed
TWOROOM_WALL_X = 112.0  # swm TwoRoom's wall, at 224-px units
TWOROOM_ID = "swm/TwoRoom-v1"
PUSHT_ID = "swm/PushT-v1"


def bare_env_id(env_id: str) -> str:
    """``module:EnvId`` -> ``EnvId`` (the key of ``ENV_STATE_SPECS``)."""
    return env_id.split(":", 1)[-1]


# ---------------------------------------------------------------------------------------------------------- pairs
@dataclass(frozen=True)
class FieldPair:
    """One start / goal pair: a row of a stored episode and the row ``offset`` steps later.

    Attributes:
        episode: The episode file's name.
        row: The start row.
        goal_row: The goal row (``row + offset``).
        start_state: Env state of the start row ``float64 [D]`` (restores it, `restore_env_state`).
        goal_state: Env state of the goal row ``float64 [D]`` (its first ``goal_dims`` entries are the env's goal).
        goal_frame: The stored frame of the goal row ``uint8 [H, W, 3]`` (the learned agent's goal image).
        actions: The dataset's actions from the start row to the goal row ``float32 [offset, A]`` (the replay row).
    """

    episode: str
    row: int
    goal_row: int
    start_state: np.ndarray
    goal_state: np.ndarray
    goal_frame: np.ndarray
    actions: np.ndarray

    def record(self) -> dict[str, Any]:
        """The JSON record of the pair (pairs.json)."""
        return {
            "episode": self.episode,
            "row": self.row,
            "goal_row": self.goal_row,
            "start_state": [float(v) for v in self.start_state],
            "goal_state": [float(v) for v in self.goal_state],
        }


@dataclass(frozen=True)
class EpisodeSource:
    """The episodes a protocol draws its pairs from.

    Attributes:
        root: The episode folder.
        files: The episode files the pairs may come from (for strict: the held-out ones only).
        held_out: Whether ``files`` were never trained on.
        why: Where the files come from, in words (the results record it).
        metadata: The folder's ``metadata.json`` (``{}`` when absent).
    """

    root: Path
    files: tuple[Path, ...]
    held_out: bool
    why: str
    metadata: dict[str, Any]


def _num_frames(path: Path) -> int:
    try:
        members = read_npz_header(path)
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable episode file ({type(err).__name__}: {err})") from None
    if "frames" not in members or "env_states" not in members:
        missing = "frames" if "frames" not in members else "env_states"
        raise ValueError(
            f"{path.name} has no {missing}: the swm / strict protocols restore start rows from the env "
            f"states recorded at collection (`jepa-world collect` on {sorted(ENV_STATE_SPECS)})"
        )
    return int(members["frames"].shape[0])


def episode_files(root: str | Path) -> list[Path]:
    """The episode files of a folder in our format, sorted.

    Raises:
        ValueError: ``root`` is not a folder of ``episode_*.npz`` files (a LeRobot dataset has no env states).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"episodes folder {str(root)!r} does not exist")
    files = sorted(root.glob(EPISODE_GLOB))
    if not files:
        raise ValueError(
            f"{str(root)!r} holds no {EPISODE_GLOB} files: the swm / strict protocols need episodes in "
            "our format with env states (`jepa-world collect`)"
        )
    return files


def held_out_files(files: Sequence[Path], *, val_episodes: int, window: int, frameskip: int) -> list[Path]:
    """The episodes a world model trained with ``wm.val_episodes`` never saw: the last ``val_episodes`` of those long
    enough for one training window (the order and the rule of `jepa_world.data.windows.hold_out_episodes`).

    Raises:
        ValueError: ``val_episodes`` is not in ``1 .. (usable episodes - 1)``.
    """
    span = (window - 1) * frameskip + 1
    usable = [f for f in files if _num_frames(f) >= span]
    if not 1 <= val_episodes < len(usable):
        raise ValueError(
            f"wm.val_episodes={val_episodes} must be between 1 and {len(usable) - 1}: the episodes hold "
            f"{len(usable)} long enough for a window"
        )
    return usable[len(usable) - val_episodes :]


def candidate_rows(lengths: Sequence[int], offset: int) -> np.ndarray:
    """``int64 [N, 2]`` (episode index, row) of every row with ``offset`` more steps in its episode.

    Args:
        lengths: Frames per episode (rows ``0 .. F-1``).
        offset: Steps from the start row to the goal row.
    """
    rows = [
        np.stack([np.full(max(f - offset, 0), e), np.arange(max(f - offset, 0))], axis=1) for e, f in enumerate(lengths)
    ]
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), dtype=np.int64)


def _load_pair(path: Path, row: int, offset: int) -> FieldPair:
    with np.load(path, allow_pickle=False) as data:
        env_states = np.asarray(data["env_states"], dtype=np.float64)
        return FieldPair(
            episode=path.name,
            row=int(row),
            goal_row=int(row + offset),
            start_state=env_states[row].copy(),
            goal_state=env_states[row + offset].copy(),
            goal_frame=np.asarray(data["frames"][row + offset]),
            actions=np.asarray(data["actions"][row : row + offset], dtype=np.float32),
        )


def start_solved(env: Any, env_id: str, start: np.ndarray, goal: np.ndarray, *, seed: int = 0) -> bool:
    """Whether the env's own success check holds at the start row already.

    Push-T: its ``eval_state(goal, state)``; any other env: restored with the goal, one zero action (which leaves
    swm TwoRoom's agent where it is) and the ``terminated`` it reports.
    """
    spec = env_state_spec(env_id)
    base = env.unwrapped
    if hasattr(base, "eval_state") and spec is not None:
        gd = spec.goal_dims
        return bool(base.eval_state(np.asarray(goal[:gd], dtype=np.float64), np.asarray(start[:gd]))[0])
    restore_env_state(env, env_id, start, goal=goal, seed=seed)
    _, _, terminated, _, _ = env.step(np.zeros(env.action_space.shape, dtype=env.action_space.dtype))
    return bool(terminated)


def different_rooms(env_id: str, start: np.ndarray, goal: np.ndarray) -> bool:
    """swm TwoRoom: start and goal on opposite sides of the wall at x = 112 (True on every other env)."""
    if bare_env_id(env_id) != TWOROOM_ID:
        return True
    return bool((start[0] < TWOROOM_WALL_X) != (goal[0] < TWOROOM_WALL_X))


def draw_pairs(
    source: EpisodeSource,
    *,
    protocol: str,
    offset: int,
    num_pairs: int,
    seed: int,
    env: Any = None,
    env_id: str = "",
) -> tuple[list[FieldPair], dict[str, int]]:
    """The protocol's start / goal pairs: a function of the episodes, the settings and ``seed`` only.

    Args:
        source: The episodes (for strict, the held-out ones).
        protocol: ``swm`` or ``strict``.
        offset: Goal row = start row + offset.
        num_pairs: Pairs to draw.
        seed: Seed of the draw.
        env: The env (strict: to check which pairs are solved at the start).
        env_id: Its gymnasium id.

    Returns:
        ``(pairs, counts)``; ``counts`` says how many candidate rows there were and, for strict, how many drawn rows
        were dropped as solved at the start or (TwoRoom) in the same room.

    Raises:
        ValueError: Not enough rows with ``offset`` more steps (swm), or no pair left after strict's filters.
    """
    if protocol not in FIELD_PROTOCOLS:
        raise ValueError(f"protocol must be one of {FIELD_PROTOCOLS}, got {protocol!r}")
    lengths = [_num_frames(f) for f in source.files]
    cand = candidate_rows(lengths, offset)
    counts = {"candidate_rows": len(cand), "solved_at_start": 0, "same_room": 0}
    rng = np.random.default_rng(seed)
    if protocol == "swm":
        if len(cand) < num_pairs:
            raise ValueError(
                f"plan.pairs={num_pairs}, but only {len(cand)} rows of {source.root} have "
                f"plan.offset={offset} more steps in their episode: lower plan.pairs or plan.offset, or "
                "record longer episodes"
            )
        chosen = cand[rng.choice(len(cand), size=num_pairs, replace=False)]
        return [_load_pair(source.files[e], r, offset) for e, r in chosen], counts
    if env is None:
        raise ValueError("the strict protocol needs the env, to drop the pairs solved at the start")
    pairs: list[FieldPair] = []
    for e, r in cand[rng.permutation(len(cand))]:
        pair = _load_pair(source.files[e], r, offset)
        if not different_rooms(env_id, pair.start_state, pair.goal_state):
            counts["same_room"] += 1
            continue
        if start_solved(env, env_id, pair.start_state, pair.goal_state, seed=seed):
            counts["solved_at_start"] += 1
            continue
        pairs.append(pair)
        if len(pairs) == num_pairs:
            break
    if not pairs:
        raise ValueError(
            f"strict: none of the {len(cand)} rows of the held-out episodes ({source.why}) gives a pair "
            f"(solved at the start: {counts['solved_at_start']}, same room: {counts['same_room']})"
        )
    if len(pairs) < num_pairs:
        warnings.warn(
            f"strict: only {len(pairs)} of plan.pairs={num_pairs} pairs in the held-out episodes "
            f"({source.why}; solved at the start: {counts['solved_at_start']}, same room: "
            f"{counts['same_room']}); hold out more episodes for the full count",
            stacklevel=2,
        )
    return pairs, counts


# ---------------------------------------------------------------------------------------------------------- distance
def state_distance(env_id: str, state: np.ndarray, goal: np.ndarray) -> float:
    """Distance to the goal in the env's units, for the table (success is the env's own check, not this).

    Push-T: the norm of the agent and block position errors (what its success bounds by 20); TwoRoom and any other
    env: the norm of the goal dims' error.
    """
    spec = env_state_spec(env_id)
    dims = 4 if bare_env_id(env_id) == PUSHT_ID else (spec.goal_dims if spec is not None else len(goal))
    return float(np.linalg.norm(np.asarray(state[:dims], dtype=np.float64) - np.asarray(goal[:dims])))


def distance_unit(env_id: str) -> str:
    """The unit of `state_distance`, for the table's header."""
    return {PUSHT_ID: "agent+block units of 512", TWOROOM_ID: "px of 224"}.get(bare_env_id(env_id), "state units")


# ---------------------------------------------------------------------------------------------------------- runner
def run_field_episodes(
    envs: Sequence[Any],
    env_id: str,
    agent: Agent,
    pairs: Sequence[FieldPair],
    *,
    budget: int,
    success_at: str,
    image_size: int,
    seed: int = 0,
) -> EpisodeStats:
    """Run one agent on the pairs, one env per pair, and judge success by the env's own ``terminated``.

    Args:
        envs: One env per pair (each is reset into its pair's start row with the goal set).
        env_id: The envs' gymnasium id (its ``EnvStateSpec`` restores rows).
        agent: The agent; non-privileged agents get pixels only (``obs.state`` None).
        pairs: The pairs of `draw_pairs`.
        budget: Env steps per episode.
        success_at: ``"any"`` (the env reports success after any step: swm) or ``"final"`` (after the last: strict).
        image_size: Side of the frames the agent sees.
        seed: Seed of every reset.

    Returns:
        ``EpisodeStats`` with ``paths`` the env states ``[E, budget + 1, D]`` and ``final_distance`` in the units of
        `distance_unit`; ``extra`` holds each episode's first success step (-1: none).
    """
    if success_at not in ("any", "final"):
        raise ValueError(f"success_at must be 'any' or 'final', got {success_at!r}")
    if len(envs) != len(pairs) or not pairs:
        raise ValueError(f"need one env per pair, got {len(envs)} envs for {len(pairs)} pairs")
    if not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an int >= 1, got {budget!r}")
    e = len(pairs)
    space = envs[0].action_space
    low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
    states = []
    for env, pair in zip(envs, pairs, strict=True):
        obs, info = restore_env_state(env, env_id, pair.start_state, goal=pair.goal_state, seed=seed)
        states.append(read_env_state(env, env_id, obs, info))
    goals = np.stack([p.goal_state for p in pairs])
    goal_pixels = np.stack([resize_frame(p.goal_frame, image_size) for p in pairs]) if agent.needs_pixels else None
    paths = np.empty((e, budget + 1, len(states[0])), dtype=np.float64)
    paths[:, 0] = np.stack(states)
    first = np.full(e, -1, dtype=np.int64)
    done_now = np.zeros(e, dtype=bool)
    agent.reset(e)
    act_seconds = 0.0
    for t in range(budget):
        obs = Observation(
            pixels=np.stack([render_frame(env, image_size) for env in envs]) if agent.needs_pixels else None,
            goal_pixels=goal_pixels,
            state=paths[:, t].copy() if agent.privileged else None,
            goal_state=goals.copy() if agent.privileged else None,
        )
        tic = time.perf_counter()
        a = np.asarray(agent.act(obs), dtype=np.float64)
        act_seconds += time.perf_counter() - tic
        if a.shape != (e, *space.shape):
            raise ValueError(f"{agent.name} returned actions of shape {a.shape}, expected {(e, *space.shape)}")
        if not (np.all(np.isfinite(a)) and np.all(a >= low) and np.all(a <= high)):
            raise ValueError(f"{agent.name} returned actions outside the env's Box [{low}, {high}]")
        for i, env in enumerate(envs):
            o, _, terminated, _, info = env.step(a[i].astype(space.dtype))
            done_now[i] = bool(terminated)
            paths[i, t + 1] = read_env_state(env, env_id, o, info)
        first[(first < 0) & done_now] = t + 1
    success = first >= 0 if success_at == "any" else done_now.copy()
    dist = np.array([state_distance(env_id, paths[i, -1], goals[i]) for i in range(e)])
    return EpisodeStats(
        name=agent.name,
        success=success,
        final_distance=dist,
        paths=paths,
        act_seconds=act_seconds,
        steps=budget,
        num_plans=getattr(agent, "num_plans", 0),
        extra={"first_success_step": [int(s) for s in first]},
    )


# ---------------------------------------------------------------------------------------------------------- metadata
def episodes_env(root: str | Path) -> tuple[str | None, str | None, dict[str, Any]]:
    """``(env_name, env_id, env_kwargs)`` recorded in an episode folder's metadata (None where it says nothing)."""
    meta = read_metadata(root) or {}
    if not meta and (Path(root) / "meta" / "jepa_world.json").is_file():  # a LeRobot dataset we wrote
        import json

        meta = json.loads((Path(root) / "meta" / "jepa_world.json").read_text())
    return meta.get("env_name"), meta.get("env_id"), dict(meta.get("env_kwargs") or {})
