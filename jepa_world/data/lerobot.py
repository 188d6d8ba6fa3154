"""LeRobot datasets (format v3.0) as world-model episodes: a lazy windowed dataset over a LeRobot folder.

Layout read (LeRobot's `LeRobotDataset` v3.0; writing one: `jepa_world.data.lerobot_writer`)
-------------------------------------------------------------------------------------------
- ``meta/info.json``: ``codebase_version`` ("v3.x"), ``fps``, ``features`` (``{key: {dtype, shape, names}}``; a
  camera has dtype ``video`` or ``image``), the path templates ``data_path``
  (``data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet``) and ``video_path``
  (``videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4``).
- ``meta/episodes/chunk-*/file-*.parquet``: one row per episode with ``episode_index``, ``length``,
  ``data/chunk_index``, ``data/file_index`` and, per video camera, ``videos/<key>/chunk_index``, ``.../file_index``,
  ``.../from_timestamp``, ``.../to_timestamp`` (``stats/*`` columns are not read).
- data parquet files, one row per frame: ``action``, ``observation.state``, ``timestamp`` (seconds from the episode's
  start), ``frame_index``, ``episode_index``, ``index``, ``task_index``; an ``image`` camera stores its encoded frames
  here. Several episodes share one data file and one mp4: frame ``i`` of an episode is the video frame at
  ``from_timestamp + timestamp[i]``, i.e. file frame ``round((from_timestamp + timestamp[i]) * fps)`` (constant-rate
  video starting at 0, as LeRobot writes it).

Episodes are the rows of one ``episode_index`` ordered by ``frame_index`` (which must run ``0 .. length-1``).
Metadata and the action / state columns are read at construction; frames are decoded per item, only those of the
window (videos with the readers of `jepa_world.data.video.readers`: decord where installed, else PyAV).

Alignment with our episode convention (`jepa_world.data.episodes`)
------------------------------------------------------------------
LeRobot records ``action[i]`` at frame ``i`` (the command sent after observing frame ``i``), so an episode of ``L``
frames becomes frames ``0 .. L-1`` (``[T+1, H, W, 3]``, ``T = L-1``), actions ``0 .. L-2`` (``[T, A]``: action ``t``
moves frame ``t`` to ``t+1``) and states ``0 .. L-1`` (``[T+1, S]``). The last frame's action leads nowhere in the
episode and is dropped (not read, not checked). Items are those of `EpisodeDataset` (`jepa_world.data.windows`).
"""

from __future__ import annotations

import io
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from jepa_world.data.video.files import open_video
from jepa_world.data.video.readers import PyAVReader
from jepa_world.data.windows import EpisodeWindows, check_window_args, nonfinite_message

INFO_FILE = "meta/info.json"
EPISODES_DIR = "meta/episodes"
TASKS_FILE = "meta/tasks.parquet"
STATS_FILE = "meta/stats.json"
CAMERA_DTYPES = ("video", "image")
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")  # every dataset has them
DEFAULT_STATE_KEY = "observation.state"
AUTO = "auto"  # state_key: the default state feature when the dataset has it, else no states
_MAX_OPEN = 8  # open video readers / parquet files kept per process


def read_info(root: str | Path) -> dict[str, Any] | None:
    """``meta/info.json`` of a LeRobot dataset as a dict, or None when the folder has none."""
    path = Path(root) / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _fail(root: Path, what: str) -> ValueError:
    return ValueError(f"LeRobot dataset {str(root)!r}: {what}")


def _numeric_keys(features: dict[str, dict]) -> list[str]:
    return sorted(k for k, f in features.items() if f.get("dtype") not in (*CAMERA_DTYPES, "string", "audio"))


def _pick_camera(root: Path, features: dict[str, dict], camera: str | None) -> str:
    cameras = sorted(k for k, f in features.items() if f.get("dtype") in CAMERA_DTYPES)
    if camera is None:
        if len(cameras) != 1:
            which = f"several: {cameras}" if cameras else "none"
            raise _fail(root, f"camera=None needs exactly one video / image feature, the dataset has {which}; pick one")
        return cameras[0]
    if camera not in cameras:
        raise _fail(root, f"camera={camera!r} is not a video / image feature; the dataset has {cameras}")
    return camera


