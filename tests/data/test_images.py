"""Tests for the image-folder dataset and transforms (jepa_world/data/images.py, jepa_world/data/transforms.py)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from jepa_world.data.images import ImageFolderDataset
from jepa_world.data.transforms import denormalize, normalize, split_key

# The published ImageNet statistics, written out here rather than imported from the code under test.
MEAN = torch.tensor([0.485, 0.456, 0.406])
STD = torch.tensor([0.229, 0.224, 0.225])


def write_image(path: Path, rng: np.random.Generator, size: tuple[int, int] = (40, 32)) -> Path:
    """Random RGB image of size (W, H); format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.fromarray(pixels).save(path, format=fmt)
    return path


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """24 images: PNG and JPEG, some nested two levels deep, one with an upper-case suffix, plus non-images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for i in range(10):
        write_image(root / f"img_{i:02d}.png", rng, size=(40 + i, 32))
    for i in range(10):
        write_image(root / "sub" / f"photo_{i:02d}.jpg", rng, size=(48, 36 + i))
    for i in range(3):
        write_image(root / "sub" / "deeper" / f"deep_{i}.png", rng)
    write_image(root / "UPPER.JPG", rng)
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "labels.csv").write_text("a,1\n")
    write_image(root / ".hidden" / "skip_me.png", rng)
    return root


@pytest.fixture
def bad_index(tmp_path: Path) -> Path:
    """Index file: good0, garbage bytes, zero bytes, missing, good1, truncated PNG, good2."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "mixed"
    write_image(folder / "good0.png", rng)
    (folder / "garbage.png").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    (folder / "empty.jpg").write_bytes(b"")
    write_image(folder / "good1.png", rng)
    full = write_image(folder / "truncated.png", rng, size=(64, 64)).read_bytes()
    (folder / "truncated.png").write_bytes(full[: len(full) // 2])
    write_image(folder / "good2.jpg", rng)
    index = folder / "index.txt"
    index.write_text("good0.png\ngarbage.png\nempty.jpg\nmissing.png\ngood1.png\ntruncated.png\ngood2.jpg\n")
    return index


def test_folder_is_scanned_recursively_sorted_and_filtered(image_tree: Path):
    ds = ImageFolderDataset(index=image_tree, image_size=32)
    rel = [p.relative_to(image_tree).as_posix() for p in ds.paths]
    assert len(ds) == 24
    assert rel == sorted(rel)
    assert "sub/deeper/deep_0.png" in rel and "sub/photo_09.jpg" in rel
    assert "UPPER.JPG" in rel  # extensions are matched case-insensitively
    assert not any(r.endswith((".txt", ".csv")) or r.startswith(".hidden") for r in rel)
    assert ImageFolderDataset(index=image_tree, image_size=32).paths == ds.paths


@pytest.mark.parametrize("train", [True, False])
def test_item_shape_dtype(image_tree: Path, train: bool):
    ds = ImageFolderDataset(index=image_tree, image_size=24, train=train)
    for i in (0, 12, 23):  # PNG, JPEG (nested), last
        item = ds[i]
        assert item["x"].shape == (3, 24, 24)
        assert item["x"].dtype == torch.float32
        assert torch.isfinite(item["x"]).all()
        assert item["skipped"] == 0


def test_eval_output_is_normalised_with_imagenet_stats(tmp_path: Path):
    Image.new("RGB", (50, 40), (255, 128, 0)).save(tmp_path / "flat.png")
    for train in (False, True):
        ds = ImageFolderDataset(index=tmp_path, image_size=16, train=train)
        expected = (torch.tensor([255, 128, 0]) / 255 - MEAN) / STD
        torch.testing.assert_close(ds[0]["x"], expected[:, None, None].expand(3, 16, 16), atol=1e-5, rtol=0)


def test_eval_is_a_center_crop(tmp_path: Path):
    # Three vertical bands: red | green | blue. A 0.875 center crop of a 3:1 image keeps mostly the green band.
    pixels = np.zeros((40, 120, 3), dtype=np.uint8)
    pixels[:, :40, 0] = 255
    pixels[:, 40:80, 1] = 255
    pixels[:, 80:, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "bands.png")
    rgb = denormalize(ImageFolderDataset(index=tmp_path, image_size=32, train=False)[0]["x"])
    assert rgb.shape == (3, 32, 32)
    assert rgb[1].mean() > 0.95 and rgb[0].max() < 0.05 and rgb[2].max() < 0.05


def test_index_file_with_relative_paths_comments_and_labels(image_tree: Path, tmp_path: Path):
    lists = tmp_path / "lists"
    lists.mkdir()
    absolute = image_tree / "img_03.png"
    (lists / "train.csv").write_text(
        "path,label\n"
        "# a comment line\n"
        "\n"
        "../images/img_00.png,3\n"
        "   ../images/sub/photo_01.jpg 7\n"
        "../images/sub/deeper/deep_2.png\n"
        f"{absolute}\n"
    )
    ds = ImageFolderDataset(index=lists / "train.csv", image_size=16)
    expected = [
        image_tree / "img_00.png",
        image_tree / "sub" / "photo_01.jpg",
        image_tree / "sub" / "deeper" / "deep_2.png",
        absolute,
    ]
    assert [p.resolve() for p in ds.paths] == [p.resolve() for p in expected]
    assert [ds[i]["skipped"] for i in range(len(ds))] == [0, 0, 0, 0]


def test_bad_images_are_skipped_counted_and_warned_once(bad_index: Path, caplog: pytest.LogCaptureFixture):
    ds = ImageFolderDataset(index=bad_index, image_size=16, max_skip_fraction=1.0)
    with caplog.at_level(logging.WARNING, logger="jepa_world.data"):
        first = ds[(1, 5)]  # garbage, empty, missing, then good1
        again = ds[(1, 5)]
        from_empty = ds[(2, 5)]
        from_truncated = ds[(5, 5)]
    assert first["skipped"] == 3 and again["skipped"] == 3 and from_empty["skipped"] == 2
    assert from_truncated["skipped"] == 1
    # The replacement is exactly the next good item under the same aug_seed.
    assert torch.equal(first["x"], ds[(4, 5)]["x"])
    assert torch.equal(from_truncated["x"], ds[(6, 5)]["x"])
    assert ds[(4, 5)]["skipped"] == 0
    for name in ("garbage.png", "empty.jpg", "missing.png", "truncated.png"):
        hits = [r for r in caplog.records if r.name == "jepa_world.data" and name in r.getMessage()]
        assert len(hits) == 1, f"{name}: {len(hits)} warnings"
        assert hits[0].levelno == logging.WARNING


def test_skipping_wraps_around_to_the_start(tmp_path: Path):
    rng = np.random.default_rng(2)
    write_image(tmp_path / "a.png", rng)
    write_image(tmp_path / "b.png", rng)
    (tmp_path / "c.png").write_bytes(b"not a png")
    ds = ImageFolderDataset(index=tmp_path, image_size=16, train=False)
    item = ds[2]
    assert item["skipped"] == 1
    assert torch.equal(item["x"], ds[0]["x"])


def test_all_bad_raises_runtime_error(tmp_path: Path):
    for i in range(6):
        (tmp_path / f"bad_{i}.png").write_bytes(b"\x89PNG garbage")
    ds = ImageFolderDataset(index=tmp_path, image_size=16, max_skip_fraction=0.5)
    with pytest.raises(RuntimeError, match=r"3 consecutive images.*bad_\d\.png"):
        ds[0]


def test_max_skip_fraction_bounds_the_search(tmp_path: Path):
    rng = np.random.default_rng(3)
    for i in range(4):
        (tmp_path / f"{i}_bad.png").write_bytes(b"")
    for i in range(4, 10):
        write_image(tmp_path / f"{i}_good.png", rng)
    with pytest.raises(RuntimeError, match="4 consecutive"):
        ImageFolderDataset(index=tmp_path, image_size=16, max_skip_fraction=0.4)[0]
    assert ImageFolderDataset(index=tmp_path, image_size=16, max_skip_fraction=0.5)[0]["skipped"] == 4


def test_construction_errors_name_the_path(tmp_path: Path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        ImageFolderDataset(index=missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=rf"{re.escape(str(empty))}.*0 file"):
        ImageFolderDataset(index=empty)
    no_images = tmp_path / "docs"
    no_images.mkdir()
    (no_images / "readme.md").write_text("x")
    (no_images / "data.npy").write_bytes(b"x")
    with pytest.raises(ValueError, match=rf"{re.escape(str(no_images))}.*2 file.*\.jpg"):
        ImageFolderDataset(index=no_images)
    blank_index = tmp_path / "index.txt"
    blank_index.write_text("# only a comment\n\n   \n")
    with pytest.raises(ValueError, match=re.escape(str(blank_index))):
        ImageFolderDataset(index=blank_index)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"image_size": 0}, "image_size"), ({"scale": (0.0, 1.0)}, "scale"), ({"max_skip_fraction": 0.0}, "max_skip")],
)
def test_bad_arguments_raise(image_tree: Path, kwargs: dict, name: str):
    with pytest.raises(ValueError, match=name):
        ImageFolderDataset(index=image_tree, **kwargs)


