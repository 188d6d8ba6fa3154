"""Which episode format a folder holds, and the one door that opens either as windows (`open_episodes`).

Two formats: ours (`jepa_world.data.episodes`: ``episode_*.npz`` files) and LeRobot v3.0 (`jepa_world.data.lerobot`:
``meta/info.json`` with ``codebase_version`` v3.x). World-model and policy training, the frozen-feature cache and
pretraining on episodes all open their episodes here, so every command reads both formats; the two datasets have the
same interface and items (`EpisodeDataset`'s).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jepa_world.data.episodes import EPISODE_GLOB, EpisodeDataset
from jepa_world.data.lerobot import AUTO, INFO_FILE, LeRobotEpisodes, read_info
from jepa_world.data.windows import EpisodeWindows

EPISODES = "episodes"  # our format
LEROBOT = "lerobot"


def episode_format(root: str | Path) -> str:
    """``"lerobot"`` or ``"episodes"`` for the dataset folder ``root``.

    Raises:
        ValueError: ``root`` is not a folder, is a LeRobot dataset of another version, or holds neither format
            (the message lists what it holds).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root={str(root)!r} is not a directory")
    if (root / INFO_FILE).is_file():
        try:
            version = str(read_info(root).get("codebase_version"))
        except (ValueError, AttributeError) as err:
            raise ValueError(f"root={str(root)!r}: {INFO_FILE} is not a JSON object ({err})") from None
        if version.startswith("v3"):
            return LEROBOT
        raise ValueError(
            f"root={str(root)!r} is a LeRobot dataset of codebase_version {version!r}; only v3.x is read (convert "
            "it with LeRobot's lerobot.datasets.v30.convert_dataset_v21_to_v30)"
        )
    if any(root.glob(EPISODE_GLOB)):
        return EPISODES
    found = sorted(p.name for p in root.iterdir())
    shown = ", ".join(found[:8]) + (", ..." if len(found) > 8 else "") if found else "nothing"
    raise ValueError(
        f"root={str(root)!r} is in neither episode format: it holds no {EPISODE_GLOB} files (ours) and no "
        f"{INFO_FILE} (a LeRobot v3 dataset), but {shown}"
    )


def open_episodes(
    *,
    root: str | Path,
    camera: str | None = None,
    action_key: str = "action",
    state_key: str | None = AUTO,
    **options: Any,
) -> EpisodeWindows:
    """The windows of the episodes in ``root``, whichever format they are in.

    Args:
        root: Dataset folder, either format (`episode_format`).
        camera, action_key, state_key: The features a LeRobot dataset is read from (`LeRobotEpisodes`); only the
            defaults are accepted for our format, which has one meaning per array.
        **options: The window arguments both datasets take (``window``, ``frameskip``, ``stride``, ``image_size``,
            ``normalize``, ``in_memory``, ``uint8``: see `EpisodeDataset`).

    Raises:
        ValueError: From `episode_format`, from the dataset, or LeRobot keys set for a folder in our format.
        TypeError: An option neither dataset takes.
    """
    if episode_format(root) == LEROBOT:
        return LeRobotEpisodes(root=root, camera=camera, action_key=action_key, state_key=state_key, **options)
    keys = (("camera", camera, None), ("action_key", action_key, "action"), ("state_key", state_key, AUTO))
    changed = {name: value for name, value, default in keys if value != default}
    if changed:
        raise ValueError(f"{changed} select the features of a LeRobot dataset; root={str(root)!r} is in our episode "
                         "format (frames / actions / states arrays): leave them at their defaults")  # fmt: skip
    return EpisodeDataset(root=root, **options)
