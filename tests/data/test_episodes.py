"""Tests for jepa_world.data.episodes: the on-disk format, collection, the lazy windowed dataset, npz loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from jepa_world.data.episodes import (
    FORMAT_VERSION,
    EpisodeDataset,
    episode_filename,
    load_npz_trajectory,
    read_metadata,
    read_npz_header,
    write_episode,
    write_metadata,
)
from jepa_world.data.transforms import IMAGENET_MEAN, IMAGENET_STD, uint8_to_float

gymnasium = pytest.importorskip("gymnasium")

from jepa_world.envs import TwoRoomsEnv  # noqa: E402
from jepa_world.envs.collect import collect_episodes  # noqa: E402
from jepa_world.envs.geometry import MAX_ACTION_NORM  # noqa: E402

FRANKA = Path(__file__).resolve().parents[3] / "shared" / "data" / "franka_example_traj.npz"
NUM_EPISODES, STEPS = 3, 8


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("two_rooms")
    return collect_episodes(
        env_name="two_rooms", num_episodes=NUM_EPISODES, steps=STEPS, output_dir=root, seed=3, progress=False
    )


def _raw(root: Path, i: int) -> dict[str, np.ndarray]:
    with np.load(root / episode_filename(i)) as data:
        return {k: data[k] for k in data.files}


def _random_episode(rng: np.random.Generator, steps: int, action_dim: int = 2, state_dim: int | None = 3) -> dict:
    episode = {
        "frames": rng.integers(0, 256, size=(steps + 1, 12, 12, 3), dtype=np.uint8),
        "actions": rng.normal(size=(steps, action_dim)).astype(np.float32),
    }
    if state_dim is not None:
        episode["states"] = rng.normal(size=(steps + 1, state_dim)).astype(np.float32)
    return episode


# ---------------------------------------------------------------------------------------------------------- collection
def test_collected_files_shapes_and_metadata(collected):
    files = sorted(p.name for p in collected.glob("episode_*.npz"))
    assert files == [episode_filename(i) for i in range(NUM_EPISODES)] == [f"episode_{i:06d}.npz" for i in range(3)]
    for i in range(NUM_EPISODES):
        ep = _raw(collected, i)
        assert ep["frames"].shape == (STEPS + 1, 64, 64, 3) and ep["frames"].dtype == np.uint8
        assert ep["actions"].shape == (STEPS, 2) and ep["actions"].dtype == np.float32
        assert ep["states"].shape == (STEPS + 1, 2) and ep["states"].dtype == np.float32
        assert np.all(np.linalg.norm(ep["actions"], axis=-1) <= MAX_ACTION_NORM + 1e-5)
    meta = read_metadata(collected)
    assert meta == json.loads((collected / "metadata.json").read_text())
    expected = {
        "format_version": FORMAT_VERSION,
        "env_name": "two_rooms",
        "image_size": 64,
        "action_dim": 2,
        "state_dim": 2,
        "num_episodes": NUM_EPISODES,
        "steps": STEPS,
        "policy": "von_mises",
        "seed": 3,
    }
    assert {k: meta[k] for k in expected} == expected
    assert meta["episode_lengths"] == [STEPS] * NUM_EPISODES


def test_frames_come_first_in_time(collected):
    """frames[t] shows states[t]; actions[t] moves states[t] to states[t+1] (checked with the simulator)."""
    env = TwoRoomsEnv()
    for i in range(NUM_EPISODES):
        ep = _raw(collected, i)
        for t in range(STEPS + 1):
            assert np.array_equal(ep["frames"][t], env.render_state(ep["states"][t]))
        nxt = env.transition(ep["states"][:-1].astype(np.float64), ep["actions"].astype(np.float64))
        assert np.allclose(nxt, ep["states"][1:], atol=1e-4)
        assert np.abs(np.diff(ep["states"], axis=0)).max() > 0.1, "the random walk should move"


def test_collection_is_deterministic_from_seed(tmp_path):
    kwargs = {"env_name": "point_arena", "num_episodes": 2, "steps": 5, "progress": False, "image_size": 32}
    a = collect_episodes(output_dir=tmp_path / "a", seed=1, **kwargs)
    b = collect_episodes(output_dir=tmp_path / "b", seed=1, **kwargs)
    c = collect_episodes(output_dir=tmp_path / "c", seed=2, **kwargs)
    for i in range(2):
        ra, rb, rc = _raw(a, i), _raw(b, i), _raw(c, i)
        assert all(np.array_equal(ra[k], rb[k]) for k in ra)
        assert not np.array_equal(ra["states"], rc["states"])
    assert _raw(a, 0)["frames"].shape == (6, 32, 32, 3)
    with pytest.raises(ValueError, match="overwrite"):
        collect_episodes(output_dir=tmp_path / "a", seed=1, **kwargs)
    collect_episodes(output_dir=tmp_path / "a", seed=2, overwrite=True, **kwargs)
    assert np.array_equal(_raw(tmp_path / "a", 1)["states"], _raw(c, 1)["states"])


def test_collection_with_a_callable_policy(tmp_path):
    def right(state, goal, rng):
        assert goal is None and state.shape == (2,)
        return np.array([1.0, 0.0], np.float32)

    root = collect_episodes(
        env_name="two_rooms", num_episodes=1, steps=4, output_dir=tmp_path, policy=right, progress=False
    )
    ep = _raw(root, 0)
    assert np.allclose(ep["actions"], [[1.0, 0.0]] * 4)
    assert "right" in read_metadata(root)["policy"]


class _TinyPixelEnv(gymnasium.Env):
    """A 2-D point with a Box observation and an rgb_array render (a generic gymnasium env for collection)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}  # noqa: RUF012

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.action_space = gymnasium.spaces.Box(-0.2, 0.2, (2,), dtype=np.float32)
        self.p = np.zeros(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.p = self.np_random.uniform(-0.5, 0.5, size=2)
        return self.p.astype(np.float32), {}

    def step(self, action):
        self.p = np.clip(self.p + np.asarray(action, dtype=np.float64), -1, 1)
        return self.p.astype(np.float32), 0.0, False, False, {}

    def render(self):
        frame = np.zeros((40, 40, 3), np.uint8)
        r, c = ((self.p + 1) / 2 * 39).round().astype(int)
        frame[c, r] = 255
        return frame


def test_collection_from_a_generic_gymnasium_env(tmp_path):
    env_id = "jepa_world_test/TinyPixel-v0"
    if env_id not in gymnasium.registry:
        gymnasium.register(id=env_id, entry_point=_TinyPixelEnv)
    root = collect_episodes(
        env_name=env_id, num_episodes=2, steps=6, output_dir=tmp_path, policy="random", image_size=16, progress=False
    )
    ep = _raw(root, 1)
    assert ep["frames"].shape == (7, 16, 16, 3) and ep["states"].shape == (7, 2)
    assert np.all(np.abs(ep["actions"]) <= 0.2 + 1e-6)
    expected = np.clip(ep["states"][:-1] + ep["actions"], -1, 1)  # the toy dynamics, from the proprio states
    assert np.allclose(expected, ep["states"][1:], atol=1e-5)
    assert read_metadata(root)["state_dim"] == 2
    with pytest.raises(ValueError, match="only defined for Two-Rooms"):
        collect_episodes(env_name=env_id, num_episodes=1, steps=2, output_dir=tmp_path / "x", progress=False)


# ---------------------------------------------------------------------------------------------------------- dataset
def _expected_x(frames: np.ndarray, normalize: bool) -> np.ndarray:
    x = frames.transpose(0, 3, 1, 2).astype(np.float64) / 255.0
    if normalize:
        x = (x - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    return x


@pytest.mark.parametrize("in_memory", [False, True], ids=["lazy", "in_memory"])
@pytest.mark.parametrize("normalize", [False, True])
def test_dataset_windows_match_raw_arrays(collected, normalize, in_memory):
    window = 4
    ds = EpisodeDataset(root=collected, window=window, normalize=normalize, in_memory=in_memory)
    per_episode = STEPS + 1 - window + 1
    assert len(ds) == NUM_EPISODES * per_episode and ds.num_skipped == 0
    assert ds.action_dim == 2 and ds.state_dim == 2
    seen = set()
    for i in range(len(ds)):
        path, start = ds.window_location(i)
        seen.add((path.name, start))
        raw = _raw(collected, int(path.stem.split("_")[1]))
        item = ds[i]
        assert set(item) == {"x", "actions", "states"}
        assert item["x"].shape == (window, 3, 64, 64) and item["x"].dtype == torch.float32
        assert np.allclose(item["x"].numpy(), _expected_x(raw["frames"][start : start + window], normalize), atol=1e-5)
        assert torch.equal(item["actions"], torch.from_numpy(raw["actions"][start : start + window - 1]))
        assert torch.equal(item["states"], torch.from_numpy(raw["states"][start : start + window]))
    assert len(seen) == len(ds), "every window is distinct"


def test_frameskip_concatenates_action_blocks_and_stride_spaces_starts(collected):
    ds = EpisodeDataset(root=collected, window=3, frameskip=2, normalize=False)
    span = (3 - 1) * 2 + 1
    assert len(ds) == NUM_EPISODES * (STEPS + 1 - span + 1)
    for i in (0, 3, len(ds) - 1):
        path, s = ds.window_location(i)
        raw = _raw(collected, int(path.stem.split("_")[1]))
        item = ds[i]
        assert item["actions"].shape == (2, 4)
        for j in range(2):
            block = np.concatenate([raw["actions"][s + 2 * j], raw["actions"][s + 2 * j + 1]])
            assert np.array_equal(item["actions"][j].numpy(), block)
        assert np.array_equal(item["states"].numpy(), raw["states"][[s, s + 2, s + 4]])
        assert np.allclose(item["x"].numpy(), _expected_x(raw["frames"][[s, s + 2, s + 4]], False), atol=1e-6)
    strided = EpisodeDataset(root=collected, window=4, stride=3)
    assert [strided.window_location(i)[1] for i in range(len(strided))] == [0, 3] * NUM_EPISODES


def test_keys_and_collate(collected):
    ds = EpisodeDataset(root=collected, window=4)
    for a, b in ((ds[5], ds[(5, 1234)]), (ds[-1], ds[len(ds) - 1])):
        assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(IndexError):
        ds[len(ds)]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["x"].shape == (4, 4, 3, 64, 64) and batch["actions"].shape == (4, 3, 2)


def test_resize_and_uncompressed_memmap_path(tmp_path):
    for compress in (True, False):  # the same episodes in both layouts
        rng = np.random.default_rng(0)
        for i in range(2):
            write_episode(tmp_path / str(compress) / episode_filename(i), compress=compress, **_random_episode(rng, 6))
    packed, stored = (EpisodeDataset(root=tmp_path / str(c), window=5) for c in (True, False))
    assert read_npz_header(tmp_path / "False" / episode_filename(0))["frames"].offset is not None
    assert read_npz_header(tmp_path / "True" / episode_filename(0))["frames"].offset is None
    assert len(packed) == len(stored) == 2 * 3
    for i in range(len(packed)):
        a, b = packed[i], stored[i]
        assert all(torch.equal(a[k], b[k]) for k in a)
    # Resizing a smooth (linear ramp) image: any sensible filter agrees with a 2x2 box average away from borders.
    t, r, c, ch = np.meshgrid(np.arange(3), np.arange(12), np.arange(12), np.arange(3), indexing="ij")
    ramp = (8 * r + 4 * c + 30 * ch + t).astype(np.uint8)  # [3, 12, 12, 3]
    write_episode(tmp_path / "ramp" / episode_filename(0), frames=ramp, actions=np.zeros((2, 1), np.float32))
    x = EpisodeDataset(root=tmp_path / "ramp", window=2, image_size=6, normalize=False)[0]["x"]
    assert x.shape == (2, 3, 6, 6)
    pooled = (ramp[:2] / 255.0).reshape(2, 6, 2, 6, 2, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2)
    assert np.allclose(x.numpy()[..., 1:-1, 1:-1], pooled[..., 1:-1, 1:-1], atol=2e-3)


def test_episodes_without_states(tmp_path):
    rng = np.random.default_rng(1)
    write_episode(tmp_path / episode_filename(0), **_random_episode(rng, 5, state_dim=None))
    ds = EpisodeDataset(root=tmp_path, window=3)
    assert "states" not in ds[0] and ds.state_dim is None


# ---------------------------------------------------------------------------------------------------------- errors
def test_write_episode_rejects_bad_episodes(tmp_path):
    rng = np.random.default_rng(2)
    ep = _random_episode(rng, 16)
    bad = dict(ep, actions=ep["actions"].copy())
    bad["actions"][5, 1] = np.nan
    with pytest.raises(ValueError, match=r"^episode_000003\.npz: actions contain NaN at step 5$"):
        write_episode(tmp_path / "episode_000003.npz", **bad)
    with pytest.raises(ValueError, match=r"frames has 17 steps but actions has 17; expected 16"):
        write_episode(tmp_path / "episode_000004.npz", **dict(ep, actions=np.zeros((17, 2), np.float32)))
    with pytest.raises(ValueError, match=r"states contain inf at step 2"):
        states = ep["states"].copy()
        states[2, 0] = np.inf
        write_episode(tmp_path / "e.npz", **dict(ep, states=states))
    with pytest.raises(ValueError, match=r"frames has 17 steps but states has 16; expected 17"):
        write_episode(tmp_path / "e.npz", **dict(ep, states=ep["states"][:-1]))
    with pytest.raises(ValueError, match=r"frames must be uint8"):
        write_episode(tmp_path / "e.npz", **dict(ep, frames=ep["frames"].astype(np.float32)))
    assert not list(tmp_path.iterdir()), "nothing written for invalid episodes"


def test_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="no episode_"):
        EpisodeDataset(root=tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        EpisodeDataset(root=tmp_path / "missing")
    rng = np.random.default_rng(3)
    short = tmp_path / "short"
    write_episode(short / episode_filename(0), **_random_episode(rng, 3))
    with pytest.raises(ValueError, match="none of the 1 episodes"):
        EpisodeDataset(root=short, window=8)
    write_episode(short / episode_filename(1), **_random_episode(rng, 10))
    with pytest.warns(UserWarning, match="1 of 2 episodes"):
        ds = EpisodeDataset(root=short, window=8)
    assert ds.num_skipped == 1 and len(ds) == 4

    # Files written without validation (e.g. by a user's own script) are caught when the dataset is built, whichever
    # windows a run would have drawn (not only when a window holding the bad step happens to be read).
    nan_dir = tmp_path / "nan"
    nan_dir.mkdir()
    ep = _random_episode(rng, 6)
    ep["actions"][4, 0] = np.nan
    np.savez(nan_dir / episode_filename(7), **ep)
    for in_memory in (False, True):
        with pytest.raises(ValueError, match=r"episode_000007\.npz: actions contain NaN at step 4"):
            EpisodeDataset(root=nan_dir, window=3, in_memory=in_memory)
    ep["actions"][4, 0] = 0.0
    ep["states"] = rng.normal(size=(7, 2)).astype(np.float32)
    ep["states"][6, 1] = np.inf
    np.savez(nan_dir / episode_filename(7), **ep)
    with pytest.raises(ValueError, match=r"episode_000007\.npz: states contain inf at step 6"):
        EpisodeDataset(root=nan_dir, window=3)
    bad_len = tmp_path / "len"
    bad_len.mkdir()
    np.savez(bad_len / episode_filename(0), **dict(ep, actions=ep["actions"][:-2]))
    with pytest.raises(ValueError, match=r"episode_000000\.npz: frames has 7 steps but actions has 4; expected 6"):
        EpisodeDataset(root=bad_len, window=2)
    mixed = tmp_path / "mixed"
    write_episode(mixed / episode_filename(0), **_random_episode(rng, 4))
    write_episode(mixed / episode_filename(1), **_random_episode(rng, 4, action_dim=3))
    with pytest.raises(ValueError, match="action dim 3"):
        EpisodeDataset(root=mixed, window=2)
    with pytest.raises(ValueError, match="window"):
        EpisodeDataset(root=short, window=0)


def test_write_metadata_round_trip(tmp_path):
    write_metadata(tmp_path, {"env_name": "my_robot", "action_dim": 7})
    assert read_metadata(tmp_path) == {"format_version": FORMAT_VERSION, "env_name": "my_robot", "action_dim": 7}
    assert read_metadata(tmp_path / "nothing") is None


# ---------------------------------------------------------------------------------------------------------- npz loading
def test_load_npz_trajectory_reads_our_format(collected):
    traj = load_npz_trajectory(collected / episode_filename(1))
    raw = _raw(collected, 1)
    assert all(np.array_equal(traj[k], raw[k]) for k in ("frames", "actions", "states"))


def test_load_npz_trajectory_derives_actions_from_states(tmp_path):
    states = np.array([[0.0, 3.1], [1.0, -3.1], [1.5, -3.0]], np.float32)
    frames = np.zeros((1, 3, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "robot.npz", observations=frames, states=states[None])
    plain = load_npz_trajectory(tmp_path / "robot.npz")
    assert plain["frames"].shape == (3, 8, 8, 3)
    assert np.allclose(plain["actions"], np.diff(states, axis=0))
    wrapped = load_npz_trajectory(tmp_path / "robot.npz", angle_dims=[1])
    assert np.allclose(wrapped["actions"][:, 1], [2 * np.pi - 6.2, 0.1], atol=1e-5), "wrapped across +-pi"
    np.savez(tmp_path / "two.npz", observations=np.zeros((2, 3, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="batch of 2"):
        load_npz_trajectory(tmp_path / "two.npz")
    np.savez(tmp_path / "frames_only.npz", frames=frames[0])
    assert load_npz_trajectory(tmp_path / "frames_only.npz")["actions"] is None


@pytest.mark.skipif(not FRANKA.is_file(), reason=f"shared Franka sample not present at {FRANKA}")
def test_load_franka_sample():
    with np.load(FRANKA) as data:
        obs, states = data["observations"], data["states"]
    traj = load_npz_trajectory(FRANKA)
    assert traj["frames"].shape == (2, 256, 256, 3) and traj["frames"].dtype == np.uint8
    assert np.array_equal(traj["frames"], obs[0])
    assert traj["states"].shape == (2, 7) and np.array_equal(traj["states"], states[0])
    assert traj["actions"].shape == (1, 7)
    assert np.allclose(traj["actions"][0], states[0, 1] - states[0, 0])


def test_uint8_items_convert_to_the_float_items(collected):
    float_ds = EpisodeDataset(root=collected, window=3)
    u8_ds = EpisodeDataset(root=collected, window=3, uint8=True, image_size=64)
    assert u8_ds.uint8 and not float_ds.uint8
    batch = torch.stack([u8_ds[i]["x"] for i in range(4)])
    assert batch.dtype == torch.uint8 and batch.shape == (4, 3, 3, 64, 64)
    expected = torch.stack([float_ds[i]["x"] for i in range(4)])
    torch.testing.assert_close(uint8_to_float(batch), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(uint8_to_float(batch, normalize=False), batch.float() / 255, atol=1e-6, rtol=0)
    # Episodes stored at another size than image_size are resized as floats instead.
    assert not EpisodeDataset(root=collected, window=3, uint8=True, image_size=32).uint8
    with pytest.raises(ValueError, match="uint8"):
        uint8_to_float(batch.float())


# ---------------------------------------------------------------------------------------------------------- env states
def test_env_states_are_stored_exactly_validated_and_ignored_by_the_dataset(tmp_path):
    from jepa_world.data.episodes import read_env_states

    rng = np.random.default_rng(0)
    ep = _random_episode(rng, steps=5)
    env_states = rng.normal(size=(6, 10)) * 1e3  # float64 values a float32 copy would round
    write_episode(tmp_path / episode_filename(0), **ep, env_states=env_states)
    write_episode(tmp_path / episode_filename(1), **ep)  # an episode as written before env_states existed
    assert np.array_equal(read_env_states(tmp_path / episode_filename(0)), env_states)
    assert read_env_states(tmp_path / episode_filename(1)) is None
    ds = EpisodeDataset(root=tmp_path, window=2, normalize=False)
    assert "env_states" not in ds[0] and torch.equal(ds[0]["states"], torch.from_numpy(ep["states"][:2]))
    with pytest.raises(ValueError, match=r"env_states must be \[T\+1, E\] = \[6, E\]"):
        write_episode(tmp_path / "bad.npz", **ep, env_states=env_states[:-1])
    env_states[2, 3] = np.nan
    with pytest.raises(ValueError, match="env_states contain NaN"):
        write_episode(tmp_path / "bad.npz", **ep, env_states=env_states)
    assert not (tmp_path / "bad.npz").exists()
