"""LeRobot v3 datasets in and out: the writer, the reader against our convention, hand-built layouts, errors."""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from jepa_world.data.episode_clips import EpisodeClips
from jepa_world.data.episode_formats import EPISODES, LEROBOT, episode_format, open_episodes
from jepa_world.data.episodes import EpisodeDataset, episode_filename, write_episode
from jepa_world.data.feature_cache import FeatureWindows
from jepa_world.data.lerobot import LeRobotEpisodes
from jepa_world.data.lerobot_writer import LeRobotWriter

CAMERA = "observation.images.top"
TOLERANCE = 3  # grey levels: the default video (libx264 yuv444p crf 0) differs by RGB <-> YUV rounding only


def _frames(n: int, size: int = 16, offset: int = 0) -> np.ndarray:
    """Smooth frames with a moving square: ``uint8 [n, size, size, 3]`` (frame i of them is global frame offset+i)."""
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        g = offset + i
        out[i] = np.stack([xx * 8 + g * 3, yy * 8, np.full_like(xx, 40 + 7 * g)], -1) % 256
        c = (2 * g) % (size - 4)
        out[i, 2:6, c : c + 4] = (250, 250, 250)
    return out


def _episodes(lengths=(6, 8, 7), size=16, states=True) -> list[dict]:
    rng = np.random.default_rng(0)
    out, offset = [], 0
    for steps in lengths:
        ep = {"frames": _frames(steps + 1, size, offset), "actions": rng.normal(size=(steps, 2)).astype(np.float32)}
        ep["states"] = rng.normal(size=(steps + 1, 3)).astype(np.float32) if states else None
        out.append(ep)
        offset += steps + 1
    return out


def _write(root: Path, episodes: list[dict], **kwargs) -> Path:
    with LeRobotWriter(root=root, camera=CAMERA, task="push", **kwargs) as writer:
        for ep in episodes:
            writer.add_episode(**ep)
    return root


def _ours(root: Path, episodes: list[dict]) -> Path:
    for i, ep in enumerate(episodes):
        write_episode(root / episode_filename(i), **ep)
    return root


# ---------------------------------------------------------------------------------------------- a hand-built dataset
def _build(root: Path, lengths=(5, 4), *, dtype="video", cameras=(CAMERA,), state=True, nan=None, drop_row=None,
           short_video=0, size=16, fps=10) -> Path:  # fmt: skip
    """Two (or more) episodes sharing one data parquet and one mp4 per camera, written with pyarrow and PyAV alone.

    Frame g (global) is `_frames` frame g; episode e's action at frame f is (100 e + f, -f), its state (e, f, 1).
    """
    features = {"action": {"dtype": "float32", "shape": [2], "names": ["a", "b"]}}
    if state:
        features["observation.state"] = {"dtype": "float32", "shape": [3], "names": None}
    for cam in cameras:
        features[cam] = {"dtype": dtype, "shape": [size, size, 3], "names": ["height", "width", "channels"]}
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        features[key] = {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1], "names": None}
    info = {"codebase_version": "v3.0", "fps": fps, "features": features, "chunks_size": 1000,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4" if dtype == "video"
            else None, "total_episodes": len(lengths)}  # fmt: skip
    frames = _frames(sum(lengths), size)
    rows, meta, start = [], [], 0
    for e, length in enumerate(lengths):
        for f in range(length):
            action = [100.0 * e + f, -float(f)]
            if nan == (e, f):
                action[0] = float("nan")
            row = {"action": action, "timestamp": f / fps, "frame_index": f, "episode_index": e, "index": start + f,
                   "task_index": 0}  # fmt: skip
            if state:
                row["observation.state"] = [float(e), float(f), 1.0]
            if dtype == "image":
                buffer = io.BytesIO()
                Image.fromarray(frames[start + f]).save(buffer, format="PNG")
                row[CAMERA] = {"bytes": buffer.getvalue(), "path": None}
            if drop_row != (e, f):
                rows.append(row)
        m = {"episode_index": e, "length": length, "data/chunk_index": 0, "data/file_index": 0,
             "dataset_from_index": start, "dataset_to_index": start + length}  # fmt: skip
        for cam in cameras if dtype == "video" else ():
            key = f"videos/{cam}"
            m.update({f"{key}/chunk_index": 0, f"{key}/file_index": 0, f"{key}/from_timestamp": start / fps,
                      f"{key}/to_timestamp": (start + length) / fps})  # fmt: skip
        meta.append(m)
        start += length
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    pq.write_table(pa.Table.from_pylist(meta), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "chunk-000" / "file-000.parquet")  # list<double>
    for cam in cameras if dtype == "video" else ():
        path = root / "videos" / cam / "chunk-000" / "file-000.mp4"
        path.parent.mkdir(parents=True)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width = stream.height = size
            stream.pix_fmt, stream.options = "yuv444p", {"crf": "0"}
            for g, frame in enumerate(frames[: len(frames) - short_video]):
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                vf.pts, vf.time_base = g, Fraction(1, fps)
                container.mux(stream.encode(vf))
            container.mux(stream.encode(None))
    return root


