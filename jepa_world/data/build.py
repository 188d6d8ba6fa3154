"""Dataset construction from the config: built-in synthetic data by default, user data through `data.index`."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from jepa_world.data.episode_clips import EpisodeClips
from jepa_world.data.images import ImageFolderDataset
from jepa_world.data.index import detect_kind, split_index_spec
from jepa_world.data.synthetic import BouncingShapesVideo, ShapesImages
from jepa_world.data.video.dataset import VideoClipDataset


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


def _video_dataset(data_cfg) -> Dataset:
    """`VideoClipDataset` for the `data.*` keys (clip length = data.num_frames)."""
    return VideoClipDataset(
        index=data_cfg.index,
        index_weights=list(data_cfg.index_weights) or None,
        frames_per_clip=data_cfg.num_frames,
        frame_step=data_cfg.frame_step,
        fps=data_cfg.fps,
        clips_per_video=data_cfg.clips_per_video,
        random_clip=data_cfg.random_clip,
        image_size=data_cfg.image_size,
        train=True,
        crop_scale=tuple(data_cfg.crop_scale),
        crop_aspect=tuple(data_cfg.crop_aspect),
        hflip=data_cfg.hflip,
        reader=data_cfg.reader,
        decode_short_side=data_cfg.decode_short_side,
        max_skip_fraction=data_cfg.max_skip_fraction,
    )


def build_dataset(data_cfg, *, seed: int) -> Dataset:
    """Dataset for `data.*` config keys.

    `data.num_frames > 1` means a video model: image sources are repeated over the clip. A `data.index` takes
    precedence over `data.source`; one that holds videos (a folder with video files, a video list or V-JEPA CSV,
    several comma-separated indexes) builds a `VideoClipDataset`.

    Raises:
        ValueError / FileNotFoundError: the index points at nothing or at a folder with no usable files.
    """
    video = data_cfg.num_frames > 1
    if data_cfg.episodes is not None or data_cfg.source == "episodes":
        if data_cfg.episodes is None:
            raise ValueError("data.source=episodes needs data.episodes=DIR (episodes written by `jepa-world collect`)")
        if data_cfg.index is not None:
            raise ValueError("data.episodes and data.index are two data sources: set one of them")
        return EpisodeClips(
            root=Path(data_cfg.episodes).expanduser(),
            num_frames=data_cfg.num_frames,
            frame_step=data_cfg.frame_step,
            image_size=data_cfg.image_size,
            crop_scale=tuple(data_cfg.crop_scale),
            crop_aspect=tuple(data_cfg.crop_aspect),
            hflip=data_cfg.hflip,
            max_skip_fraction=data_cfg.max_skip_fraction,
        )
    if data_cfg.index is not None or data_cfg.source == "index":
        if data_cfg.index is None:
            raise ValueError("data.source=index needs data.index=PATH (a folder of images or an index file)")
        for part in split_index_spec(data_cfg.index):
            if not part.exists():
                what = f"data.index={data_cfg.index!r}" + (f" ({part})" if str(part) != data_cfg.index else "")
                raise FileNotFoundError(f"{what} does not exist")
        if detect_kind(data_cfg.index) == "video":
            if not video:
                raise ValueError(f"data.index={data_cfg.index!r} holds videos: set data.num_frames > 1 (a video model)")
            return _video_dataset(data_cfg)
        path = Path(data_cfg.index).expanduser()
        # Images work for both model kinds (repeated over the clip for a video model).
        dataset: Dataset = ImageFolderDataset(
            index=path,
            image_size=data_cfg.image_size,
            train=True,
            scale=tuple(data_cfg.crop_scale),
            max_skip_fraction=data_cfg.max_skip_fraction,
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
    raise ValueError(f"data.source={data_cfg.source!r}; expected synthetic_video, synthetic_images, index or episodes")
