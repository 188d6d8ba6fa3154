"""Writing LeRobot datasets (format v3.0): our episodes as a folder LeRobot's `LeRobotDataset` and our reader open.

`LeRobotWriter` takes episodes in our convention (`jepa_world.data.episodes`: frames ``[T+1, H, W, 3]``, actions
``[T, A]``, states ``[T+1, S]``) one at a time and writes, as LeRobot's recorder does:

- ``data/chunk-000/file-000.parquet``: one row per frame, columns ``action`` (float32 list of A), ``observation.state``,
  ``timestamp`` (float32, ``frame_index / fps``), ``frame_index``, ``episode_index``, ``index`` (global frame number),
  ``task_index`` (int64); episodes follow each other, one row group each;
- ``videos/<camera>/chunk-000/file-000.mp4``: the frames of all episodes back to back (PyAV), episode ``e`` from
  ``from_timestamp`` = its first frame's time in the file;
- ``meta/episodes/chunk-000/file-000.parquet`` (``episode_index``, ``tasks``, ``length``, ``data/*``,
  ``dataset_from_index``, ``dataset_to_index``, ``videos/<camera>/*``, ``meta/episodes/*``), ``meta/tasks.parquet``
  (the task strings as a pandas index, a ``task_index`` column), ``meta/stats.json`` (min / max / mean / std / count
  per feature; images per channel in [0, 1]) and ``meta/info.json`` last (a folder without it is no dataset).

A file rolls over to the next ``file-NNN`` (and chunk after ``chunks_size`` files) once it passes
``data_file_mb`` / ``video_file_mb``. Row ``i`` of an episode holds frame ``i`` and the action taken there, so the T+1
frames get T actions and the last frame's action is ZERO PADDING (our reader drops it).

Video fidelity, measured on 20 Two-Rooms episodes (340 frames of 64 px) decoded by our reader: the default (libx264,
yuv444p, crf 0 = lossless YUV, a keyframe every 2 frames as LeRobot writes) is within 2 grey levels of the input (RGB
<-> YUV rounding; PSNR 71 dB), 0.23 KiB per frame. ``pix_fmt="yuv420p"`` (crf >= 1) plays in browsers (LeRobot's
visualizer) but halves the chroma resolution, which blurs the 1-3 px coloured dot: max error 70 grey levels at crf 0
(44.5 dB), 82 at crf 10 (44.0 dB), 154 at crf 23 (40.5 dB; mean error on the dot's pixels 12-16 levels throughout).
"""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from jepa_world.atomic import atomic_write, atomic_write_text
from jepa_world.data.episodes import validate_episode
from jepa_world.data.lerobot import (
    DEFAULT_STATE_KEY,
    EPISODES_DIR,
    INDEX_FEATURES,
    INFO_FILE,
    STATS_FILE,
    TASKS_FILE,
)

CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE + ".parquet"
_OWNED = ("meta", "data", "videos")  # what overwrite removes
_MB = 2**20


def _next_location(location: tuple[int, int], chunks_size: int) -> tuple[int, int]:
    chunk, file = location
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


class _Moments:
    """Running min / max / mean / std / count of rows ``[N, D]`` (float64 sums)."""

    def __init__(self) -> None:
        self.n, self.sum, self.sq, self.min, self.max = 0, 0.0, 0.0, None, None

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64)
        self.n += len(x)
        self.sum = self.sum + x.sum(0)
        self.sq = self.sq + (x * x).sum(0)
        self.min = x.min(0) if self.min is None else np.minimum(self.min, x.min(0))
        self.max = x.max(0) if self.max is None else np.maximum(self.max, x.max(0))

    def result(self, shape: tuple[int, ...]) -> dict[str, Any]:
        mean = self.sum / self.n
        std = np.sqrt(np.maximum(self.sq / self.n - mean * mean, 0.0))
        stats = {k: np.reshape(v, shape).tolist() for k, v in (("min", self.min), ("max", self.max), ("mean", mean),
                                                                   ("std", std))}  # fmt: skip
        return {**stats, "count": [self.n]}


def _tasks_table(tasks: list[str]) -> pa.Table:
    """``meta/tasks.parquet`` as pandas writes ``DataFrame({"task_index": ...}, index=tasks)`` (LeRobot's layout)."""
    pandas = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }  # fmt: skip
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "__index_level_0__": pa.array(tasks)})
    return table.replace_schema_metadata({"pandas": json.dumps(pandas)})


