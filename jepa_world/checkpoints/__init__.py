"""Every checkpoint read and write of jepa_world, split by purpose.

    io.py          training checkpoints: atomic save / load (weights_only) / list / prune (all the loop needs)
    paths.py       which file a path names (a pretrained folder, a run's newest checkpoint)
    state_dict.py  wrapper prefixes, strict loads that name every mismatch, building a module from its weights
    pretrained.py  our export format: config.json + model.safetensors (save_pretrained / from_pretrained)
    official.py    the I-JEPA / V-JEPA / V-JEPA 2 / V-JEPA 2-AC release formats: release detection, shape inference
    timm.py        export of image encoders to timm
    hf.py          Hugging Face transformers folders (IJepaModel / VJEPA2Model) in; hf_export.py: out
    load.py        the front doors: load_encoder / load_predictor / load_ac_predictor / export
    world_model.py train-wm runs: load_world_model(_run), init_world_model (a second stage's starting weights)

This face re-exports the public names of those modules.
"""

from jepa_world.checkpoints.hf import load_hf_component
from jepa_world.checkpoints.hf_export import save_hf
from jepa_world.checkpoints.io import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from jepa_world.checkpoints.load import (
    export_checkpoint,
    load_ac_predictor,
    load_encoder,
    load_predictor,
    resolve_checkpoint,
)
from jepa_world.checkpoints.official import (
    AC_PREDICTOR_GRID,
    AC_PREDICTOR_HEADS,
    default_num_heads,
    detect_release,
    infer_ac_predictor_kwargs,
    infer_encoder_kwargs,
    infer_predictor_kwargs,
    is_ac_predictor,
)
from jepa_world.checkpoints.pretrained import PRETRAINED_FORMAT, from_pretrained, module_config, save_pretrained
from jepa_world.checkpoints.state_dict import load_state_dict_strict, strip_prefixes
from jepa_world.checkpoints.timm import export_timm_state_dict, save_timm, timm_model_kwargs
from jepa_world.checkpoints.world_model import init_world_model, load_world_model, load_world_model_run

__all__ = [
    "AC_PREDICTOR_GRID",
    "AC_PREDICTOR_HEADS",
    "CHECKPOINT_FORMAT",
    "PRETRAINED_FORMAT",
    "CheckpointError",
    "checkpoint_path",
    "default_num_heads",
    "detect_release",
    "export_checkpoint",
    "export_timm_state_dict",
    "from_pretrained",
    "infer_ac_predictor_kwargs",
    "infer_encoder_kwargs",
    "infer_predictor_kwargs",
    "init_world_model",
    "is_ac_predictor",
    "list_checkpoints",
    "load_ac_predictor",
    "load_checkpoint",
    "load_encoder",
    "load_hf_component",
    "load_predictor",
    "load_state_dict_strict",
    "load_world_model",
    "load_world_model_run",
    "module_config",
    "prune_checkpoints",
    "resolve_checkpoint",
    "save_checkpoint",
    "save_hf",
    "save_pretrained",
    "save_timm",
    "strip_prefixes",
    "timm_model_kwargs",
]