# --------------------------------------------------------------------------------------------------------- round trip
@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, list[dict]]:
    episodes = _episodes()
    return _write(tmp_path_factory.mktemp("lerobot") / "ds", episodes), episodes


def test_written_dataset_has_the_v3_layout_and_reads_back(written):
    root, episodes = written
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 3 and info["total_frames"] == 24
    assert info["features"][CAMERA]["dtype"] == "video" and info["features"]["action"]["shape"] == [2]
    for rel in ("data/chunk-000/file-000.parquet", f"videos/{CAMERA}/chunk-000/file-000.mp4", "meta/tasks.parquet",
                "meta/episodes/chunk-000/file-000.parquet", "meta/stats.json"):  # fmt: skip
        assert (root / rel).is_file(), rel
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert data.column("index").to_pylist() == list(range(24)) and data.column("action").type.list_size == 2
    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    assert tasks.column("__index_level_0__").to_pylist() == ["push"]  # the pandas index LeRobot reads
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["__index_level_0__"]
    ds = LeRobotEpisodes(root=root, window=2)
    assert episode_format(root) == LEROBOT and (ds.action_dim, ds.state_dim) == (2, 3)
    for e, ep in enumerate(episodes):
        assert np.abs(ds.episode_frames(e).astype(int) - ep["frames"]).max() <= TOLERANCE
        assert np.array_equal(ds.episodes[e].actions, ep["actions"])  # exact; the padded last action is dropped
        assert np.array_equal(ds.episodes[e].states, ep["states"])


def test_items_match_our_format_on_the_same_episodes(written, tmp_path):
    root, episodes = written
    ours = EpisodeDataset(root=_ours(tmp_path, episodes), window=3, frameskip=2, stride=2, normalize=False)
    lerobot = open_episodes(root=root, window=3, frameskip=2, stride=2, normalize=False)
    assert len(lerobot) == len(ours) > 0
    for i in range(len(ours)):
        a, b = ours[i], lerobot[i]
        assert torch.equal(a["actions"], b["actions"]) and torch.equal(a["states"], b["states"])
        assert (a["x"] - b["x"]).abs().max() <= TOLERANCE / 255 + 1e-6
        assert ours.window_rows(i)[1].tolist() == lerobot.window_rows(i)[1].tolist()


def test_a_windows_actions_are_the_actions_between_its_frames(written):
    root, episodes = written
    ds = LeRobotEpisodes(root=root, window=3, frameskip=2, normalize=False, image_size=8)
    for i in range(len(ds)):
        e, rows = ds.window_rows(i)
        s, item = int(rows[0]), ds[i]
        expected = episodes[e]["actions"][s : s + 4].reshape(2, 4)  # actions s..s+3 move frame s to s+4
        assert torch.equal(item["actions"], torch.from_numpy(expected))
        assert torch.equal(item["states"], torch.from_numpy(episodes[e]["states"][[s, s + 2, s + 4]]))
        assert item["x"].shape == (3, 3, 8, 8)


