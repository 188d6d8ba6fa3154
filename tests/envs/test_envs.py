"""Tests for jepa_world.envs: Two-Rooms geometry and collisions, rendering, registration, policies, pixel adapter."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from gymnasium import spaces  # noqa: E402
from gymnasium.utils.env_checker import check_env  # noqa: E402

from jepa_world.envs import (  # noqa: E402
    POINT_ARENA_ID,
    TWO_ROOMS_ID,
    DoorWaypointPolicy,
    NoOpPolicy,
    PixelObservationAdapter,
    RandomPolicy,
    StraightLinePolicy,
    TwoRoomsEnv,
    VonMisesRandomWalk,
    make_env,
    register_envs,
)
from jepa_world.envs.geometry import (  # noqa: E402
    DOOR_CENTER_Y,
    FREE_MAX,
    FREE_MIN,
    MAX_ACTION_NORM,
    WALL_X_MAX,
    WALL_X_MIN,
    move_point,
)
from jepa_world.eval.protocol import evaluate_policy  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _run(env: TwoRoomsEnv, start, action, steps: int) -> np.ndarray:
    """States ``[steps + 1, 2]`` from pushing a constant action."""
    _, info = env.reset(options={"start": start, "goal": None})
    states = [info["state"]]
    for _ in range(steps):
        _, _, _, _, info = env.step(np.asarray(action, dtype=np.float32))
        states.append(info["state"])
    return np.stack(states).astype(np.float64)


def _segment_is_free(env: TwoRoomsEnv, a: np.ndarray, b: np.ndarray, n: int = 400) -> bool:
    """Independent check by dense sampling: every point of segment a-b lies outside all obstacle interiors."""
    ts = np.linspace(0.0, 1.0, n)[:, None]
    return bool(np.all(env.is_free(a + ts * (b - a))))


# ---------------------------------------------------------------------------------------------------------- API
@pytest.mark.parametrize("wall", [True, False])
def test_check_env_passes(wall):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*symmetric and normalized space.*")
        warnings.filterwarnings("ignore", message=".*alternative render modes.*")
        check_env(TwoRoomsEnv(wall=wall))
        check_env(gymnasium.make(TWO_ROOMS_ID if wall else POINT_ARENA_ID).unwrapped)


@pytest.mark.parametrize("image_size", [64, 32, 96])
def test_observation_shape_dtype_and_spaces(image_size):
    env = TwoRoomsEnv(image_size=image_size)
    obs, info = env.reset(seed=0)
    assert obs.shape == (image_size, image_size, 3) and obs.dtype == np.uint8
    assert obs in env.observation_space
    assert info["state"].dtype == np.float32 and info["state"].shape == (2,)
    assert {"goal_state", "distance"} <= set(info)
    assert np.isclose(info["distance"], np.linalg.norm(info["state"] - info["goal_state"]), atol=1e-4)
    assert env.action_space == spaces.Box(-MAX_ACTION_NORM, MAX_ACTION_NORM, (2,), dtype=np.float32)
    obs2, *_ = env.step(np.zeros(2, np.float32))
    assert obs2.shape == obs.shape and np.array_equal(env.render(), obs2)


def test_no_goal_option_drops_goal_info():
    env = TwoRoomsEnv()
    _, info = env.reset(seed=0, options={"goal": None})
    assert "goal_state" not in info and "distance" not in info
    _, reward, _, _, info = env.step(np.array([1.0, 0.0], np.float32))
    assert reward == 0.0 and "goal_state" not in info


def test_invalid_positions_and_actions_raise():
    env = TwoRoomsEnv()
    with pytest.raises(ValueError, match="start"):
        env.reset(options={"start": (32.0, 10.0)})  # inside the wall
    with pytest.raises(ValueError, match="goal"):
        env.reset(options={"goal": (2.0, 10.0)})  # inside the border
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"begin": (10.0, 10.0)})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="2 components"):
        env.step(np.zeros(3))


# ---------------------------------------------------------------------------------------------------------- collisions
@pytest.mark.parametrize("y", [DOOR_CENTER_Y - 12.0, DOOR_CENTER_Y + 12.0, 8.0, 55.0])
def test_dot_stops_at_first_contact_with_the_wall(y):
    env = TwoRoomsEnv()
    states = _run(env, (20.0, y), (MAX_ACTION_NORM, 0.0), steps=20)
    assert np.all(states[:, 0] <= WALL_X_MIN + 1e-9), "crossed into the wall"
    assert states[-1, 0] == pytest.approx(WALL_X_MIN, abs=1e-9), "should rest on the wall's left face"
    assert np.allclose(states[:, 1], y), "no vertical motion from a horizontal push"
    # From the right room pushing left: stops on the right face.
    states = _run(env, (45.0, y), (-MAX_ACTION_NORM, 0.0), steps=20)
    assert np.all(states[:, 0] >= WALL_X_MAX - 1e-9)
    assert states[-1, 0] == pytest.approx(WALL_X_MAX, abs=1e-9)


def test_no_sliding_along_the_wall():
    """A diagonal push toward the wall stops at contact and stays there (a sliding rule would move along y)."""
    env = TwoRoomsEnv()
    action = np.array([1.5, 1.5])  # toward the wall and downwards, away from the door (y grows downwards)
    states = _run(env, (24.0, 38.5), action, steps=12)
    hit = int(np.argmax(states[:, 0] >= WALL_X_MIN - 1e-9))
    assert hit > 0, "never reached the wall"
    assert states[hit, 0] == pytest.approx(WALL_X_MIN, abs=1e-9)
    # The contact point lies on the straight line from the start (stopped, not deflected).
    direction = action / np.linalg.norm(action)
    offset = states[hit] - states[0]
    assert abs(offset[0] * direction[1] - offset[1] * direction[0]) < 1e-6
    assert np.allclose(states[hit:], states[hit]), "dot moved after contact: sliding"
    # Moving away from (and along) the face is still possible.
    _, _, _, _, info = env.step(np.array([-1.0, 0.0], np.float32))
    assert info["state"][0] < WALL_X_MIN
    _, info = env.reset(options={"start": states[hit], "goal": None})
    _, _, _, _, info = env.step(np.array([0.0, 1.0], np.float32))
    assert info["state"][1] == pytest.approx(states[hit, 1] + 1.0, abs=1e-5)


def test_large_displacements_cannot_tunnel():
    env = TwoRoomsEnv()
    # Far beyond the norm bound, straight at the wall and at the border.
    assert np.allclose(move_point(np.array([25.0, 10.0]), np.array([100.0, 0.0]), env.rects), [WALL_X_MIN, 10.0])
    assert np.allclose(move_point(np.array([40.0, 10.0]), np.array([-100.0, 3.0]), env.rects)[0], WALL_X_MAX)
    assert np.allclose(move_point(np.array([40.0, 10.0]), np.array([0.0, 500.0]), env.rects), [40.0, FREE_MAX])
    # A full-length env step from just in front of the wall stops on its face.
    assert np.allclose(env.transition(np.array([29.9, 10.0]), np.array([50.0, 0.0])), [WALL_X_MIN, 10.0])
    # Property check with random long segments against dense sampling (an independent computation).
    rng = np.random.default_rng(0)
    starts = np.stack([env.sample_position(rng) for _ in range(300)]).astype(np.float64)
    disp = rng.normal(size=(300, 2)) * rng.uniform(1, 80, size=(300, 1))
    ends = move_point(starts, disp, env.rects)
    for a, b, d in zip(starts, ends, disp):
        assert _segment_is_free(env, a, b), f"path {a} -> {b} crosses an obstacle"
        travelled = np.linalg.norm(b - a)
        assert travelled <= np.linalg.norm(d) + 1e-9
        if travelled < np.linalg.norm(d) - 1e-9:  # stopped early: it must be at a contact
            beyond = b + 1e-3 * d / np.linalg.norm(d)
            assert not env.is_free(beyond), f"stopped at {b} without contact"
            offset = b - a
            assert abs(offset[0] * d[1] - offset[1] * d[0]) < 1e-6 * np.linalg.norm(d), "left the original line"


def test_dot_passes_through_the_door_when_aligned():
    env = TwoRoomsEnv()
    for y in (DOOR_CENTER_Y, DOOR_CENTER_Y - 3.5, DOOR_CENTER_Y + 3.5):
        states = _run(env, (20.0, y), (MAX_ACTION_NORM, 0.0), steps=8)
        assert states[-1, 0] > WALL_X_MAX + 5.0, f"blocked at y={y}"
        assert np.allclose(states[:, 1], y)
        assert env.room_of(states[-1]) == 1


def test_border_stop():
    env = TwoRoomsEnv()
    states = _run(env, (10.0, 40.0), (0.0, MAX_ACTION_NORM), steps=20)
    assert states[-1] == pytest.approx([10.0, FREE_MAX], abs=1e-9)
    assert np.all(states[:, 1] <= FREE_MAX + 1e-9)
    states = _run(env, (10.0, 40.0), (-MAX_ACTION_NORM, 0.0), steps=20)
    assert states[-1] == pytest.approx([FREE_MIN, 40.0], abs=1e-9)
    arena = TwoRoomsEnv(wall=False)
    states = _run(arena, (20.0, 10.0), (MAX_ACTION_NORM, 0.0), steps=30)
    assert states[-1] == pytest.approx([FREE_MAX, 10.0], abs=1e-9), "point arena has no wall, only the border"


def test_action_norm_is_rescaled():
    env = TwoRoomsEnv()
    start = np.array([15.0, 40.0])
    for action in ([3.0, 4.0], [-2.45, 2.45], [0.3, -0.4], [1e3, 0.0]):
        a = np.asarray(action)
        states = _run(env, start, a, steps=1)
        expected = a * min(1.0, MAX_ACTION_NORM / np.linalg.norm(a))
        assert np.allclose(states[1] - states[0], expected, atol=1e-5)
        assert np.linalg.norm(states[1] - states[0]) <= MAX_ACTION_NORM + 1e-5


def test_batched_transition_matches_step():
    env = TwoRoomsEnv()
    rng = np.random.default_rng(1)
    states = np.stack([env.sample_position(rng) for _ in range(64)]).astype(np.float64)
    for _ in range(30):
        actions = rng.uniform(-4, 4, size=(64, 2))
        batched = env.transition(states, actions)
        for s, a, nb in zip(states, actions, batched):
            env.reset(options={"start": s, "goal": None})
            _, _, _, _, info = env.step(a)
            assert np.allclose(info["state"], nb, atol=1e-5)
        states = batched


# ---------------------------------------------------------------------------------------------------------- rendering
def test_render_state_matches_observation_after_reset():
    env = TwoRoomsEnv()
    for start in [(10.0, 10.0), (29.9, 33.0), (50.25, 44.75)]:
        obs, _ = env.reset(options={"start": start})
        assert np.array_equal(obs, env.render_state(start))
        assert np.array_equal(obs, env.render())


@pytest.mark.parametrize("image_size", [64, 128])
def test_blob_is_centred_on_the_state(image_size):
    """The red-minus-green mass (the dot only: walls are white, the floor black) is centred on the state."""
    env = TwoRoomsEnv(image_size=image_size)
    for xy in [(12.3, 20.7), (45.5, 50.1)]:
        frame = env.render_state(xy).astype(np.float64)
        dot = frame[..., 0] - frame[..., 1]
        scale = 64.0 / image_size
        rows, cols = np.indices(dot.shape)
        cx = ((cols + 0.5) * scale * dot).sum() / dot.sum()
        cy = ((rows + 0.5) * scale * dot).sum() / dot.sum()
        assert (cx, cy) == pytest.approx(xy, abs=0.05)
        assert dot.max() > 200


def test_walls_render_at_the_documented_coordinates():
    frame = TwoRoomsEnv().render_state((15.0, 45.0))
    grey = frame[..., 1]  # the dot has no green, so this is the static layer
    assert np.all(grey[:5] == 255) and np.all(grey[:, :5] == 255) and np.all(grey[59:] == 255)
    assert np.all(grey[5:59, 31:33][:23] == 255), "wall above the door"
    assert np.all(grey[28:36, 30:34] == 0), "the door is open"
    assert np.all(grey[20, 30] == 128) and np.all(grey[20, 33] == 128), "half-covered wall edge pixels"
    assert np.all(TwoRoomsEnv(wall=False).render_state((10, 10))[5:59, 20:50, 1] == 0)


# ---------------------------------------------------------------------------------------------------------- protocol
def test_eval_pairs_are_in_opposite_rooms():
    env = TwoRoomsEnv()
    rng = np.random.default_rng(0)
    rooms = []
    for _ in range(300):
        start, goal = env.sample_eval_pair(rng)
        assert env.is_free(start) and env.is_free(goal)
        rs, rg = int(env.room_of(start)), int(env.room_of(goal))
        assert {rs, rg} == {0, 1}
        assert np.linalg.norm(start - goal) > 4.5
        rooms.append(rs)
    assert 0.3 < np.mean(rooms) < 0.7, "start room should be balanced"


def test_seeding_is_deterministic():
    a, b, c = TwoRoomsEnv(), TwoRoomsEnv(), TwoRoomsEnv()
    obs_a, info_a = a.reset(seed=123)
    obs_b, info_b = b.reset(seed=123)
    _, info_c = c.reset(seed=124)
    assert np.array_equal(obs_a, obs_b) and np.array_equal(info_a["goal_state"], info_b["goal_state"])
    assert not np.array_equal(info_a["state"], info_c["state"])
    d, e = TwoRoomsEnv(seed=7), TwoRoomsEnv(seed=7)
    assert np.array_equal(d.reset()[1]["state"], e.reset()[1]["state"])
    assert np.array_equal(d.reset()[1]["state"], e.reset()[1]["state"]), "second resets continue the same stream"
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(np.stack(a.sample_eval_pair(r1)), np.stack(a.sample_eval_pair(r2)))


def test_success_threshold_and_termination():
    env = TwoRoomsEnv()
    goal = np.array([10.0, 10.0])
    assert env.success(goal + np.array([0.0, 4.4]), goal) is True
    assert env.success(goal + np.array([0.0, 4.6]), goal) is False
    assert np.array_equal(env.success(np.array([[10, 14.4], [10, 14.6]]), goal), [True, False])
    env.reset(options={"start": goal + np.array([4.4, 0.0]), "goal": goal})
    _, reward, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
    assert not terminated and not truncated and reward == pytest.approx(-4.4, abs=1e-5)
    env = TwoRoomsEnv(terminate_on_success=True, max_steps=3)
    env.reset(options={"start": goal + np.array([4.4, 0.0]), "goal": goal})
    assert env.step(np.zeros(2, np.float32))[2] is True
    env.reset(options={"start": goal + np.array([9.0, 0.0]), "goal": goal})
    flags = [env.step(np.zeros(2, np.float32))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)], "truncated exactly at max_steps"


# ---------------------------------------------------------------------------------------------------------- registry
def test_make_env_and_registration():
    register_envs()
    register_envs()  # idempotent
    assert TWO_ROOMS_ID in gymnasium.registry and POINT_ARENA_ID in gymnasium.registry
    env = make_env("two_rooms", image_size=32)
    assert isinstance(env, TwoRoomsEnv) and env.wall and env.image_size == 32
    assert not make_env("point_arena").wall
    wrapped = make_env(POINT_ARENA_ID, max_steps=5)
    assert isinstance(wrapped.unwrapped, TwoRoomsEnv) and not wrapped.unwrapped.wall
    obs, _ = wrapped.reset(seed=0)
    assert obs.shape == (64, 64, 3)
    with pytest.raises(ValueError, match="two_rooms"):
        make_env("three_rooms")


def _module_level_imports(tree: ast.Module) -> list[str]:
    """Modules imported when a file is executed (top level, inside top-level if/try, not under TYPE_CHECKING)."""
    names: list[str] = []
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody + [n for h in node.handlers for n in h.body]
    return names


def test_gymnasium_is_only_imported_by_jepa_world_envs():
    """Static check (fast): outside ``jepa_world/envs``, no module imports gymnasium or jepa_world.envs at import.

    ``jepa_world/eval/`` (the evaluation protocol on those environments) is part of the ``envs`` extra and is only
    imported by ``jepa-world plan`` / ``probe``; nothing imported by ``import jepa_world`` imports it.
    """
    offenders = []
    for path in sorted((REPO / "jepa_world").rglob("*.py")):
        rel = path.relative_to(REPO / "jepa_world")
        if rel.parts[0] in ("envs", "eval"):
            continue
        for name in _module_level_imports(ast.parse(path.read_text())):
            if name.split(".")[0] == "gymnasium" or name.startswith("jepa_world.envs"):
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert not offenders, offenders


@pytest.mark.slow
def test_import_jepa_world_does_not_import_gymnasium():
    code = (
        "import sys, jepa_world, jepa_world.data.episodes; "
        "assert 'gymnasium' not in sys.modules, 'gymnasium imported'; "
        "import jepa_world.envs; assert 'gymnasium' in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------------------- policies
def test_straight_line_gets_stuck_behind_the_wall_but_works_in_the_open():
    start, goal = np.array([15.0, 10.0]), np.array([45.0, 12.0])  # far from the door at y = 32
    policy, rng = StraightLinePolicy(), np.random.default_rng(0)
    for wall, should_succeed in ((True, False), (False, True)):
        env = TwoRoomsEnv(wall=wall)
        _, info = env.reset(options={"start": start, "goal": goal})
        for _ in range(env.max_steps):
            _, _, _, _, info = env.step(policy(info["state"], goal, rng))
        assert env.success(info["state"], goal) is should_succeed
        if wall:
            assert info["state"][0] == pytest.approx(WALL_X_MIN, abs=1e-6), "stuck on the wall face"
    assert evaluate_policy(TwoRoomsEnv(wall=False), policy, num_episodes=20)["success_rate"] == 1.0
    rate = evaluate_policy(TwoRoomsEnv(), policy, num_episodes=100)["success_rate"]
    assert 0.0 < rate < 0.5, f"straight line should only succeed when its line crosses the door, got {rate}"


def test_door_oracle_solves_random_eval_pairs():
    env = TwoRoomsEnv()
    result = evaluate_policy(env, DoorWaypointPolicy(), num_episodes=40, seed=3)
    assert result["successes"].all(), result["final_distance"]
    # The same policy through env.step (single states, rendering) agrees with the batched evaluation.
    policy, rng = DoorWaypointPolicy(), np.random.default_rng(0)
    for start, goal in result["pairs"][:4]:
        _, info = env.reset(options={"start": start, "goal": goal})
        for _ in range(env.max_steps):
            _, _, _, _, info = env.step(policy(info["state"], goal, rng))
        assert env.success(info["state"], goal)


def test_trivial_policies_fail_and_stay_in_bounds():
    env = TwoRoomsEnv()
    assert evaluate_policy(env, NoOpPolicy(), num_episodes=20)["success_rate"] == 0.0
    rng = np.random.default_rng(0)
    actions = RandomPolicy()(np.zeros((1000, 2)), None, rng)
    assert actions.shape == (1000, 2) and np.all(np.abs(actions) <= MAX_ACTION_NORM)
    assert actions.std(axis=0) == pytest.approx(2 * MAX_ACTION_NORM / np.sqrt(12), rel=0.1), "uniform in the box"
    assert np.all(NoOpPolicy()(np.ones(2), None, rng) == 0)


def _heading_changes(kappa: float, steps: int = 2000) -> np.ndarray:
    policy, rng = VonMisesRandomWalk(kappa=kappa), np.random.default_rng(0)
    actions = np.stack([policy(np.zeros(2), None, rng) for _ in range(steps)])
    assert np.all(np.linalg.norm(actions, axis=-1) <= MAX_ACTION_NORM + 1e-6)
    headings = np.arctan2(actions[:, 1], actions[:, 0])
    return np.abs(np.angle(np.exp(1j * np.diff(headings))))


def test_von_mises_random_walk_is_smooth_for_large_kappa():
    smooth, rough = _heading_changes(50.0), _heading_changes(0.0)
    # For large kappa the turn is about N(0, 1/kappa): E|turn| = sqrt(2 / (pi * kappa)) ~ 0.113.
    assert smooth.mean() == pytest.approx(np.sqrt(2 / (np.pi * 50.0)), rel=0.15)
    assert rough.mean() == pytest.approx(np.pi / 2, rel=0.1), "kappa = 0 is a fresh uniform heading"
    policy, rng = VonMisesRandomWalk(kappa=50.0), np.random.default_rng(0)
    first = policy(np.zeros(2), None, rng)
    policy.reset()
    assert policy.heading is None
    assert policy(np.zeros((3, 2)), None, rng).shape == (3, 2), "batched walks"
    assert first.shape == (2,)


# ---------------------------------------------------------------------------------------------------------- adapter
class _TinyRenderEnv(gymnasium.Env):
    """A 1-D point with a Box observation; renders a 20 x 30 frame with a red column at the point."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(self, render_mode: str | None = "rgb_array") -> None:
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (2, 1), dtype=np.float64)
        self.action_space = spaces.Box(-0.1, 0.1, (1,), dtype=np.float32)
        self.x = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-0.5, 0.5))
        return np.array([[self.x], [0.0]]), {}

    def step(self, action):
        self.x = float(np.clip(self.x + float(action[0]), -1, 1))
        return np.array([[self.x], [float(action[0])]]), 0.0, False, False, {}

    def render(self):
        frame = np.zeros((20, 30, 3), np.uint8)
        frame[:, round((self.x + 1) / 2 * 29), 0] = 255
        return frame