def test_train_augmentation_is_determined_by_aug_seed(image_tree: Path):
    ds = ImageFolderDataset(index=image_tree, image_size=24, train=True, scale=(0.2, 0.5))
    a = ds[(3, 7)]["x"]
    assert torch.equal(a, ds[(3, 7)]["x"])
    assert torch.equal(a, ImageFolderDataset(index=image_tree, image_size=24, scale=(0.2, 0.5))[(3, 7)]["x"])
    assert not torch.equal(a, ds[(3, 8)]["x"])
    assert torch.equal(ds[3]["x"], ds[(3, 3)]["x"])  # a plain int means aug_seed = index
    # The global RNG is neither used nor disturbed.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ds[(3, 7)]
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(123)
    assert torch.equal(ds[(3, 7)]["x"], a)


def test_same_keys_same_tensors_in_dataloader_workers(image_tree: Path):
    ds = ImageFolderDataset(index=image_tree, image_size=16, train=True)
    keys = [(i, 1000 + i) for i in range(8)]
    loader = DataLoader(ds, batch_size=4, sampler=keys, num_workers=2)
    batches = torch.cat([batch["x"] for batch in loader])
    torch.testing.assert_close(batches, torch.stack([ds[k]["x"] for k in keys]), rtol=0, atol=0)