def test_files_roll_over_and_read_back(tmp_path):
    episodes = _episodes((3, 4, 2))
    root = _write(tmp_path / "ds", episodes, data_file_mb=1e-9, video_file_mb=1e-9, chunks_size=2)
    assert (root / "data" / "chunk-001" / "file-000.parquet").is_file()  # 3 files: 000, 001, then chunk 1
    assert (root / "videos" / CAMERA / "chunk-001" / "file-000.mp4").is_file()
    ds = LeRobotEpisodes(root=root, window=2, in_memory=True)
    for e, ep in enumerate(episodes):
        assert np.abs(ds.episode_frames(e).astype(int) - ep["frames"]).max() <= TOLERANCE
        assert np.array_equal(ds.episodes[e].actions, ep["actions"])


def test_writer_refuses_a_full_folder_and_overwrites_its_own(written, tmp_path):
    root, episodes = written
    with pytest.raises(ValueError, match="not empty; pass overwrite=True"):
        LeRobotWriter(root=root)
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="holds more than a LeRobot dataset"):
        LeRobotWriter(root=tmp_path, overwrite=True)
    copy = _write(tmp_path / "copy", episodes[:1])
    _write(copy, episodes[1:], overwrite=True)
    assert json.loads((copy / "meta" / "info.json").read_text())["total_episodes"] == 2
    with pytest.raises(ValueError, match="codec='nope' is no video encoder"):
        LeRobotWriter(root=tmp_path / "codec", codec="nope")
    with pytest.raises(ValueError, match="even frame size"):
        LeRobotWriter(root=tmp_path / "odd", pix_fmt="yuv420p").add_episode(
            frames=_frames(3, 15), actions=np.zeros((2, 2))
        )


# ---------------------------------------------------------------------------------- hand-built layouts, other paths
def test_two_episodes_sharing_one_mp4_and_one_parquet(tmp_path):
    root = _build(tmp_path, lengths=(5, 4))
    ds = LeRobotEpisodes(root=root, window=2)  # state_key auto: observation.state is there
    assert [ep.num_frames for ep in ds.episodes] == [5, 4] and ds.episodes[0].source == ds.episodes[1].source
    frames = _frames(9)
    assert np.abs(ds.episode_frames(1).astype(int) - frames[5:]).max() <= TOLERANCE  # located by from_timestamp
    assert ds.episodes[1].actions.tolist() == [[100.0 + f, -f] for f in range(3)]  # L-1 actions, last one dropped
    assert ds.episodes[1].states[:, :2].tolist() == [[1.0, f] for f in range(4)]
    assert len(ds) == 4 + 3


def test_an_image_camera_reads_its_frames_from_the_parquet_rows(tmp_path):
    root = _build(tmp_path, lengths=(3, 4), dtype="image", state=False)
    ds = open_episodes(root=root, window=2, uint8=True)
    assert ds.state_dim is None and "states" not in ds[0]
    assert np.array_equal(ds.episode_frames(1), _frames(7)[3:])  # PNG: lossless
    assert torch.equal(ds[2]["x"], torch.from_numpy(_frames(7)[3:5].transpose(0, 3, 1, 2).copy()))


def test_frozen_features_pretraining_clips_and_workers_on_a_lerobot_dataset(written):
    root, episodes = written
    ds = LeRobotEpisodes(root=root, window=3)
    cache = FeatureWindows(ds, lambda f: torch.from_numpy(f.reshape(len(f), -1)[:, :4].astype(np.float32)))
    e, rows = ds.window_rows(5)
    assert torch.equal(cache[5]["actions"], ds[5]["actions"]) and cache[5]["tokens"].shape == (3, 4)
    assert np.abs(cache[5]["tokens"].numpy() - episodes[e]["frames"][rows].reshape(3, -1)[:, :4]).max() <= TOLERANCE
    clips = EpisodeClips(root=root, num_frames=2, image_size=8, train=False)
    assert clips[0]["x"].shape == (3, 2, 8, 8)
    # A worker process opens its own videos. Spawned, not forked: a worker forked after this process decoded videos
    # (decord / FFmpeg threads) was killed by SIGSEGV about one run in three of the full suite on this machine.
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="spawn")
    first = next(iter(loader))
    assert torch.equal(first["actions"], torch.stack([ds[i]["actions"] for i in range(4)]))