class LeRobotWriter:
    """Write episodes as a LeRobot v3 dataset (layout and video fidelity in the module docstring).

    Args:
        root: Output folder (created). It must be empty unless ``overwrite``, which replaces a LeRobot dataset there.
        fps: Frame rate recorded in ``info.json`` and the video.
        camera: Feature name of the frames (LeRobot's cameras are ``observation.images.<name>``).
        task: The one task string of every frame.
        robot_type: ``info.json``'s ``robot_type``.
        action_names: Names of the action dims (default ``action_0`` ...).
        state_names: Names of the state dims (default ``state_0`` ...).
        codec: PyAV encoder (libx264; libsvtav1 is LeRobot's default and decodes with PyAV, not decord).
        pix_fmt: ``yuv444p`` (faithful) or ``yuv420p`` (browser-playable, even frame sizes only).
        crf: Encoder quality (0 = lossless with libx264).
        gop: Frames between keyframes (small: fast random access).
        data_file_mb: A data parquet file rolls over past this size.
        video_file_mb: An mp4 rolls over past this size.
        chunks_size: Files per chunk folder.
        overwrite: Replace the LeRobot dataset in ``root``.
    """

    def __init__(
        self,
        *,
        root: str | Path,
        fps: int = 10,
        camera: str = "observation.image",
        task: str = "no task",
        robot_type: str | None = None,
        action_names: list[str] | None = None,
        state_names: list[str] | None = None,
        codec: str = "libx264",
        pix_fmt: str = "yuv444p",
        crf: int = 0,
        gop: int = 2,
        data_file_mb: float = 100,
        video_file_mb: float = 200,
        chunks_size: int = 1000,
        overwrite: bool = False,
    ) -> None:
        if not isinstance(fps, int) or fps < 1:
            raise ValueError(f"fps must be a positive int, got {fps!r}")
        if pix_fmt not in ("yuv444p", "yuv420p"):
            raise ValueError(f"pix_fmt={pix_fmt!r}; expected yuv444p or yuv420p")
        if not isinstance(chunks_size, int) or chunks_size < 1:
            raise ValueError(f"chunks_size must be a positive int, got {chunks_size!r}")
        for name, value in (("data_file_mb", data_file_mb), ("video_file_mb", video_file_mb)):
            # LeRobot refuses an info.json whose file sizes are not positive ("must be positive")
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive finite number of megabytes, got {value!r}")
        if isinstance(gop, bool) or not isinstance(gop, int) or gop < 1:
            raise ValueError(f"gop must be a positive int (frames between keyframes), got {gop!r}")
        if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 63:
            raise ValueError(f"crf must be an int in [0, 63] (0: lossless with libx264), got {crf!r}")
        try:
            self._codec_name = av.codec.Codec(codec, "w").canonical_name  # "h264" for libx264
        except Exception as err:
            raise ValueError(f"codec={codec!r} is no video encoder of this PyAV build ({err})") from None
        self.root = Path(root)
        self._prepare(overwrite)
        self.fps, self.camera, self.task, self.robot_type = fps, camera, task, robot_type
        self.action_names, self.state_names = action_names, state_names
        self.codec, self.pix_fmt, self.crf, self.gop = codec, pix_fmt, crf, gop
        self.data_file_mb, self.video_file_mb, self.chunks_size = data_file_mb, video_file_mb, chunks_size
        self._episodes: list[dict[str, Any]] = []
        self._shapes: tuple | None = None  # (H, W, A, S or None) of the first episode
        self._frames = 0  # global index of the next frame
        self._data: dict[str, Any] | None = None  # the open data file: writer, location, partial path
        self._video: dict[str, Any] | None = None  # the open mp4: container, stream, location, frames so far
        self._data_loc, self._video_loc = (0, 0), (0, 0)
        self._stats = {k: _Moments() for k in ("action", "state", "camera", *INDEX_FEATURES)}
        self._closed = False

    def _prepare(self, overwrite: bool) -> None:
        if self.root.exists() and any(self.root.iterdir()):
            if not overwrite:
                raise ValueError(f"root={str(self.root)!r} is not empty; pass overwrite=True to replace its dataset")
            others = sorted(p.name for p in self.root.iterdir() if p.name not in _OWNED)
            if others:  # only the folders a (possibly aborted) LeRobot dataset has are replaced
                raise ValueError(f"root={str(self.root)!r} holds more than a LeRobot dataset ({others[:5]}); "
                                 "write into an empty folder")  # fmt: skip
            for name in _OWNED:
                shutil.rmtree(self.root / name, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------------------------------------------- episodes
    def add_episode(self, *, frames: np.ndarray, actions: np.ndarray, states: np.ndarray | None = None) -> int:
        """Append one episode (frames ``uint8 [T+1, H, W, 3]``, actions ``[T, A]``, states ``[T+1, S]``).

        Returns:
            Its ``episode_index``.

        Raises:
            ValueError: The episode breaks our format, or differs from the first in frame size, A, or S.
        """
        if self._closed:
            raise ValueError("the writer is closed")
        index = len(self._episodes)
        validate_episode(frames=frames, actions=actions, states=states, name=f"episode {index}")
        frames = np.ascontiguousarray(frames)
        shapes = (*frames.shape[1:3], actions.shape[1], None if states is None else states.shape[1])
        if self._shapes is None:
            if self.pix_fmt == "yuv420p" and (shapes[0] % 2 or shapes[1] % 2):
                raise ValueError(f"pix_fmt='yuv420p' needs an even frame size, got {shapes[0]}x{shapes[1]}; "
                                 "use yuv444p")  # fmt: skip
            self._shapes = shapes
        elif shapes != self._shapes:
            raise ValueError(f"episode {index}: (H, W, A, S) = {shapes} differs from the first episode's "
                             f"{self._shapes}")  # fmt: skip
        length = len(frames)
        padded = np.concatenate([actions, np.zeros((1, actions.shape[1]))]).astype(np.float32)  # last row: padding
        columns = {"action": padded}
        if states is not None:
            columns[DEFAULT_STATE_KEY] = np.asarray(states, dtype=np.float32)
        steps = np.arange(length, dtype=np.int64)
        index_columns = {"timestamp": (steps / self.fps).astype(np.float32), "frame_index": steps,
                         "episode_index": np.full(length, index, np.int64), "index": self._frames + steps,
                         "task_index": np.zeros(length, np.int64)}  # fmt: skip
        meta = {"episode_index": index, "tasks": [self.task], "length": length}
        meta.update(self._write_data(columns, index_columns))
        meta.update(self._write_video(frames))
        self._episodes.append(meta)
        self._frames += length
        self._stats["action"].update(padded)
        if states is not None:
            self._stats["state"].update(columns[DEFAULT_STATE_KEY])
        self._stats["camera"].update(frames.reshape(-1, 3) / 255.0)
        for key, values in index_columns.items():
            self._stats[key].update(values.reshape(-1, 1))
        return index

    def _write_data(self, columns: dict[str, np.ndarray], index_columns: dict[str, np.ndarray]) -> dict[str, Any]:
        data = self._data
        if data is not None and os.path.getsize(data["partial"]) >= self.data_file_mb * _MB:
            self._close_data()
            self._data_loc, data = _next_location(self._data_loc, self.chunks_size), None
        arrays = {k: pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]) for k, v in columns.items()}
        arrays.update({k: pa.array(v) for k, v in index_columns.items()})
        table = pa.table(arrays)
        if data is None:
            path = self.root / DATA_PATH.format(chunk_index=self._data_loc[0], file_index=self._data_loc[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            data = self._data = {"path": path, "partial": partial,
                                 "writer": pq.ParquetWriter(partial, table.schema, compression="snappy")}  # fmt: skip
        data["writer"].write_table(table)
        start = int(index_columns["index"][0])
        return {"data/chunk_index": self._data_loc[0], "data/file_index": self._data_loc[1],
                "dataset_from_index": start, "dataset_to_index": start + len(table)}  # fmt: skip

    def _write_video(self, frames: np.ndarray) -> dict[str, Any]:
        video = self._video
        if video is not None and os.path.getsize(video["partial"]) >= self.video_file_mb * _MB:
            self._close_video()
            self._video_loc, video = _next_location(self._video_loc, self.chunks_size), None
        if video is None:
            path = self.root / VIDEO_PATH.format(video_key=self.camera, chunk_index=self._video_loc[0],
                                                 file_index=self._video_loc[1])  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            container = av.open(str(partial), mode="w", format="mp4")
            stream = container.add_stream(self.codec, rate=self.fps)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], self.pix_fmt
            stream.options = {"crf": str(self.crf), "g": str(self.gop)}
            video = self._video = {"path": path, "partial": partial, "container": container, "stream": stream, "n": 0}
        first = video["n"]
        for frame in frames:
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = video["n"], Fraction(1, self.fps)
            video["container"].mux(video["stream"].encode(vf))
            video["n"] += 1
        key = f"videos/{self.camera}"
        return {f"{key}/chunk_index": self._video_loc[0], f"{key}/file_index": self._video_loc[1],
                f"{key}/from_timestamp": first / self.fps, f"{key}/to_timestamp": video["n"] / self.fps}  # fmt: skip

    def _close_data(self) -> None:
        if self._data is not None:
            self._data["writer"].close()
            os.replace(self._data["partial"], self._data["path"])
            self._data = None

    def _close_video(self) -> None:
        if self._video is not None:
            self._video["container"].mux(self._video["stream"].encode(None))  # flush the encoder
            self._video["container"].close()
            os.replace(self._video["partial"], self._video["path"])
            self._video = None

    # -------------------------------------------------------------------------------------------------------- close
    def close(self, *, extra_metadata: dict[str, Any] | None = None) -> Path:
        """Finish the open files and write the metadata (``info.json`` last); returns ``root``.

        Args:
            extra_metadata: Written to ``meta/jepa_world.json`` (e.g. how the episodes were collected).

        Raises:
            ValueError: No episode was added.
        """
        if self._closed:
            return self.root
        if not self._episodes:
            raise ValueError(f"no episode was added to {self.root}")
        self._close_data()
        self._close_video()
        for row in self._episodes:
            row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        episodes = pa.Table.from_pylist(self._episodes)
        atomic_write(
            self.root / EPISODES_PATH.format(chunk_index=0, file_index=0), lambda f: pq.write_table(episodes, f)
        )
        atomic_write(self.root / TASKS_FILE, lambda f: pq.write_table(_tasks_table([self.task]), f))
        info = self._info()
        stats = {"action": self._stats["action"].result((-1,)), self.camera: self._stats["camera"].result((3, 1, 1))}
        if DEFAULT_STATE_KEY in info["features"]:
            stats[DEFAULT_STATE_KEY] = self._stats["state"].result((-1,))
        stats.update({k: self._stats[k].result((1,)) for k in INDEX_FEATURES})
        atomic_write_text(self.root / STATS_FILE, json.dumps(stats, indent=4) + "\n")
        if extra_metadata is not None:
            text = json.dumps(extra_metadata, indent=2, sort_keys=True) + "\n"
            atomic_write_text(self.root / "meta" / "jepa_world.json", text)
        atomic_write_text(self.root / INFO_FILE, json.dumps(info, indent=4) + "\n")
        self._closed = True
        return self.root

    def _info(self) -> dict[str, Any]:
        height, width, action_dim, state_dim = self._shapes
        features: dict[str, Any] = {
            "action": {"dtype": "float32", "shape": [action_dim],
                       "names": self.action_names or [f"action_{i}" for i in range(action_dim)]},
        }  # fmt: skip
        if state_dim is not None:
            names = self.state_names or [f"state_{i}" for i in range(state_dim)]
            features[DEFAULT_STATE_KEY] = {"dtype": "float32", "shape": [state_dim], "names": names}
        features[self.camera] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": {"video.height": height, "video.width": width,
                     "video.codec": self._codec_name, "video.pix_fmt": self.pix_fmt,
                     "video.is_depth_map": False, "video.fps": self.fps, "video.channels": 3, "has_audio": False},
        }  # fmt: skip
        for key in INDEX_FEATURES:
            features[key] = {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1], "names": None}
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self._episodes),
            "total_frames": self._frames,
            "total_tasks": 1,
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": self.data_file_mb,
            "video_files_size_in_mb": self.video_file_mb,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self._episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": features,
        }

    def __enter__(self) -> LeRobotWriter:
        return self

    def abort(self) -> None:
        """Close the open files without finishing: they stay ``.partial`` and no ``info.json`` is written, so the
        folder is no dataset (a rerun with ``overwrite=True`` replaces it)."""
        for handle in (self._data or {}).get("writer"), (self._video or {}).get("container"):
            if handle is not None:
                handle.close()
        self._data = self._video = None
        self._closed = True

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