def test_pixel_adapter_on_a_custom_env():
    env = PixelObservationAdapter(_TinyRenderEnv(), image_size=16)
    obs, info = env.reset(seed=0)
    assert obs.shape == (16, 16, 3) and obs.dtype == np.uint8 and obs in env.observation_space
    assert info["proprio"].dtype == np.float32 and info["proprio"].shape == (2,)
    assert info["proprio"][0] == pytest.approx(env.unwrapped.x)
    obs, _, _, _, info = env.step(np.array([0.1], np.float32))
    assert info["proprio"][1] == pytest.approx(0.1)
    # The bright column moves with the state: its resized position matches x.
    col = np.argmax(obs[..., 0].sum(axis=0))
    assert abs((col + 0.5) / 16 - (env.unwrapped.x + 1) / 2) < 1.5 / 16
    assert np.all(obs[..., 1:] == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)
    with pytest.raises(ValueError, match="render_mode"):
        PixelObservationAdapter(_TinyRenderEnv(render_mode=None))


def test_pixel_adapter_on_two_rooms_downsamples_the_frame():
    env = PixelObservationAdapter(TwoRoomsEnv(image_size=64), image_size=32)
    obs, info = env.reset(seed=0)
    full = env.unwrapped.render_state(info["state"])
    assert np.array_equal(info["proprio"], full.reshape(-1).astype(np.float32)), "original obs kept, flattened"
    pooled = full.reshape(32, 2, 32, 2, 3).astype(np.float64).mean(axis=(1, 3))  # independent 2x2 box filter
    assert np.abs(obs.astype(np.float64) - pooled).mean() < 6.0
    assert "state" in info, "inner info is kept"
