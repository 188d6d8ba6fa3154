"""A checkpoint write that fills the disk (issue 41): the error says so, names the folder, its free space and the
earlier checkpoint, which is intact; no partial file is left."""

from __future__ import annotations

import errno

import pytest
import torch

from jepa_world import checkpoints
from jepa_world.atomic import DiskFullError, atomic_write
from jepa_world.checkpoints.io import checkpoint_path, load_checkpoint, save_checkpoint

TORCH_SHORT_WRITE = "[enforce fail at inline_container.cc:672] . unexpected pos 10699264 vs 10699156"


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _failing_save(monkeypatch, error: BaseException):
    """torch.save writes part of the file, then fails as a full disk does (the writer is patched, not the handling)."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if obj.get("step") == 4:
            f.write(b"partial checkpoint bytes")
            raise error
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoints.io.torch, "save", save)


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), RuntimeError(TORCH_SHORT_WRITE)],
    ids=["enospc", "torch-unexpected-pos"],
)
def test_a_full_disk_at_a_checkpoint_says_so_and_keeps_the_earlier_one(tmp_path, monkeypatch, error):
    folder = tmp_path / "checkpoints"
    save_checkpoint(checkpoint_path(folder, 2), {"step": 2, "w": torch.arange(4.0)})
    before = _files(folder)
    _failing_save(monkeypatch, error)
    with pytest.raises(DiskFullError) as info:
        save_checkpoint(checkpoint_path(folder, 4), {"step": 4, "w": torch.arange(4.0)})
    message = str(info.value)
    assert "No space left on device" in message and f"the disk holding {folder} is full" in message, message
    assert " free)" in message and "unknown free" not in message, message
    assert "the earlier checkpoint" in message and "step_00000002.pt is intact" in message, message
    assert info.value.errno == errno.ENOSPC
    assert _files(folder) == before  # no partial step_00000004.pt, no temporary file
    assert load_checkpoint(folder / "step_00000002.pt")["step"] == 2


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    _failing_save(monkeypatch, OSError(errno.EIO, "Input/output error"))
    with pytest.raises(OSError, match="Input/output error") as info:
        save_checkpoint(checkpoint_path(folder, 4), {"step": 4})
    assert not isinstance(info.value, DiskFullError)
    assert list(folder.iterdir()) == []


def test_a_full_disk_under_any_atomic_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "index.csv"
    target.write_text("old\n")

    def write(f):
        f.write(b"new, half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match=r"index.csv: No space left on device; the disk holding .* is full"):
        atomic_write(target, write)
    assert _files(tmp_path) == {"index.csv": b"old\n"}


def test_pretrain_whose_disk_fills_stops_with_one_line_and_resumes(tmp_path, monkeypatch, capsys):
    from jepa_world.cli import main
    from tests.conftest import tiny_overrides

    _failing_save(monkeypatch, RuntimeError(TORCH_SHORT_WRITE))
    assert main(["pretrain", *tiny_overrides(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: could not write" in err and "No space left on device" in err, err
    assert "step_00000002.pt is intact (a rerun resumes from it)" in err, err
    ckpt_dir = tmp_path / "run" / "checkpoints"
    assert [p.name for p in ckpt_dir.iterdir()] == ["step_00000002.pt"]
    monkeypatch.undo()  # space freed: the same command resumes from step 2 and finishes
    assert main(["pretrain", *tiny_overrides(tmp_path)]) == 0
    assert load_checkpoint(ckpt_dir / "step_00000004.pt")["step"] == 4
