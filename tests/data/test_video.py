"""Tests for the video pipeline (jepa_world/data/video.py): readers, clip sampling, augmentation, bad files, training.

Test videos are written with PyAV in real codecs (H.264, VP9, MPEG-4, AV1 when an encoder is available). Frame ``i``
has the uniform grey level ``8 + 7 i`` (plus a white square moving right), so the frame index can be read back from
the pixels of any decoded frame.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from jepa_world.config import ConfigError, load_config
from jepa_world.data.build import RepeatFrames, build_dataset
from jepa_world.data.sampler import StepSampler
from jepa_world.data.transforms import apply_seeded, normalize_clip
from jepa_world.data.video.dataset import VideoClipDataset, clip_indices, frame_step_for, make_clip_transform
from jepa_world.data.video.files import open_video
from jepa_world.data.video.readers import DecordReader, PyAVReader, VideoReader
from tests.conftest import tiny_overrides

av = pytest.importorskip("av")
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration otherwise

HAS_DECORD = importlib.util.find_spec("decord") is not None
needs_decord = pytest.mark.skipif(not HAS_DECORD, reason="decord is not installed (no wheel for this platform)")
AV1_ENCODER = next((c for c in ("libsvtav1", "libaom-av1") if c in av.codecs_available), None)
# The published ImageNet statistics, written out here rather than imported from the code under test.
MEAN = torch.tensor([0.485, 0.456, 0.406])
STD = torch.tensor([0.229, 0.224, 0.225])
W, H = 64, 48
CODECS = {  # name -> (file suffix, encoder, encoder options); all decode to within +-1.5 grey levels
    "h264": (".mp4", "libx264", {"crf": "0"}),
    "vp9": (".webm", "libvpx-vp9", {"lossless": "1"}),
    "mpeg4": (".avi", "mpeg4", {"qmin": "1", "qmax": "3"}),
    # B-frames (packets out of presentation order) and a keyframe every 8 frames (the readers must seek)
    "h264_gop": (
        ".mp4",
        "libx264",
        {"crf": "4", "x264-params": "keyint=8:min-keyint=8:bframes=2:b-adapt=0:scenecut=0"},
    ),
}


def level(i: int) -> int:
    return 8 + 7 * i


def frame_pixels(i: int, pattern: str = "square") -> np.ndarray:
    """Frame ``i`` as uint8 [H, W, 3]."""
    if pattern == "gradient":  # a non-symmetric picture plus a per-frame offset (for the augmentation test)
        yy, xx = np.mgrid[0:H, 0:W]
        grey = 10 + 2 * xx + yy + 30 * ((xx > 40) & (yy < 20)) + 4 * i  # at most 241 for i < 8
        return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)
    img = np.full((H, W, 3), level(i), np.uint8)
    x = (2 * i) % (W - 8)
    img[4:12, x : x + 8] = 255
    return img


def write_video(
    path: Path,
    *,
    codec: str = "h264",
    num_frames: int = 32,
    fps: int = 25,
    pattern: str = "square",
    container_options: dict | None = None,
) -> Path:
    """Encode ``num_frames`` frames with a codec of `CODECS` (or ``av1``)."""
    if codec == "av1":
        encoder, options = AV1_ENCODER, {}
    else:
        encoder, options = CODECS[codec][1], CODECS[codec][2]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(encoder, rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = options
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(i, pattern), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_levels(frames: np.ndarray) -> list[int]:
    """Frame indices from decoded uint8 [T, H, W, 3] frames (grey level of the rows below the square)."""
    return [round((float(f[20:44].mean()) - 8) / 7) for f in frames]


def write_bad_files(folder: Path, good: Path) -> dict[str, Path]:
    """One file of every bad kind; ``good`` is a valid H.264 mp4 (moov at the end) to cut."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = good.read_bytes()
    bad = {
        "empty": folder / "empty.mp4",
        "garbage": folder / "garbage.mp4",
        "truncated": folder / "truncated.mp4",
        "audio_only": folder / "audio_only.mp4",
        "zero_frames": folder / "zero_frames.avi",
    }
    bad["empty"].write_bytes(b"")
    bad["garbage"].write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    bad["truncated"].write_bytes(data[: len(data) // 2])
    with av.open(str(bad["audio_only"]), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    container = av.open(str(bad["zero_frames"]), "w")  # a video stream header and no frame
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    container.start_encoding()
    container.close()
    return bad


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    out = {name: write_video(root / f"clip_{name}{CODECS[name][0]}", codec=name) for name in CODECS}
    if AV1_ENCODER:
        out["av1"] = write_video(root / "clip_av1.mkv", codec="av1")
        out["av1_webm"] = write_video(root / "clip_av1.webm", codec="av1")
    out["short"] = write_video(root / "short.mp4", num_frames=5)
    out["long"] = write_video(root / "long.mp4", num_frames=33, fps=30)
    return out


def make_dataset(index, **kwargs) -> VideoClipDataset:
    defaults = dict(frames_per_clip=4, frame_step=2, image_size=32, decode_short_side=0)
    defaults.update(kwargs)
    return VideoClipDataset(index=index, **defaults)


def pixel_levels(x: torch.Tensor) -> list[int]:
    """Frame indices from an eval item ``x [3, T, S, S]`` (undo the normalisation, read the lower half)."""
    rgb = (x * STD.view(3, 1, 1, 1) + MEAN.view(3, 1, 1, 1)) * 255
    return [round((float(rgb[:, t, x.shape[2] // 2 :].mean()) - 8) / 7) for t in range(x.shape[1])]


# --------------------------------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------------------------------
READER_PARAMS = [pytest.param(DecordReader, marks=needs_decord, id="decord"), pytest.param(PyAVReader, id="pyav")]


@pytest.mark.parametrize("reader_cls", READER_PARAMS)
@pytest.mark.parametrize("codec", list(CODECS))
def test_reader_returns_requested_frames(videos, reader_cls, codec):
    if codec == "h264_gop":  # the file really has reordered frames and several keyframes
        with av.open(str(videos[codec])) as container:
            packets = [p for p in container.demux(video=0) if p.size]
        assert [p.pts for p in packets] != sorted(p.pts for p in packets)
        assert sum(p.is_keyframe for p in packets) == 4
    with reader_cls(videos[codec]) as video:
        assert isinstance(video, VideoReader)
        assert video.num_frames == 32
        assert video.fps == pytest.approx(25.0)
        wanted = [0, 5, 31, 5, 2, 17, 16, 15, 9]  # any order, repeats allowed, across keyframes
        frames = video.get(wanted)
        assert frames.dtype == np.uint8 and frames.shape == (len(wanted), H, W, 3)
        assert read_levels(frames) == wanted
        with pytest.raises(IndexError, match="out of range"):
            video.get([32])


@needs_decord
@pytest.mark.parametrize("codec", list(CODECS))
def test_both_readers_return_the_same_pixels(videos, codec):
    wanted = list(range(0, 32, 3))
    with DecordReader(videos[codec]) as a, PyAVReader(videos[codec]) as b:
        assert (a.num_frames, a.fps) == (b.num_frames, b.fps)
        np.testing.assert_array_equal(a.get(wanted), b.get(wanted))


@pytest.mark.parametrize("reader_cls", READER_PARAMS)
def test_resize_on_decode_keeps_aspect_and_content(videos, reader_cls):
    with PyAVReader(videos["h264"]) as native_video:
        native = torch.from_numpy(native_video.get([3, 9])).permute(0, 3, 1, 2).float()
    with reader_cls(videos["h264"], short_side=24) as video:
        small = video.get([3, 9])
    assert small.shape == (2, 24, 32, 3)  # 64x48 -> short side 24, aspect kept
    expected = torch.nn.functional.interpolate(native, size=(24, 32), mode="bilinear", antialias=True)
    diff = (torch.from_numpy(small).permute(0, 3, 1, 2).float() - expected).abs()
    assert diff.mean() < 6.0, diff.mean()
    with reader_cls(videos["h264"], short_side=100) as video:  # never upsampled
        assert video.get([0]).shape == (1, H, W, 3)


@pytest.mark.skipif(AV1_ENCODER is None, reason="no AV1 encoder in this FFmpeg build")
@pytest.mark.parametrize("name", ["av1", "av1_webm"])
def test_av1_goes_through_the_pyav_fallback(videos, caplog, name):
    if HAS_DECORD:
        with pytest.raises(Exception):  # noqa: B017 - decord 0.6 has no AV1 decoder; its error types vary
            DecordReader(videos[name])
    with open_video(videos[name], reader="auto") as video:
        assert video.name == "pyav"
        assert read_levels(video.get([4, 20])) == [4, 20]
    with caplog.at_level(logging.WARNING, logger="jepa_world.data"):
        ds = make_dataset(videos[name], reader="auto", train=False)
        item = ds[0]
    assert item["skipped"] == 0 and not [r for r in caplog.records if r.name == "jepa_world.data"]
    assert pixel_levels(item["x"]) == item["frame_indices"].tolist()
    if HAS_DECORD:
        forced = make_dataset(videos[name], reader="decord", max_skip_fraction=1.0)
        with pytest.raises(RuntimeError, match="failed to decode"):
            forced[0]


def test_webm_reads_with_every_reader_choice(videos):
    for reader in ["auto", "pyav"] + (["decord"] if HAS_DECORD else []):
        item = make_dataset(videos["vp9"], reader=reader, train=False)[0]
        assert item["skipped"] == 0
        assert pixel_levels(item["x"]) == item["frame_indices"].tolist()


# --------------------------------------------------------------------------------------------------------------------
# Clip sampling
# --------------------------------------------------------------------------------------------------------------------
def test_clip_indices_uniform_windows():
    # 32 frames, 4 frames 3 apart: span 10, window starts 0..22 (23 of them) split into 2 parts: 0..10, 11..22.
    a = clip_indices(32, frames_per_clip=4, frame_step=3, clip=0, clips_per_video=2)
    b = clip_indices(32, frames_per_clip=4, frame_step=3, clip=1, clips_per_video=2)
    np.testing.assert_array_equal(a, [5, 8, 11, 14])  # middle of 0..10
    np.testing.assert_array_equal(b, [16, 19, 22, 25])  # middle of 11..22
    one = clip_indices(32, frames_per_clip=4, frame_step=3)
    np.testing.assert_array_equal(one, [11, 14, 17, 20])  # middle of 0..22


def test_clip_indices_random_windows_stay_in_their_part():
    rng = np.random.default_rng(0)
    starts = {c: set() for c in range(3)}
    for _ in range(300):
        for c in range(3):
            idx = clip_indices(40, frames_per_clip=5, frame_step=2, clip=c, clips_per_video=3, rng=rng)
            assert np.all(np.diff(idx) == 2) and idx[-1] < 40
            starts[c].add(int(idx[0]))
    # Starts 0..31 (32 of them) in three parts: 0..9, 10..20, 21..31, each fully covered.
    assert starts == {0: set(range(10)), 1: set(range(10, 21)), 2: set(range(21, 32))}


def test_clip_indices_short_video_pads_with_last_frame():
    idx = clip_indices(5, frames_per_clip=6, frame_step=2, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(idx, [0, 2, 4, 4, 4, 4])
    # More clips than window starts (3 frames, 2 starts, 4 clips): parts share starts, in order.
    windows = [clip_indices(3, frames_per_clip=2, frame_step=1, clip=c, clips_per_video=4).tolist() for c in range(4)]
    assert windows == [[0, 1], [0, 1], [1, 2], [1, 2]]
    for c in range(3):  # a video shorter than one clip: every clip is the whole, padded video
        assert clip_indices(2, frames_per_clip=3, frame_step=1, clip=c, clips_per_video=3).tolist() == [0, 1, 1]


def test_frame_step_from_target_fps():
    assert frame_step_for(30.0, frame_step=4, fps=None) == 4
    assert frame_step_for(30.0, frame_step=4, fps=10.0) == 3
    assert frame_step_for(25.0, frame_step=4, fps=12.5) == 2
    assert frame_step_for(24.0, frame_step=4, fps=60.0) == 1  # never below 1
    assert frame_step_for(0.0, frame_step=4, fps=10.0) == 4  # unknown frame rate


def test_normalize_clip_matches_the_imagenet_formula():
    clip = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    x = normalize_clip(clip)
    assert x.shape == (3, 5, 8, 8) and x.dtype == torch.float32 and x.is_contiguous()
    expected = (clip.permute(1, 0, 2, 3).float() / 255 - MEAN.view(3, 1, 1, 1)) / STD.view(3, 1, 1, 1)
    torch.testing.assert_close(x, expected)


@pytest.mark.parametrize("random_clip", [False, True])
def test_dataset_frames_are_the_sampled_indices(videos, random_clip):
    """The pixels of every frame of an item come from the frame its indices name (eval crop, no flip)."""
    ds = make_dataset(videos["h264"], frames_per_clip=4, frame_step=3, clips_per_video=2, random_clip=random_clip)
    ds.transform = make_clip_transform(32, train=False)  # keep the random windows, make the crop readable
    seen = set()
    for key in [(0, 11), (1, 11), (0, 12), (1, 99)]:
        item = ds[key]
        idx = item["frame_indices"].tolist()
        assert item["x"].shape == (3, 4, 32, 32) and item["x"].dtype == torch.float32
        assert np.all(np.diff(idx) == 3)
        assert pixel_levels(item["x"]) == idx
        assert (idx[0] <= 10) if key[0] == 0 else (idx[0] >= 11)  # clip 0 / clip 1 parts of the starts 0..22
        seen.add(tuple(idx))
    assert (len(seen) > 2) == random_clip  # uniform windows: one per clip slot


def test_dataset_fps_and_short_video(videos):
    long = make_dataset(videos["long"], frames_per_clip=4, fps=10.0, train=False)  # 30 fps -> step 3
    idx = long[0]["frame_indices"].tolist()
    assert np.all(np.diff(idx) == 3)
    short = make_dataset(videos["short"], frames_per_clip=6, frame_step=2, train=False)
    item = short[0]
    assert item["frame_indices"].tolist() == [0, 2, 4, 4, 4, 4]
    assert pixel_levels(item["x"]) == [0, 2, 4, 4, 4, 4]
    torch.testing.assert_close(item["x"][:, 3], item["x"][:, 2])


def test_clips_per_video_and_length(videos, tmp_path):
    index = tmp_path / "list.txt"
    index.write_text(f"{videos['h264']}\n{videos['vp9']}\n{videos['mpeg4']}\n")
    ds = make_dataset(index, clips_per_video=3, train=False)
    assert len(ds) == 9
    for i in range(9):
        assert ds.locate(i, 0)[1:] == (i // 3, i % 3)
    firsts = [ds[i]["frame_indices"][0].item() for i in range(3)]
    assert firsts == sorted(firsts) and len(set(firsts)) == 3


# --------------------------------------------------------------------------------------------------------------------
# Augmentation and determinism
# --------------------------------------------------------------------------------------------------------------------
def test_clip_transform_is_the_same_crop_and_flip_for_every_frame():
    base = torch.from_numpy(np.stack([frame_pixels(i, "gradient") for i in range(6)])).permute(0, 3, 1, 2)
    transform = make_clip_transform(24, crop_scale=(0.3, 0.6), crop_aspect=(0.75, 1.35))
    no_flip = make_clip_transform(24, crop_scale=(0.3, 0.6), crop_aspect=(0.75, 1.35), hflip=False)
    flips = set()
    for seed in range(12):
        clip = apply_seeded(transform, tv_tensors.Video(base), seed).as_subclass(torch.Tensor)  # [T, 3, S, S]
        assert clip.shape == (6, 3, 24, 24) and clip.dtype == torch.uint8
        for t in range(6):
            # Each frame gets exactly what the same seeded transform does to that frame alone.
            assert torch.equal(clip[t], apply_seeded(transform, base[t], seed))
        # The flip is drawn after the crop, so without it the same seed gives the same crop, unflipped.
        plain = apply_seeded(no_flip, base[0], seed)
        flipped = torch.equal(clip[0], plain.flip(-1))
        assert flipped or torch.equal(clip[0], plain)
        flips.add(flipped)
    assert flips == {True, False}  # some seeds flip, some do not


def test_dataset_augmentation_identical_across_frames(tmp_path):
    """Frame t is frame 0 plus a uniform offset, so after one crop/flip for the whole clip the difference is flat."""
    path = write_video(tmp_path / "gradient.mp4", num_frames=8, pattern="gradient")
    ds = make_dataset(path, frames_per_clip=8, frame_step=1, image_size=24, crop_scale=(0.3, 0.5))
    outputs = []
    for seed in range(6):
        x = ds[(0, seed)]["x"]
        rgb = (x * STD.view(3, 1, 1, 1) + MEAN.view(3, 1, 1, 1)) * 255
        diff = rgb[:, 1:] - rgb[:, :1]  # [3, 7, S, S]
        spread = diff.amax(dim=(2, 3)) - diff.amin(dim=(2, 3))
        assert spread.max() < 6.0, spread.max()  # codec and resize rounding only
        assert rgb[:, 0].std() > 10  # the crop kept a textured picture
        outputs.append(x)
    assert not all(torch.equal(outputs[0], o) for o in outputs[1:])  # crops differ between seeds


def test_same_key_same_clip_in_a_fresh_dataset_and_any_worker_count(videos, tmp_path):
    index = tmp_path / "list.txt"
    index.write_text("".join(f"{videos[k]}\n" for k in ("h264", "vp9", "mpeg4", "long")))
    ds = make_dataset(index, clips_per_video=2)
    again = make_dataset(index, clips_per_video=2)  # as after a restart
    for key in [(0, 5), (3, 123), (7, 2**62)]:
        a, b = ds[key], again[key]
        torch.testing.assert_close(a["x"], b["x"], atol=0, rtol=0)
        assert a["frame_indices"].tolist() == b["frame_indices"].tolist()
    assert not torch.equal(ds[(3, 1)]["x"], ds[(3, 2)]["x"])

    def batches(num_workers: int, start: int) -> list[torch.Tensor]:
        sampler = StepSampler(dataset_size=len(ds), micro_batch_size=2, seed=7, start_micro_step=start)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=num_workers)
        it = iter(loader)
        return [next(it)["x"] for _ in range(3)]

    full = batches(0, 0)
    resumed = batches(2, 1)  # a resumed run (micro-step 1) with two worker processes
    for a, b in zip(full[1:], resumed[:2]):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_index_weights_mix_indexes(videos, tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(f"{videos['h264']}\n{videos['vp9']}\n")
    b_videos = [write_video(tmp_path / "b" / f"v{i}.mp4", num_frames=6) for i in range(6)]
    b.write_text("".join(f"{p}\n" for p in b_videos))
    ds = make_dataset(f"{a},{b}", index_weights=[3, 1])
    assert len(ds) == 8  # 8 videos in all; shares round(8 * 3/4) = 6 and 2
    counts = {0: 0, 1: 0}
    b_seen = set()
    for seed in range(40):
        for i in range(len(ds)):
            source, entry, _ = ds.locate(i, seed)
            counts[source] += 1
            if source == 1:
                b_seen.add(entry)
    assert counts[0] == 3 * counts[1]
    assert b_seen == set(range(2, 8))  # a down-weighted index still visits all its videos over epochs
    with pytest.raises(ValueError, match="index_weights"):
        make_dataset(f"{a},{b}", index_weights=[1])


# --------------------------------------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------------------------------------
def test_every_bad_file_kind_is_skipped_counted_and_logged_once(videos, tmp_path, caplog):
    bad = write_bad_files(tmp_path / "bad", videos["h264"])
    bad["missing"] = tmp_path / "bad" / "missing.mp4"
    goods = [write_video(tmp_path / f"good{i}.mp4", num_frames=12) for i in range(3)]
    order = [goods[0], bad["empty"], bad["garbage"], goods[1], bad["truncated"], bad["audio_only"]]
    order += [bad["zero_frames"], bad["missing"], goods[2]]
    index = tmp_path / "index.csv"
    index.write_text("".join(f"{p} 0\n" for p in order))  # V-JEPA format
    is_bad = [p not in goods for p in order]
    ds = make_dataset(index, max_skip_fraction=0.9)
    with caplog.at_level(logging.WARNING, logger="jepa_world.data"):
        for _ in range(2):
            for i in range(len(order)):
                item = ds[i]
                run = 0  # independent count: bad entries from i up to the next good one
                while is_bad[(i + run) % len(order)]:
                    run += 1
                assert item["skipped"] == run
                assert order[item["video_index"]] in goods
                assert torch.isfinite(item["x"]).all()
    warned = [r.getMessage() for r in caplog.records if r.name == "jepa_world.data"]
    assert len(warned) == sum(is_bad)  # once per path, not once per failure
    for path in bad.values():
        assert sum(str(path) in m for m in warned) == 1


def test_truncated_file_with_header_first_is_rejected(videos, tmp_path):
    full = write_video(tmp_path / "faststart.mp4", num_frames=32, container_options={"movflags": "faststart"})
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ValueError, match="truncated"):
        PyAVReader(cut)
    ds = make_dataset(cut, reader="pyav")
    with pytest.raises(RuntimeError, match="truncated"):
        ds[0]


def test_failure_threshold_stops_with_a_clear_error(videos, tmp_path):
    # Scattered failures: runs of at most 2 bad files, but 6 of 10 files bad -> the failure rate check stops it.
    pattern = "GBBGBBGBBG"
    lines = [str(videos["h264"]) if c == "G" else str(tmp_path / f"nope{i}.mp4") for i, c in enumerate(pattern)]
    index = tmp_path / "index.txt"
    index.write_text("\n".join(lines) + "\n")
    strict = make_dataset(index, max_skip_fraction=0.5)
    with pytest.raises(RuntimeError, match=r"more than data.max_skip_fraction=0.5.*nope"):
        for i in range(len(strict)):
            strict[i]
    lenient = make_dataset(index, max_skip_fraction=0.7)
    assert sum(lenient[i]["skipped"] for i in range(len(lenient))) == 9  # 2 + 1 per run of two bad files
    # A wrong index (every path missing) fails on the first item instead of training on nothing.
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("".join(f"/no/such/dir/v{i}.mp4\n" for i in range(20)))
    with pytest.raises(RuntimeError, match="10 consecutive videos.*no such file"):
        make_dataset(wrong, max_skip_fraction=0.5)[0]


def test_fifo_is_rejected_without_blocking(videos, tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    index = tmp_path / "list.txt"
    index.write_text(f"{fifo}\n{videos['h264']}\n")
    item = make_dataset(index, max_skip_fraction=1.0)[0]  # opening a FIFO would block FFmpeg forever
    assert item["skipped"] == 1


# --------------------------------------------------------------------------------------------------------------------
# Config, build_dataset, training
# --------------------------------------------------------------------------------------------------------------------
def test_build_dataset_routes_indexes(videos, tmp_path):
    folder = tmp_path / "vids"
    write_video(folder / "a" / "x.mp4", num_frames=10)
    write_video(folder / "b" / "y.webm", codec="vp9", num_frames=10)
    csv_index = tmp_path / "k400.csv"
    csv_index.write_text(f"{folder / 'a' / 'x.mp4'} 3\n")
    over = {"data.num_frames": 4, "data.image_size": 32, "data.frame_step": 2}
    for index in (folder, csv_index, f"{csv_index},{folder}"):
        cfg = load_config([], [f"{k}={v}" for k, v in {**over, "data.index": index}.items()])
        ds = build_dataset(cfg.data, seed=0)
        assert isinstance(ds, VideoClipDataset)
        assert ds[0]["x"].shape == (3, 4, 32, 32)
    images = tmp_path / "imgs"
    images.mkdir()
    from PIL import Image

    Image.fromarray(frame_pixels(0)).save(images / "a.png")
    cfg = load_config([], [f"{k}={v}" for k, v in {**over, "data.index": images}.items()])
    assert isinstance(build_dataset(cfg.data, seed=0), RepeatFrames)  # the image path still works
    cfg = load_config([], [f"data.index={folder}", "data.num_frames=1"])
    with pytest.raises(ValueError, match="num_frames"):
        build_dataset(cfg.data, seed=0)
    cfg = load_config([], [f"data.index={csv_index},{tmp_path / 'missing.csv'}"])
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        build_dataset(cfg.data, seed=0)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.reader=ffmpeg", "data.reader"),
        ("data.frame_step=0", "data.frame_step"),
        ("data.clips_per_video=0", "data.clips_per_video"),
        ("data.fps=-1", "data.fps"),
        ("data.crop_scale=[0.5,0.2]", "data.crop_scale"),
        ("data.crop_aspect=[1.5]", "data.crop_aspect"),
        ("data.index_weights=[1,2]", "data.index_weights"),
    ],
)
def test_config_rejects_bad_video_keys(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config([], ["data.index=a.csv", override])


def _loss_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_pretrain_on_a_folder_of_real_videos_loss_goes_down(tmp_path):
    from jepa_world.training import pretrain

    folder = tmp_path / "videos"
    for i in range(6):
        write_video(folder / f"v{i}.mp4", num_frames=24, pattern="square" if i % 2 else "gradient")
    write_video(folder / "v_webm.webm", codec="vp9", num_frames=24)
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    over = tiny_overrides(
        tmp_path,
        **{
            "data.index": str(folder),
            "data.frame_step": 2,
            "train.max_steps": 40,
            "train.batch_size": 8,
            "optim.warmup_steps": 5,
            "optim.lr": 2e-3,
            "train.ckpt_every": 100,
        },
    )
    pretrain(load_config([], over))
    records = _loss_records(tmp_path / "run")
    first = sum(r["loss"] for r in records[:5]) / 5
    last = sum(r["loss"] for r in records[-5:]) / 5
    assert last < 0.8 * first, (first, last)
    assert records[-1]["data_skipped"] > 0  # the broken file was skipped and counted, not fatal
    assert math.isfinite(records[-1]["loss"])