def test_eval_transform_is_deterministic_and_ignores_aug_seed(image_tree: Path):
    ds = ImageFolderDataset(index=image_tree, image_size=24, train=False)
    x = ds[5]["x"]
    assert torch.equal(x, ds[5]["x"])
    assert torch.equal(x, ds[(5, 999)]["x"])
    assert torch.equal(x, ImageFolderDataset(index=image_tree, image_size=24, train=False)[5]["x"])


def test_split_key():
    assert split_key(3, 10) == (3, 3)
    assert split_key((3, 42), 10) == (3, 42)
    assert split_key([np.int64(4), torch.tensor(5)], 10) == (4, 5)
    assert split_key(-1, 10) == (9, 9)
    with pytest.raises(IndexError, match="10"):
        split_key(10, 10)
    for bad in ("3", 2.0, (1, 2, 3), (1.0, 2), None, True):
        with pytest.raises(TypeError, match="key"):
            split_key(bad, 10)


def test_normalize_and_denormalize_roundtrip():
    x = torch.rand(3, 4, 5, 6)
    y = normalize(x)
    torch.testing.assert_close(y[:, 1, 2, 3], (x[:, 1, 2, 3] - MEAN) / STD)
    torch.testing.assert_close(denormalize(y), x)
    assert normalize(x.clone(), inplace=True).equal(y)
    with pytest.raises(ValueError, match="3 channels"):
        normalize(torch.rand(4, 8, 8))
