"""Real images from a folder or an index file, with seeded augmentation and skipping of unreadable files.

``index`` is either a folder, scanned recursively (hidden files and folders, names starting with ".", are left
out, e.g. macOS ``._x.jpg`` resource forks), or a text file listing one image per line. Paths are sorted (folders)
or kept in file order (index files), so item ``i`` is the same file on every machine.

An unreadable image (truncated, not an image, empty, missing) is logged once per path per process on the
``jepa_world.data`` logger and replaced by the next item, ``(i + 1) % N``, deterministically; the item reports how
many it skipped in ``"skipped"`` so the training loop can count them. A run of failures longer than
``max_skip_fraction`` of the dataset raises instead of looping.

Items: ``{"x": [3, S, S] float32 ImageNet-normalised, "skipped": int}``; keys follow the sample-key contract of
`jepa_world.data.transforms.split_key` (``aug_seed`` seeds the random crop and flip).
"""

from __future__ import annotations

import logging
import math
import os
import stat
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset

from jepa_world.data.index import IMAGE_EXTENSIONS, read_index_file, scan_media_folder
from jepa_world.data.transforms import apply_seeded, make_eval_transform, make_train_transform, split_key

logger = logging.getLogger("jepa_world.data")


class ImageFolderDataset(Dataset):
    """Images from a folder or index file, cropped and normalised to ``[3, S, S]``.

    Args:
        index: A folder (scanned recursively for files with an extension in `IMAGE_EXTENSIONS`, any case), or a text
            file with one path per line, read by `jepa_world.data.index.read_index_file` (the video indexes' reader):
            relative paths are relative to the file's folder, blank lines and ``#`` lines are ignored, and for
            ``path,label`` or ``path label`` lines the path is used.
        image_size: Output side ``S``.
        train: Random resized crop + flip seeded by the key's ``aug_seed`` if True; resize + center crop if False.
        scale: Area range of the random crop, as fractions of the image.
        max_skip_fraction: At most ``ceil(max_skip_fraction * N)`` (at least 1) consecutive items are tried for one
            key; if all fail, RuntimeError.

    Raises:
        FileNotFoundError: If ``index`` does not exist.
        ValueError: If the folder holds no images, the index file lists none, or an argument is out of range.
    """

    def __init__(
        self,
        *,
        index: str | Path,
        image_size: int = 224,
        train: bool = True,
        scale: tuple[float, float] = (0.3, 1.0),
        max_skip_fraction: float = 0.5,
    ) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high <= 1, got {scale}")
        if not 0.0 < max_skip_fraction <= 1.0:
            raise ValueError(f"max_skip_fraction must be in (0, 1], got {max_skip_fraction}")
        self.index = Path(index).expanduser()
        if not self.index.exists():
            raise FileNotFoundError(f"index {self.index} does not exist (expected a folder of images or a text file)")
        self.paths = (
            scan_media_folder(self.index, extensions=IMAGE_EXTENSIONS, kind="images")
            if self.index.is_dir()
            else [entry.path for entry in read_index_file(self.index, kind="image")]
        )
        self.image_size = image_size
        self.train = train
        self.scale = (float(scale[0]), float(scale[1]))
        self.max_skip_fraction = max_skip_fraction
        self.max_tries = max(1, math.ceil(max_skip_fraction * len(self.paths)))
        self.transform = make_train_transform(image_size, self.scale) if train else make_eval_transform(image_size)
        self._warned: set[Path] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, path: Path) -> tuple[Image.Image | None, str]:
        """Decode ``path`` to RGB, or return ``(None, reason)`` after warning once for this path."""
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device named like an image would block forever
                raise OSError(f"not a regular file: {path}")
            with Image.open(path) as image:
                return image.convert("RGB"), ""
        # PIL reports bad files as OSError, ValueError, SyntaxError or DecompressionBombError depending on the codec.
        except Exception as err:
            reason = f"{type(err).__name__}: {err}"
            if path not in self._warned:
                self._warned.add(path)
                logger.warning("skipping unreadable image %s (%s)", path, reason)
            return None, reason

    def __getitem__(self, key: Any) -> dict[str, Any]:
        index, aug_seed = split_key(key, len(self.paths))
        first_failure = ""
        for skipped in range(self.max_tries):
            path = self.paths[(index + skipped) % len(self.paths)]
            image, reason = self._load(path)
            if image is None:
                first_failure = first_failure or f"{path} ({reason})"
                continue
            x = apply_seeded(self.transform, image, aug_seed) if self.train else self.transform(image)
            return {"x": x, "skipped": skipped}
        raise RuntimeError(
            f"{self.max_tries} consecutive images from item {index} of {len(self.paths)} in {self.index} failed to "
            f"load (max_skip_fraction={self.max_skip_fraction}); first failure: {first_failure}"
        )
