"""Which file a path names: a pretrained folder, a run folder's newest checkpoint, or the file itself."""

from __future__ import annotations

from pathlib import Path

from jepa_world.checkpoints.io import CheckpointError, list_checkpoints
from jepa_world.checkpoints.pretrained import CONFIG_NAME, WEIGHTS_NAME
from jepa_world.checkpoints.state_dict import abbrev


def resolve_checkpoint(path: str | Path) -> Path:
    """The file or pretrained folder a path stands for.

    A pretrained folder (config.json) is returned as is; a run folder gives its newest `checkpoints/step_*.pt`, a
    checkpoints folder its newest `step_*.pt`; `config.json` / `model.safetensors` give their folder; other files are
    returned as they are.

    Raises:
        CheckpointError: the path does not exist, or is a folder with nothing loadable in it.
    """
    path = Path(path)
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            return path
        found = list_checkpoints(path / "checkpoints") or list_checkpoints(path)
        if found:
            return found[-1]
        listing = sorted(p.name for p in path.iterdir())
        holds = f"it holds {abbrev(listing)}" if listing else "it is an empty folder"
        raise CheckpointError(
            f"{path} is neither a pretrained folder ({CONFIG_NAME} + {WEIGHTS_NAME}) nor a run folder "
            f"(checkpoints/step_*.pt); {holds}"
        )
    if path.is_file():
        return path.parent if path.name == CONFIG_NAME or path.suffix == ".safetensors" else path
    raise CheckpointError(f"checkpoint not found: {path}")