def _pick_vector(root: Path, features: dict[str, dict], key: str, name: str) -> str:
    if key not in features or key not in _numeric_keys(features) or key in INDEX_FEATURES:
        keys = [k for k in _numeric_keys(features) if k not in INDEX_FEATURES]
        raise _fail(root, f"{name}={key!r} is not a numeric feature; the dataset has {keys}")
    return key


def _column(table: pa.Table, key: str) -> np.ndarray:
    """A numeric column, scalar or list-valued, as ``float32 [N, D]``."""
    col = table.column(key).combine_chunks()
    n = len(col)
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        if col.null_count:
            raise ValueError(f"{key} has {col.null_count} empty (null) rows")
        lengths = np.asarray(pc.list_value_length(col))
        if n and (lengths != lengths[0]).any():
            raise ValueError(f"{key} rows differ in length ({sorted(set(lengths.tolist()))[:4]})")
        values = col.flatten().to_numpy(zero_copy_only=False)
        values = values.reshape(n, int(lengths[0]) if n else 0)
    else:
        values = col.to_numpy(zero_copy_only=False).reshape(n, 1)
    if not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"{key} must be numeric, got {values.dtype}")
    return values.astype(np.float32)


def _read_episode_rows(root: Path, video_key: str | None) -> list[dict[str, Any]]:
    """The rows of ``meta/episodes`` (without ``stats/*``), sorted by ``episode_index``, checked for needed columns."""
    files = sorted((root / EPISODES_DIR).glob("chunk-*/file-*.parquet"))
    if not files:
        raise _fail(root, f"{EPISODES_DIR} holds no chunk-*/file-*.parquet files")
    need = ["episode_index", "length", "data/chunk_index", "data/file_index"]
    if video_key is not None:
        need += [f"videos/{video_key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")]
    rows: list[dict[str, Any]] = []
    for path in files:
        names = pq.read_schema(path).names
        missing = [c for c in need if c not in names]
        if missing:
            raise _fail(root, f"{path.relative_to(root)} lacks the columns {missing}")
        rows += pq.read_table(path, columns=need).to_pylist()
    rows.sort(key=lambda r: r["episode_index"])
    seen = [r["episode_index"] for r in rows]
    if len(set(seen)) != len(seen):
        raise _fail(root, f"{EPISODES_DIR} lists an episode_index twice (first of {sorted(seen)[:8]}...)")
    return rows


@dataclass(frozen=True)
class LeRobotEpisode:
    """One episode of L frames: actions ``float32 [L-1, A]`` and states ``[L, S]`` (or None) in RAM; its frames are
    frames ``rows`` (``int64 [L]``) of ``source``, the mp4 of a video camera or the data parquet of an image camera."""

    episode_index: int
    num_frames: int
    actions: np.ndarray
    states: np.ndarray | None
    source: Path
    rows: np.ndarray


