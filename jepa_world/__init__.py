"""jepa_world: self-supervised JEPA world models (I-JEPA / V-JEPA pretraining, latent dynamics, planning).

Library use:
    encoder = jepa_world.load_encoder("runs/my_run")          # or an export folder, or an official checkpoint
    z = encoder(x)                                            # [B, N, D] token features
    v = jepa_world.pooled_features(encoder, x)                # [B, D]

Models, loading and feature helpers are imported on first use, so `import jepa_world` stays light (no torch).
"""

from __future__ import annotations

import os

# MKL may silently use fewer BLAS threads when the machine is busy, which changes float summation order: results
# then differ in the last bits between runs and a resumed run is no longer bit-exact. Fixed thread counts keep CPU
# runs reproducible (set before torch starts MKL; an explicit user setting wins).
os.environ.setdefault("MKL_DYNAMIC", "FALSE")

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jepa_world.checkpoints.load import (
        export_checkpoint,
        load_ac_predictor,
        load_encoder,
        load_predictor,
    )
    from jepa_world.checkpoints.pretrained import from_pretrained, save_pretrained
    from jepa_world.checkpoints.world_model import load_world_model
    from jepa_world.features import encode_long_video, intermediate_layers, pooled_features
    from jepa_world.models import create_model, list_models

__version__ = "0.1.0"

_LAZY = {
    "create_model": "jepa_world.models",
    "list_models": "jepa_world.models",
    "load_encoder": "jepa_world.checkpoints.load",
    "load_predictor": "jepa_world.checkpoints.load",
    "load_ac_predictor": "jepa_world.checkpoints.load",
    "load_world_model": "jepa_world.checkpoints.world_model",
    "export_checkpoint": "jepa_world.checkpoints.load",
    "save_pretrained": "jepa_world.checkpoints.pretrained",
    "from_pretrained": "jepa_world.checkpoints.pretrained",
    "pooled_features": "jepa_world.features",
    "intermediate_layers": "jepa_world.features",
    "encode_long_video": "jepa_world.features",
}

__all__ = [
    "__version__",
    "create_model",
    "encode_long_video",
    "export_checkpoint",
    "from_pretrained",
    "intermediate_layers",
    "list_models",
    "load_ac_predictor",
    "load_encoder",
    "load_predictor",
    "load_world_model",
    "pooled_features",
    "save_pretrained",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jepa_world' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
