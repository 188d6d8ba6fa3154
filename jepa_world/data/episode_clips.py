"""Pretraining on recorded episodes: clips (V-JEPA) or single frames (I-JEPA) from the frames of offline episodes.

The episodes are the documented format of `jepa_world.data.episodes` (`jepa-world collect`, or a user's own robot
episodes written with `write_episode`) or a LeRobot v3 dataset with one camera; only their frames are used. A clip is
`num_frames` frames `frame_step` apart inside one episode; every window start of every episode is an item.
Augmentation is the video pipeline's (`make_clip_transform`: one random resized crop and flip for the whole clip,
seeded by the key's `aug_seed`), so a key maps to the same clip in any process, worker or resumed run, and sharding
comes from the loop's sampler as for any dataset. An episode that cannot be read at item time (deleted or damaged
after the dataset was built) is skipped like an unreadable image: the next item is used and `"skipped"` counts it, up
to `max_skip_fraction` of the items.

Items: `{"x": [3, T, S, S] float32 ImageNet-normalised (or [3, S, S] for num_frames=1), "skipped": int}`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchvision import tv_tensors

from jepa_world.data.episode_formats import open_episodes
from jepa_world.data.transforms import apply_seeded, normalize_clip, split_key
from jepa_world.data.video.dataset import make_clip_transform
from jepa_world.data.windows import WindowTooLongError

logger = logging.getLogger("jepa_world.data")


class EpisodeClips(Dataset):
    """Clips or frames of offline episodes for JEPA pretraining (see the module docstring).

    Args:
        root: episode folder.
        num_frames: frames per clip T (1: single frames for an image model).
        frame_step: distance between the clip's frames, in episode steps.
        image_size: output side S.
        train: random resized crop + flip (else resize + center crop).
        crop_scale: random resized crop area range.
        crop_aspect: random resized crop aspect range.
        hflip: random horizontal flip.
        max_skip_fraction: at most this fraction of consecutive items is tried for one key.

    Raises:
        ValueError: the folder holds no episodes, none is long enough for one clip, or they disagree in frame size.
    """

    def __init__(
        self,
        *,
        root: str | Path,
        num_frames: int,
        frame_step: int = 1,
        image_size: int = 64,
        train: bool = True,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        crop_aspect: tuple[float, float] = (0.75, 1.35),
        hflip: bool = True,
        max_skip_fraction: float = 0.5,
    ) -> None:
        try:
            self.windows = open_episodes(root=root, window=num_frames, frameskip=frame_step, uint8=True)
        except WindowTooLongError as err:  # in the keys the user set, not the dataset's argument names
            raise ValueError(err.message("data.num_frames", "data.frame_step")) from None
        self.num_frames, self.train = num_frames, train
        self.transform = make_clip_transform(
            image_size, train=train, crop_scale=tuple(crop_scale), crop_aspect=tuple(crop_aspect), hflip=hflip
        )
        self.max_tries = max(1, math.ceil(max_skip_fraction * len(self.windows)))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        index, aug_seed = split_key(key, len(self))
        for skipped in range(self.max_tries):
            i = (index + skipped) % len(self)
            try:
                frames = self.windows[i]["x"]  # [T, 3, H, W] uint8
            except (OSError, ValueError) as err:  # the file changed since the dataset was built
                logger.warning("skipping unreadable episode window %d (%s: %s)", i, type(err).__name__, err)
                continue
            video = tv_tensors.Video(frames)
            clip = apply_seeded(self.transform, video, aug_seed) if self.train else self.transform(video)
            x = normalize_clip(clip)  # [3, T, S, S]
            return {"x": x[:, 0] if self.num_frames == 1 else x, "skipped": skipped}
        raise RuntimeError(
            f"{self.max_tries} consecutive episode windows from item {index} could not be read "
            f"(data.max_skip_fraction); see the warnings above"
        )