class LeRobotEpisodes(EpisodeWindows):
    """Lazy windows over a LeRobot v3 dataset, with the interface and items of `EpisodeDataset` (`EpisodeWindows`).

    Args:
        root: Dataset folder (holds ``meta/info.json``).
        window: Frames per item T (>= 1).
        frameskip: Steps between consecutive frames k; the k actions in between are concatenated.
        stride: Step between window starts within an episode.
        image_size: Resize frames to this square size (bilinear, antialiased); None keeps the stored size.
        normalize: ImageNet mean/std normalisation of ``x``; False leaves it in [0, 1].
        in_memory: Decode every episode's frames into RAM at construction.
        uint8: Items' ``x`` stay ``uint8 [T, 3, H, W]`` when the frames are stored at ``image_size``.
        camera: The video / image feature giving the frames; None: the only one (an error lists several).
        action_key: The feature giving the actions.
        state_key: The feature giving the states; ``"auto"``: ``observation.state`` when present, else none; None:
            no states.
        reader: Video reader: auto (decord, else PyAV), decord or pyav.

    Raises:
        ValueError: A key that is not a feature (the message lists those there are), a length mismatch (an
            episode's parquet rows vs its ``length`` or vs its video frames), non-finite actions or states (the
            episode and step are named), or no episode long enough for one window.
    """

    def __init__(
        self,
        *,
        root: str | Path,
        window: int = 8,
        frameskip: int = 1,
        stride: int = 1,
        image_size: int | None = None,
        normalize: bool = True,
        in_memory: bool = False,
        uint8: bool = False,
        camera: str | None = None,
        action_key: str = "action",
        state_key: str | None = AUTO,
        reader: str = "auto",
    ) -> None:
        check_window_args(window=window, frameskip=frameskip, stride=stride, image_size=image_size)
        self.root = Path(root)
        info = read_info(self.root)
        if info is None or not str(info.get("codebase_version", "")).startswith("v3"):
            version = None if info is None else info.get("codebase_version")
            raise _fail(self.root, f"not a LeRobot v3 dataset ({INFO_FILE} codebase_version={version!r})")
        self.info, features = info, info.get("features", {})
        self.window, self.frameskip, self.stride = window, frameskip, stride
        self.image_size, self.normalize, self.uint8, self.reader = image_size, normalize, uint8, reader
        self.camera = _pick_camera(self.root, features, camera)
        self.action_key = _pick_vector(self.root, features, action_key, "action_key")
        if state_key == AUTO:
            state_key = DEFAULT_STATE_KEY if DEFAULT_STATE_KEY in features else None
        self.state_key = None if state_key is None else _pick_vector(self.root, features, state_key, "state_key")
        self.is_video = features[self.camera]["dtype"] == "video"
        self.fps = float(features[self.camera].get("info", {}).get("video.fps") or info["fps"])
        self._handles: OrderedDict[Path, Any] = OrderedDict()  # open readers of this process
        self._pid = os.getpid()
        self._index_windows(self._load_episodes(), where=f"LeRobot dataset {str(self.root)!r}")
        self.frame_shape = tuple(self._decode(0, np.array([0])).shape[1:])  # (H, W, 3)
        if uint8 and image_size is not None:
            self.uint8 = self.frame_shape[:2] == (image_size, image_size)
        self._arrays: list[np.ndarray] | None = None
        if in_memory:
            self._arrays = [self._decode(e, np.arange(ep.num_frames)) for e, ep in enumerate(self.episodes)]

    # ------------------------------------------------------------------------------------------------ construction
    def _load_episodes(self) -> list[LeRobotEpisode]:
        if self.is_video and not self.info.get("video_path"):
            raise _fail(self.root, f"camera {self.camera!r} is a video feature but {INFO_FILE} has no video_path")
        rows = _read_episode_rows(self.root, self.camera if self.is_video else None)
        by_file: dict[tuple[int, int], list[dict]] = {}
        for row in rows:
            by_file.setdefault((row["data/chunk_index"], row["data/file_index"]), []).append(row)
        episodes: dict[int, LeRobotEpisode] = {}
        for (chunk, file), group in by_file.items():
            path = self.root / self.info["data_path"].format(chunk_index=chunk, file_index=file)
            for ep in self._episodes_of_file(path, group):
                episodes[ep.episode_index] = ep
        ordered = [episodes[r["episode_index"]] for r in rows]
        self._check_totals(ordered)
        if self.is_video:
            self._check_video_lengths(ordered, rows)
        return ordered

    def _episodes_of_file(self, path: Path, group: list[dict]) -> list[LeRobotEpisode]:
        rel = path.relative_to(self.root)
        if not path.is_file():
            raise _fail(self.root, f"episode {group[0]['episode_index']}: its data file {rel} is missing")
        keys = [k for k in (self.action_key, self.state_key) if k is not None]
        names = pq.read_schema(path).names
        missing = [k for k in ("episode_index", "frame_index", "timestamp", *keys) if k not in names]
        if missing:
            raise _fail(self.root, f"{rel} lacks the columns {missing} (it has {names})")
        table = pq.read_table(path, columns=["episode_index", "frame_index", "timestamp", *keys])
        try:
            vectors = {k: _column(table, k) for k in keys}
        except ValueError as err:
            raise _fail(self.root, f"{rel}: {err}") from None
        episode_col = table.column("episode_index").to_numpy()
        frame_col = table.column("frame_index").to_numpy()
        time_col = table.column("timestamp").to_numpy().astype(np.float64)
        out = []
        for meta in group:
            e, length = int(meta["episode_index"]), int(meta["length"])
            where = f"episode {e} ({rel})"
            rows = np.flatnonzero(episode_col == e)
            rows = rows[np.argsort(frame_col[rows], kind="stable")]
            if len(rows) != length:
                raise _fail(self.root, f"{where}: the data file has {len(rows)} rows, meta/episodes says length "
                                       f"{length}")  # fmt: skip
            if not np.array_equal(frame_col[rows], np.arange(length)):
                raise _fail(self.root, f"{where}: frame_index is not 0 .. {length - 1}")
            if length < 2:
                raise _fail(self.root, f"{where}: has {length} frame; an episode needs at least 2 (1 action)")
            actions = vectors[self.action_key][rows[:-1]]  # action i moves frame i to i+1; the last one is dropped
            states = vectors[self.state_key][rows] if self.state_key is not None else None
            for name, values in (("actions", actions), ("states", states)):
                problem = None if values is None else nonfinite_message(values, name)
                if problem is not None:
                    raise _fail(self.root, f"{where}: {problem}")
            if self.is_video:
                chunk, file = meta[self._vcol("chunk_index")], meta[self._vcol("file_index")]
                video = self.info["video_path"].format(video_key=self.camera, chunk_index=chunk, file_index=file)
                source = self.root / video
                offset = float(meta[self._vcol("from_timestamp")])
                frame_rows = np.rint((offset + time_col[rows]) * self.fps).astype(np.int64)
            else:
                source, frame_rows = path, rows.astype(np.int64)
            out.append(LeRobotEpisode(e, length, actions, states, source, frame_rows))
        return out

    def _check_totals(self, episodes: list[LeRobotEpisode]) -> None:
        """info.json's totals agree with meta/episodes (a half-written or edited dataset does not load quietly)."""
        found = {"total_episodes": len(episodes), "total_frames": sum(ep.num_frames for ep in episodes)}
        for key, value in found.items():
            recorded = self.info.get(key)
            if recorded is not None and int(recorded) != value:
                what = "episodes" if key == "total_episodes" else "frames over its episodes"
                raise _fail(self.root, f"{INFO_FILE} says {key}={recorded}, meta/episodes lists {value} {what} "
                                       "(a half-written or edited dataset? write it again)")  # fmt: skip

    def _vcol(self, name: str) -> str:
        return f"videos/{self.camera}/{name}"

    def _check_video_lengths(self, episodes: list[LeRobotEpisode], rows: list[dict]) -> None:
        """Every episode's frames exist in its mp4, and its [from, to) segment holds `length` frames (+-1)."""
        counts: dict[Path, int] = {}
        for ep, meta in zip(episodes, rows):
            segment = (float(meta[self._vcol("to_timestamp")]) - float(meta[self._vcol("from_timestamp")])) * self.fps
            rel = ep.source.relative_to(self.root)
            if abs(segment - ep.num_frames) > 1:
                raise _fail(self.root, f"episode {ep.episode_index} ({rel}): its video segment holds {segment:.1f} "
                                       f"frames, its data {ep.num_frames}")  # fmt: skip
            if ep.source not in counts:
                if not ep.source.is_file():
                    raise _fail(self.root, f"episode {ep.episode_index}: its video {rel} is missing")
                try:
                    with open_video(ep.source, reader=self.reader) as video:
                        counts[ep.source] = video.num_frames
                except (OSError, ValueError, RuntimeError) as err:  # truncated, zero bytes, not a video
                    why = str(err).replace(str(ep.source), rel.as_posix()).splitlines()[0][:300]
                    raise _fail(self.root, f"episode {ep.episode_index}: its video {rel} cannot be read (truncated or "
                                           f"damaged? {why})") from None  # fmt: skip
            if ep.rows.min() < 0 or ep.rows.max() >= counts[ep.source]:
                raise _fail(self.root, f"episode {ep.episode_index} ({rel}): needs video frames {ep.rows.min()} .. "
                                       f"{ep.rows.max()}, the file has {counts[ep.source]}")  # fmt: skip

    # ------------------------------------------------------------------------------------------------------ frames
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = OrderedDict()  # open files stay in their process
        state.pop("_inherited", None)
        return state

    def _handle(self, path: Path) -> Any:
        if self._pid != os.getpid():  # a forked DataLoader worker: never share the parent's file offsets
            # ... and never destroy the parent's readers here: freeing a decoder (FFmpeg state, decord threads) that
            # the parent created crashes a forked child now and then (seen: a worker killed by SIGSEGV in CI). They
            # stay referenced, unused, until the worker exits.
            self._inherited = [*getattr(self, "_inherited", []), self._handles]
            self._handles, self._pid = OrderedDict(), os.getpid()
        if path not in self._handles:
            if len(self._handles) >= _MAX_OPEN:
                _, old = self._handles.popitem(last=False)
                if hasattr(old, "close"):
                    old.close()
            self._handles[path] = open_video(path, reader=self.reader) if self.is_video else pq.ParquetFile(path)
        self._handles.move_to_end(path)
        return self._handles[path]

    def _read(self, episode: int, name: str, rows: np.ndarray) -> np.ndarray:
        if name == "actions":
            return self.episodes[episode].actions[rows]
        if name == "states":
            return self.episodes[episode].states[rows]
        return self._arrays[episode][rows] if self._arrays is not None else self._decode(episode, rows)

    def _source(self, episode: int) -> Path:
        return self.episodes[episode].source

    def _decode(self, episode: int, frames: np.ndarray) -> np.ndarray:
        """Frames ``uint8 [N, H, W, 3]`` at positions ``frames`` of episode number ``episode``."""
        ep = self.episodes[episode]
        rows = ep.rows[frames]
        if not self.is_video:
            return self._read_images(ep.source, rows)
        video = self._handle(ep.source)
        try:
            return video.get(rows.tolist())
        except Exception as err:
            if video.name == "pyav":
                raise _fail(self.root, f"episode {ep.episode_index}: cannot decode {ep.source} ({err})") from err
            self._handles[ep.source] = PyAVReader(ep.source)  # decord failed on this file: PyAV from now on
            return self._handles[ep.source].get(rows.tolist())

    def _read_images(self, path: Path, rows: np.ndarray) -> np.ndarray:
        """Encoded frames of an ``image`` camera at parquet ``rows``, read from their row groups only."""
        parquet = self._handle(path)
        sizes = [parquet.metadata.row_group(g).num_rows for g in range(parquet.metadata.num_row_groups)]
        bounds = np.cumsum([0, *sizes])  # first row of each row group
        group_of = np.searchsorted(bounds, rows, side="right") - 1
        groups = sorted({int(g) for g in group_of})
        table = parquet.read_row_groups(groups, columns=[self.camera])
        offset = dict(zip(groups, np.cumsum([0, *(sizes[g] for g in groups[:-1])])))  # group -> its first row there
        local = [int(offset[int(g)] + r - bounds[g]) for r, g in zip(rows, group_of)]
        images = []
        for cell in table.column(self.camera).take(pa.array(local)).to_pylist():
            data = cell.get("bytes") if isinstance(cell, dict) else cell
            source = io.BytesIO(data) if data is not None else self.root / cell["path"]
            images.append(np.asarray(Image.open(source).convert("RGB")))
        return np.stack(images)
