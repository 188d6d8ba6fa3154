"""Tests for video indexes (jepa_world/data/index.py) and the `jepa-world index` command."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from jepa_world.cli import main
from jepa_world.data.index import (
    detect_kind,
    meta_path_for,
    parse_index_line,
    read_index,
    scan_video_folder,
    split_index_spec,
)
from jepa_world.data.index_writer import write_index
from tests.data.test_video import write_bad_files, write_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict:
    """Two class folders of real videos (nested, mixed codecs and case), bad files, and non-videos."""
    root = tmp_path_factory.mktemp("tree") / "dataset"
    good = {
        "archery/a1.mp4": write_video(root / "archery" / "a1.mp4", num_frames=10),
        "archery/deeper/a2.WEBM": write_video(root / "archery" / "deeper" / "a2.WEBM", codec="vp9", num_frames=7),
        "bowling/b1.avi": write_video(root / "bowling" / "b1.avi", codec="mpeg4", num_frames=12, fps=30),
        "top.mp4": write_video(root / "top.mp4", num_frames=9),
        "bowling/with space.mp4": write_video(root / "bowling" / "with space.mp4", num_frames=8),
    }
    bad = write_bad_files(root / "bowling" / "broken", good["archery/a1.mp4"])
    (root / "notes.txt").write_text("not a video")
    (root / "archery" / "thumb.png").write_bytes(b"\x89PNG")
    write_video(root / ".hidden" / "h.mp4", num_frames=4)
    (root / "archery" / "._a1.mp4").write_bytes(b"resource fork")
    return {"root": root, "good": good, "bad": bad}


# --------------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("a/b.mp4", ("a/b.mp4", None)),
        ("a/b.mp4 3", ("a/b.mp4", "3")),  # V-JEPA
        ("/data/k400/x y.mp4 12", ("/data/k400/x y.mp4", "12")),  # a space in the path
        ("my clip.webm", ("my clip.webm", None)),
        ("a/b.mp4,7", ("a/b.mp4", "7")),
        ("a/b.mp4\t7", ("a/b.mp4", "7")),
        ("/data/noext 5", ("/data/noext", "5")),  # unknown extension: first field, like the official loader
        ("path label", ("path", "label")),
    ],
)
def test_parse_index_line(line, expected):
    assert parse_index_line(line) == expected


def test_read_vjepa_csv_and_list_files(tmp_path):
    index = tmp_path / "lists" / "k400.csv"
    index.parent.mkdir()
    index.write_text("# comment\n\nrel/a.mp4 0\n/abs/b.mkv 1\nsub dir/c d.webm 2\n")
    entries = read_index(index)
    assert [e.path for e in entries] == [
        tmp_path / "lists" / "rel" / "a.mp4",  # relative to the index file's folder
        Path("/abs/b.mkv"),
        tmp_path / "lists" / "sub dir" / "c d.webm",
    ]
    assert [e.label for e in entries] == ["0", "1", "2"]
    header = tmp_path / "with_header.csv"
    header.write_text("path,label\nx.mp4,1\n")
    assert [e.path.name for e in read_index(header)] == ["x.mp4"]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ValueError, match="lists no videos"):
        read_index(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_index(tmp_path / "nope.csv")


def test_scan_folder_is_recursive_sorted_and_filtered(tree):
    rel = [p.relative_to(tree["root"]).as_posix() for p in scan_video_folder(tree["root"])]
    assert rel == sorted(rel)
    assert set(tree["good"]) <= set(rel)  # nested, upper-case extension, space in the name
    assert not any(r.endswith((".txt", ".png")) or ".hidden" in r or "/._" in r for r in rel)
    assert len(rel) == len(tree["good"]) + len(tree["bad"])
    empty = tree["root"].parent / "no_videos"
    empty.mkdir(exist_ok=True)
    (empty / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no videos found"):
        scan_video_folder(empty)


def test_split_index_spec_and_detect_kind(tree, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.txt"
    a.write_text("x.mp4 0\ny.mp4 1\n")
    b.write_text("p.png\nq.jpg\n")
    assert split_index_spec(f"{a},{b}") == [a, b]
    assert split_index_spec([a, b]) == [a, b]
    odd = tmp_path / "a,b.csv"  # a comma in an existing file's name
    odd.write_text("z.mp4\n")
    assert split_index_spec(str(odd)) == [odd]
    assert detect_kind(a) == "video"
    assert detect_kind(b) == "image"
    assert detect_kind(tree["root"]) == "video"
    assert detect_kind(tree["good"]["top.mp4"]) == "video"
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "x.png").write_bytes(b"")
    assert detect_kind(images) == "image"
    with pytest.raises(FileNotFoundError, match="missing"):
        detect_kind(f"{a},{tmp_path / 'missing.csv'}")


# --------------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------------
FRAMES = {"archery/a1.mp4": 10, "archery/deeper/a2.WEBM": 7, "bowling/b1.avi": 12, "top.mp4": 9}
FRAMES["bowling/with space.mp4"] = 8


def test_write_index_is_vjepa_compatible_with_metadata_and_failures(tree, tmp_path):
    out = tmp_path / "out" / "train.csv"
    report = write_index(tree["root"], out)
    root = tree["root"].resolve()

    # The official loader reads a space-separated CSV without header: path in column 0, an int label in column 1.
    lines = out.read_text().splitlines()
    assert len(lines) == report.num_videos == len(tree["good"])
    written = {}
    for line in lines:
        path, label = line.rsplit(" ", 1)
        assert Path(path).is_absolute() and Path(path).is_file()
        written[Path(path).relative_to(root).as_posix()] = int(label)
    assert set(written) == set(tree["good"])
    # Labels: sorted top-level folders, files directly in the root form class "" (the first).
    assert report.classes == ["", "archery", "bowling"]
    assert written["top.mp4"] == 0 and written["archery/a1.mp4"] == written["archery/deeper/a2.WEBM"] == 1
    assert written["bowling/b1.avi"] == 2
    simple = [line for line in lines if "with space" not in line]
    assert all(len(line.split(" ")) == 2 for line in simple)
    assert report.paths_with_spaces == 1

    # Every bad file is reported with a reason, none is written.
    failed = {p.resolve(): reason for p, reason in report.failures}
    assert set(failed) == {p.resolve() for p in tree["bad"].values()}
    assert all(reason for reason in failed.values())

    meta = meta_path_for(out)
    assert meta == tmp_path / "out" / "train.meta.csv"
    with open(meta, newline="") as f:
        rows = {Path(r["path"]).relative_to(root).as_posix(): r for r in csv.DictReader(f)}
    for rel, frames in FRAMES.items():
        row = rows[rel]
        fps = 30 if rel.endswith(".avi") else 25
        assert int(row["num_frames"]) == frames
        assert float(row["fps"]) == pytest.approx(fps)
        assert float(row["duration_s"]) == pytest.approx(frames / fps, abs=1e-3)
        assert (int(row["width"]), int(row["height"])) == (64, 48)
        assert row["codec"] and row["label"] == str(written[rel])
    assert report.total_frames == sum(FRAMES.values())

    # Our reader takes the index back, sizes from the sidecar included.
    entries = read_index(out)
    assert {e.path.relative_to(root).as_posix() for e in entries} == set(tree["good"])
    assert all((e.width, e.height) == (64, 48) for e in entries)


def test_write_index_relative_paths(tree, tmp_path):
    out = tmp_path / "rel.csv"
    write_index(tree["root"], out, relative=True, check_decode=False)
    for line in out.read_text().splitlines():
        assert not Path(line.rsplit(" ", 1)[0]).is_absolute()
    assert {e.path.resolve() for e in read_index(out)} == {p.resolve() for p in tree["good"].values()}


def test_write_index_with_worker_threads_matches(tree, tmp_path):
    one = write_index(tree["root"], tmp_path / "one.csv")
    two = write_index(tree["root"], tmp_path / "two.csv", num_workers=2)
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "two.csv").read_text()
    assert sorted(p for p, _ in one.failures) == sorted(p for p, _ in two.failures)


def test_index_cli_writes_csv_and_reports_bad_files(tree, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    assert main(["index", str(tree["root"]), "--output", str(out), "--workers", "2"]) == 0
    stdout = capsys.readouterr().out
    assert f"wrote {len(tree['good'])} videos" in stdout
    assert f"{len(tree['bad'])} files could not be opened" in stdout
    for path in tree["bad"].values():
        assert path.name in stdout
    assert len(out.read_text().splitlines()) == len(tree["good"])

    only_bad = tree["root"] / "bowling" / "broken"
    assert main(["index", str(only_bad), "-o", str(tmp_path / "bad.csv")]) == 1
    assert "wrote 0 videos" in capsys.readouterr().out
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    assert main(["index", str(nothing), "-o", str(tmp_path / "n.csv")]) == 2
    assert "no videos found" in capsys.readouterr().err


def test_index_cli_subprocess_help():
    """The entry point as a user runs it (one subprocess: importing torch is slow on a loaded machine)."""
    proc = subprocess.run(
        [sys.executable, "-m", "jepa_world.cli", "index", "--help"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "--output" in proc.stdout and "V-JEPA" in proc.stdout
