"""Models: every registered preset, and the registry's front door.

Importing this package imports every model file, so all presets are registered:

    vit.py           VisionTransformer (images and videos) and its sizes
    predictor.py     MaskPredictor (JEPA mask-token predictor)
    jepa.py          JEPA: context encoder + EMA target + predictor, forward(batch) -> (loss, metrics)
    ac_predictor.py  ActionConditionedPredictor (V-JEPA 2-AC), rollout cache
    small.py         PooledEncoder (CPU-sized pooled latents)
    readout*.py      readouts of a ViT's tokens (parts chosen by wm.readout.type: mlp, keypoints, attentive)
    mlp_dynamics.py  ResidualMlpDynamics (Markov dynamics the CPU planners roll out, cache-free rollout)
    world_model.py   WorldModel: encode / predict / rollout, forward(batch) -> (loss, metrics)
    layers.py        positions, RoPE, blocks, apply_masks
"""

from __future__ import annotations

from torch import nn

from jepa_world.models import (  # noqa: F401  (register the presets and the readouts)
    ac_predictor,
    mlp_dynamics,
    predictor,
    readout_attentive,
    readout_keypoints,
    readout_mlp,
    small,
    vit,
)
from jepa_world.registry import entrypoint, registered

__all__ = ["create_model", "list_models"]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted."""
    return registered(pattern)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model.

    Args:
        name: registered name, e.g. "vit_tiny" or "predictor_small".
        **kwargs: constructor overrides (patch_size, img_size, num_frames, depth, ...).

    Raises:
        ValueError: unknown name (the message suggests close names).
    """
    return entrypoint(name)(**kwargs)
