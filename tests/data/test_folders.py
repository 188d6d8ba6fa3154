"""Data folders and index files as users have them: link loops, FIFOs, BOMs, unknown containers, failed writes."""

from __future__ import annotations

import errno
import os
import threading

import pytest
from PIL import Image

from jepa_world.data.images import ImageFolderDataset
from jepa_world.data.index import detect_kind, read_index_file, scan_media_folder, walk_files
from jepa_world.data.index_writer import format_report, write_index
from tests.data.test_video import write_video


def _images(folder, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(folder / f"{i}.png")


def test_symlink_loops_are_walked_once_and_end(tmp_path):
    _images(tmp_path / "a", 3)
    os.symlink(tmp_path, tmp_path / "a" / "up")  # a -> root -> a -> ...
    os.symlink(tmp_path / "a", tmp_path / "again")  # a second way into the same folder
    found = scan_media_folder(tmp_path, extensions=(".png",), kind="images")
    assert len(found) == len({p.resolve() for p in found}) == 3
    assert detect_kind(tmp_path) == "image"  # ends too (it walks the same way)


def test_fifos_are_skipped_not_opened(tmp_path):
    _images(tmp_path, 2)
    os.mkfifo(tmp_path / "stuck.png")  # opening it would block forever
    assert dict((p.name, why) for p, why in walk_files(tmp_path))["stuck.png"] == "not a regular file"
    assert [p.name for p in scan_media_folder(tmp_path, extensions=(".png",), kind="images")] == ["0.png", "1.png"]
    # Listed by name in an index file, it is skipped and counted like an unreadable image, in bounded time.
    (tmp_path / "list.txt").write_text("0.png\nstuck.png\n1.png\n")
    ds = ImageFolderDataset(index=tmp_path / "list.txt", image_size=8, max_skip_fraction=1.0)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("item", ds[1]), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert result["item"]["skipped"] == 1


def test_a_utf8_bom_is_not_part_of_the_first_path(tmp_path):
    _images(tmp_path, 2)
    (tmp_path / "list.csv").write_bytes("\ufeff0.png,3\n1.png,4\n".encode())
    entries = read_index_file(tmp_path / "list.csv", kind="image")
    assert [e.path.name for e in entries] == ["0.png", "1.png"] and entries[0].label == "3"
    assert [p.name for p in ImageFolderDataset(index=tmp_path / "list.csv", image_size=8).paths] == ["0.png", "1.png"]


def test_index_opens_unknown_containers_and_counts_what_it_skips(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", num_frames=8)
    write_video(videos / "b.mkv", num_frames=8)
    (videos / "b.mkv").rename(videos / "clip.strange")  # a container no extension list knows
    (videos / "notes.txt").write_text("x")
    Image.new("RGB", (8, 8)).save(videos / "frame.jpg")
    report = write_index(videos, tmp_path / "index.csv")
    assert report.num_videos == 2 and sorted(p.name for p in _paths(tmp_path / "index.csv")) == [
        "a.mp4",
        "clip.strange",
    ]
    assert report.skipped == {"image (.jpg)": 1, "not a video (.txt)": 1}
    assert "not tried: 1 image (.jpg), 1 not a video (.txt)" in format_report(report)


def _paths(index):
    from pathlib import Path

    return [Path(line.rsplit(maxsplit=1)[0]) for line in index.read_text().splitlines()]


def test_a_failed_index_write_leaves_the_old_index(tmp_path, monkeypatch):
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", num_frames=8)
    out = tmp_path / "index.csv"
    out.write_text("old.mp4 0\n")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("jepa_world.atomic.os.fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_index(videos, out)
    monkeypatch.undo()
    assert out.read_text() == "old.mp4 0\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind
    # Nothing readable: the old index stays as it was too (an empty one would replace it).
    (videos / "a.mp4").write_bytes(b"not a video")
    assert write_index(videos, out).num_videos == 0 and out.read_text() == "old.mp4 0\n"


def test_an_ogg_video_is_read_through_the_pyav_fallback(tmp_path):
    # Ogg keeps no frame index: decord cannot count the frames ("broken metadata"); reader=auto falls back to PyAV.
    av = pytest.importorskip("av")
    import numpy as np

    from jepa_world.data.video.files import probe_video

    path = tmp_path / "clip.ogv"
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("libvpx", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(12):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), "rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    info = probe_video(path, reader="auto", check_decode=True)
    assert (info["num_frames"], info["reader"], info["codec"]) == (12, "pyav", "vp8")
    report = write_index(tmp_path, tmp_path / "index.csv")
    assert report.num_videos == 1 and not report.failures
