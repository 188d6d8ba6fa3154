"""Registry-wide (timm style): every registered preset is built, keeps the config it was built with, and that config
rebuilds it; the small presets also run forward and backward. A new preset is covered by adding one row to `FAMILIES`.
"""

from __future__ import annotations

import json

import pytest
import torch

import jepa_world
from jepa_world.checkpoints.pretrained import MODEL_CLASSES, decode_kwargs, module_config
from jepa_world.models import create_model, list_models

D, A = 32, 3  # width and action dim the dynamics presets are built for

# name prefix -> (constructor kwargs the data or the encoder supply, input maker for forward / backward)
FAMILIES = {
    "vit_": (dict(img_size=32, patch_size=8), lambda m: (torch.randn(2, 3, 32, 32),)),
    "predictor_": (
        dict(grid_size=(4, 4), embed_dim=D),
        lambda m: (torch.randn(2, 6, D), torch.arange(6).expand(2, -1), torch.arange(6, 10).expand(2, 1, -1)),
    ),
    "dynamics_": (dict(embed_dim=D, action_dim=A), lambda m: (torch.randn(2, 3, 1, D), torch.randn(2, 3, A))),
    "ac_predictor_": ({}, None),  # the released V-JEPA 2-AC shape (~300M): built on the meta device only
    "pooled_encoder": (dict(img_size=16, embed_dim=D), lambda m: (torch.randn(4, 3, 16, 16),)),
}
SMALL = 5_000_000  # parameters: presets below this also run forward and backward on the CPU


def _family(name: str):
    matches = [prefix for prefix in FAMILIES if name.startswith(prefix)]
    assert matches, f"preset {name!r} has no row in FAMILIES: say which kwargs it needs and how to feed it"
    return FAMILIES[matches[0]]


def test_every_preset_has_a_family():
    names = list_models()
    assert len(names) >= 15 and names == jepa_world.list_models()
    for name in names:
        _family(name)


@pytest.mark.parametrize("name", list_models())
def test_preset_builds_keeps_its_config_and_round_trips(name):
    kwargs, make_inputs = _family(name)
    with torch.device("meta"):
        model = create_model(name, **kwargs)
        num_params = sum(p.numel() for p in model.parameters())
        assert num_params > 0
        # The config is the whole constructor call: the class rebuilt from it has the same tensors.
        assert all(model.config[k] == v for k, v in kwargs.items())
        again = type(model)(**model.config)
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}

    if type(model).__name__ in MODEL_CLASSES:  # the classes our export format stores: through JSON and back
        stored = json.loads(json.dumps(module_config(model)))
        with torch.device("meta"):
            rebuilt = MODEL_CLASSES[stored["class"]](**decode_kwargs(stored["kwargs"]))
        assert module_config(rebuilt) == module_config(model)

    if make_inputs is None or num_params > SMALL:
        return
    torch.manual_seed(0)
    model = create_model(name, **kwargs).train()
    out = model(*make_inputs(model))
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_unknown_preset_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'vit_smal'; did you mean 'vit_small'"):
        create_model("vit_smal")