# ---------------------------------------------------------------------------------------------------------- errors
def test_unknown_keys_name_what_the_dataset_has(tmp_path):
    root = _build(tmp_path / "one", cameras=(CAMERA,))
    with pytest.raises(ValueError, match=r"camera='observation.images.side' is not a video / image feature; .*top"):
        LeRobotEpisodes(root=root, camera="observation.images.side")
    with pytest.raises(ValueError, match=r"action_key='act' is not a numeric feature; the dataset has \['action', "):
        LeRobotEpisodes(root=root, action_key="act")
    with pytest.raises(ValueError, match=r"state_key='observation.joints' is not a numeric feature"):
        LeRobotEpisodes(root=root, state_key="observation.joints")
    two = _build(tmp_path / "two", cameras=(CAMERA, "observation.images.wrist"))
    with pytest.raises(ValueError, match=r"exactly one video / image feature, the dataset has several: \[.*top.*wrist"):
        LeRobotEpisodes(root=two)
    assert LeRobotEpisodes(root=two, camera="observation.images.wrist", window=2).frame_shape == (16, 16, 3)
    stateless = _build(tmp_path / "stateless", state=False)
    assert LeRobotEpisodes(root=stateless, window=2).state_dim is None  # auto: no observation.state, no states
    assert LeRobotEpisodes(root=root, window=2, state_key=None).state_dim is None
    with pytest.raises(ValueError, match=r"state_key='observation.state' is not a numeric feature; .*\['action'\]"):
        LeRobotEpisodes(root=stateless, state_key="observation.state")


def test_nan_actions_name_the_episode_and_step(tmp_path):
    with pytest.raises(
        ValueError, match=r"episode 1 \(data/chunk-000/file-000.parquet\): actions contain NaN at step 2"
    ):
        LeRobotEpisodes(root=_build(tmp_path / "a", nan=(1, 2)), window=2)
    LeRobotEpisodes(root=_build(tmp_path / "b", nan=(1, 3)), window=2)  # the dropped last action may be anything


def test_length_mismatches_name_the_episode(tmp_path):
    with pytest.raises(ValueError, match=r"episode 0 .*: the data file has 4 rows, meta/episodes says length 5"):
        LeRobotEpisodes(root=_build(tmp_path / "rows", drop_row=(0, 4)), window=2)
    with pytest.raises(ValueError, match=r"episode 1 .*: needs video frames 5 .. 8, the file has 7"):
        LeRobotEpisodes(root=_build(tmp_path / "video", short_video=2), window=2)
    root = _build(tmp_path / "segment")
    meta_path = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    table = pq.read_table(meta_path)
    to = table.column(f"videos/{CAMERA}/to_timestamp").to_pylist()
    column = table.schema.get_field_index(f"videos/{CAMERA}/to_timestamp")
    pq.write_table(table.set_column(column, f"videos/{CAMERA}/to_timestamp", pa.array([to[0] + 0.3, to[1]])), meta_path)
    with pytest.raises(ValueError, match=r"episode 0 .*: its video segment holds 8.0 frames, its data 5"):
        LeRobotEpisodes(root=root, window=2)


def test_a_folder_in_neither_format_or_an_old_lerobot_version_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    neither = r"in neither episode format: it holds no episode_\*\.npz files \(ours\) and no meta/info.json .*notes"
    with pytest.raises(ValueError, match=neither):
        open_episodes(root=tmp_path)
    old = tmp_path / "old" / "meta"
    old.mkdir(parents=True)
    (old / "info.json").write_text(json.dumps({"codebase_version": "v2.1"}))
    with pytest.raises(ValueError, match="codebase_version 'v2.1'; only v3.x is read"):
        open_episodes(root=tmp_path / "old")
    ours = _ours(tmp_path / "ours", _episodes((3,)))
    assert episode_format(ours) == EPISODES and isinstance(open_episodes(root=ours, window=2), EpisodeDataset)
    with pytest.raises(ValueError, match=r"\{'camera': 'cam'\} select the features of a LeRobot dataset"):
        open_episodes(root=ours, camera="cam")


