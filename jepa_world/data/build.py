"""Dataset construction from the config: built-in synthetic data by default, user data through `data.index`."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from jepa_world.data.synthetic import BouncingShapesVideo, ShapesImages


class RepeatFrames(Dataset):
    """Feed an image dataset to a video model: `x [3, H, W]` -> `[3, T, H, W]` (as the V-JEPA releases do)."""

    def __init__(self, dataset: Dataset, *, num_frames: int):
        self.dataset, self.num_frames = dataset, num_frames

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        item = dict(self.dataset[key])
        item["x"] = item["x"].unsqueeze(1).expand(-1, self.num_frames, -1, -1).contiguous()
        return item


def build_dataset(data_cfg, *, seed: int) -> Dataset:
    """Dataset for `data.*` config keys.

    `data.num_frames > 1` means a video model: image sources are repeated over the clip. A `data.index` takes
    precedence over `data.source`.

    Raises:
        ValueError / FileNotFoundError: the index points at nothing or at a folder with no usable files.
    """
    video = data_cfg.num_frames > 1
    if data_cfg.index is not None or data_cfg.source == "index":
        if data_cfg.index is None:
            raise ValueError("data.source=index needs data.index=PATH (a folder of images or an index file)")
        path = Path(data_cfg.index).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data.index={data_cfg.index!r} does not exist")
        # Video files through the index come with the video pipeline; images work for both model kinds.
        from jepa_world.data.images import ImageFolderDataset

        dataset: Dataset = ImageFolderDataset(
            index=path, image_size=data_cfg.image_size, train=True, max_skip_fraction=data_cfg.max_skip_fraction
        )
        return RepeatFrames(dataset, num_frames=data_cfg.num_frames) if video else dataset
    if data_cfg.source == "synthetic_video":
        if not video:
            return ShapesImages(num_samples=data_cfg.num_samples, image_size=data_cfg.image_size, seed=seed)
        return BouncingShapesVideo(
            num_samples=data_cfg.num_samples, num_frames=data_cfg.num_frames, image_size=data_cfg.image_size, seed=seed
        )
    if data_cfg.source == "synthetic_images":
        dataset = ShapesImages(num_samples=data_cfg.num_samples, image_size=data_cfg.image_size, seed=seed)
        return RepeatFrames(dataset, num_frames=data_cfg.num_frames) if video else dataset
    raise ValueError(f"data.source={data_cfg.source!r}; expected synthetic_video, synthetic_images or index")
