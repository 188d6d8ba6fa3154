"""jepa_world: self-supervised JEPA world models (I-JEPA / V-JEPA pretraining, latent dynamics, planning)."""

from jepa_world.registry import create_model, list_models

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models"]