# ------------------------------------------------------------------------------------------------------- end to end
def test_collect_as_lerobot_then_train_wm_on_it(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    from jepa_world import checkpoints
    from jepa_world.cli import main
    from jepa_world.config import load_config
    from jepa_world.training import train_world_model

    eps = tmp_path / "eps"
    argv = ["collect", "--episodes", "4", "--steps", "6", "--output", str(eps), "--image-size", "32", "--format",
            "lerobot"]  # fmt: skip
    assert main(argv) == 0 and "wrote 4 episodes" in capsys.readouterr().out
    assert json.loads((eps / "meta" / "jepa_world.json").read_text())["env_name"] == "two_rooms"
    over = {"train.output_dir": tmp_path / "run", "train.max_steps": 2, "train.batch_size": 4, "train.log_every": 1,
            "train.ckpt_every": 2, "train.progress": False, "train.tensorboard": False, "wm.episodes": eps,
            "wm.window": 4, "wm.predictor.use_states": True, "data.image_size": 32}  # fmt: skip
    summary = train_world_model(load_config([], [f"{k}={v}" for k, v in over.items()], command="train-wm"))
    state = checkpoints.load_checkpoint(checkpoints.list_checkpoints(tmp_path / "run" / "checkpoints")[-1])
    assert summary["step"] == 2 and state["meta"]["action_dim"] == 2 and state["meta"]["state_dim"] == 2


# ---------------------------------------------------------------------------------- issue 41: bad input, named
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data_file_mb": 0}, r"data_file_mb must be a positive finite number of megabytes, got 0"),
        ({"data_file_mb": -5}, r"data_file_mb must be .* got -5"),
        ({"video_file_mb": float("nan")}, r"video_file_mb must be a positive finite number .* got nan"),
        ({"video_file_mb": float("inf")}, r"video_file_mb must be .* got inf"),
        ({"gop": 0}, r"gop must be a positive int .* got 0"),
        ({"crf": -1}, r"crf must be an int in \[0, 63\] .* got -1"),
        ({"fps": 0}, r"fps must be a positive int, got 0"),
        ({"chunks_size": 0}, r"chunks_size must be a positive int, got 0"),
    ],
)
def test_writer_arguments_out_of_range_are_named_before_anything_is_written(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        LeRobotWriter(root=tmp_path / "ds", **kwargs)
    assert not (tmp_path / "ds").exists()


def _video(root: Path) -> Path:
    return root / "videos" / CAMERA / "chunk-000" / "file-000.mp4"


def _state(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_missing_video_names_the_file_and_the_episode(tmp_path):
    root = _build(tmp_path / "ds")
    _video(root).unlink()
    before = _state(root)
    with pytest.raises(
        ValueError, match=r"episode 0: its video videos/observation.images.top/.*file-000.mp4 is missing"
    ):
        LeRobotEpisodes(root=root, window=2)
    assert _state(root) == before


@pytest.mark.parametrize("keep", [0.5, 0.0], ids=["half", "zero-bytes"])
def test_a_truncated_video_names_the_file_and_the_episode(tmp_path, keep):
    root = _build(tmp_path / "ds")
    data = _video(root).read_bytes()
    _video(root).write_bytes(data[: int(len(data) * keep)])
    before = _state(root)
    with pytest.raises(ValueError, match=r"episode 0: its video videos/.*file-000.mp4 cannot be read \(truncated or"):
        LeRobotEpisodes(root=root, window=2)
    assert _state(root) == before


def test_totals_that_disagree_with_the_episodes_are_named(tmp_path):
    root = _build(tmp_path / "ds", lengths=(5, 4))
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "total_episodes": 3}))
    with pytest.raises(ValueError, match=r"meta/info.json says total_episodes=3, meta/episodes lists 2 episodes"):
        LeRobotEpisodes(root=root, window=2)
    info_path.write_text(json.dumps({**info, "total_frames": 12}))
    with pytest.raises(ValueError, match=r"says total_frames=12, meta/episodes lists 9 frames over its episodes"):
        LeRobotEpisodes(root=root, window=2)
    info_path.write_text(json.dumps({**info, "total_frames": 9}))
    assert [ep.num_frames for ep in LeRobotEpisodes(root=root, window=2).episodes] == [5, 4]
