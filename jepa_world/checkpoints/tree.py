"""A world model as the tree of its parts: `{class, kwargs, children}`, saved in a train-wm checkpoint and rebuilt
without the training schema.

Every part keeps `self.config` (the keyword arguments it was built with, parts excluded) and names the constructor
arguments that are parts in `part_children` (the world model: encoder, predictor, terms; a readout: its backbone).
`part_tree` writes the tree; `build_part_tree` builds it back, constructing only the classes of `PART_CLASSES` (no
code named in a checkpoint is imported). A config key can so be retired without breaking a saved run: loading reads
the tree, not the config. `diff_trees` names what differs between two trees (the resume check).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from jepa_world.checkpoints.io import CheckpointError
from jepa_world.checkpoints.pretrained import MODEL_CLASSES, TRAINING_ONLY, _plain, decode_kwargs
from jepa_world.models.mlp_dynamics import ResidualMlpDynamics
from jepa_world.models.readout import LiftedReadout
from jepa_world.models.readout_attentive import AttentiveReadout
from jepa_world.models.readout_keypoints import KeypointReadout
from jepa_world.models.readout_mlp import MlpReadout
from jepa_world.models.small import PooledEncoder
from jepa_world.models.world_model import WorldModel
from jepa_world.objectives.losses import CovarianceTerm, InverseDynamicsTerm, SmoothnessTerm, VarianceTerm

TREE_FORMAT = "jepa_world/part-tree/v1"
PART_CLASSES: dict[str, type[nn.Module]] = {
    **MODEL_CLASSES,
    **{
        cls.__name__: cls
        for cls in (
            WorldModel,
            PooledEncoder,
            MlpReadout,
            KeypointReadout,
            AttentiveReadout,
            LiftedReadout,
            ResidualMlpDynamics,
            VarianceTerm,
            CovarianceTerm,
            SmoothnessTerm,
            InverseDynamicsTerm,
        )
    },
}
# the parts a WorldModel is built from (its constructor arguments that are modules)
_CHILDREN: dict[type, tuple[str, ...]] = {WorldModel: ("encoder", "predictor", "terms")}


def _children(module: nn.Module) -> tuple[str, ...]:
    return _CHILDREN.get(type(module), getattr(module, "part_children", ()))


def part_tree(module: nn.Module) -> dict:
    """`{"class", "kwargs", "children"}` of a part and, recursively, of the parts it is built from.

    Raises:
        TypeError: a part whose class is not in `PART_CLASSES`, or that keeps no `config`.
    """
    name = type(module).__name__
    if PART_CLASSES.get(name) is not type(module) or not isinstance(getattr(module, "config", None), Mapping):
        raise TypeError(f"a {name} cannot be saved as a part (known: {', '.join(sorted(PART_CLASSES))})")
    kwargs = {k: _plain(v) for k, v in module.config.items() if k not in TRAINING_ONLY}
    for key, value in kwargs.items():
        if callable(value):
            raise TypeError(f"{name}.{key} is a callable; a part's config must be plain values")
    children: dict[str, Any] = {}
    for child in _children(module):
        value = getattr(module, child)
        children[child] = [part_tree(m) for m in value] if isinstance(value, nn.ModuleList) else part_tree(value)
    return {"class": name, "kwargs": kwargs, "children": children}


def build_part_tree(tree: Mapping, *, where: str = "the checkpoint") -> nn.Module:
    """The module a `part_tree` describes, with fresh weights (load a state dict into it).

    Raises:
        CheckpointError: an unknown class, or arguments its constructor refuses (named, with the path in the tree).
    """
    return _build(tree, where=where, path=())


def _build(tree: Mapping, *, where: str, path: tuple[str, ...]) -> nn.Module:
    at = ".".join(path) or "the root"
    if not isinstance(tree, Mapping) or "class" not in tree:
        raise CheckpointError(f"{where}: the part tree at {at} is not {{class, kwargs, children}}")
    cls = PART_CLASSES.get(str(tree["class"]))
    if cls is None:
        raise CheckpointError(f"{where}: unknown part class {tree['class']!r} at {at} (known: "
                              f"{', '.join(sorted(PART_CLASSES))})")  # fmt: skip
    kids: dict[str, Any] = {}
    for name, child in (tree.get("children") or {}).items():
        if isinstance(child, list):
            kids[name] = [_build(c, where=where, path=(*path, f"{name}[{i}]")) for i, c in enumerate(child)]
        else:
            kids[name] = _build(child, where=where, path=(*path, name))
    try:
        return cls(**decode_kwargs(dict(tree.get("kwargs") or {})), **kids)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{where}: cannot build the {cls.__name__} at {at}: {err}") from None


def diff_trees(old: Mapping, new: Mapping, path: str = "") -> list[str]:
    """Where two trees differ: `["encoder.kwargs.embed_dim: 32 -> 16", ...]` (empty when equal)."""
    at = path or "model"
    if old.get("class") != new.get("class"):
        return [f"{at}: {old.get('class')} -> {new.get('class')}"]
    out = []
    ok, nk = dict(old.get("kwargs") or {}), dict(new.get("kwargs") or {})
    for key in sorted(set(ok) | set(nk)):
        if ok.get(key) != nk.get(key):
            out.append(f"{at}.{key}: {ok.get(key)!r} -> {nk.get(key)!r}")
    oc, nc = dict(old.get("children") or {}), dict(new.get("children") or {})
    for key in sorted(set(oc) | set(nc)):
        a, b = oc.get(key), nc.get(key)
        sub = f"{path}.{key}" if path else key
        if a is None or b is None:
            out.append(f"{sub}: {'absent' if a is None else a.get('class', 'parts')} -> "
                       f"{'absent' if b is None else b.get('class', 'parts')}")  # fmt: skip
        elif isinstance(a, list) or isinstance(b, list):
            a, b = list(a), list(b)
            if [t.get("class") for t in a] != [t.get("class") for t in b]:
                out.append(f"{sub}: {[t.get('class') for t in a]} -> {[t.get('class') for t in b]}")
            else:
                for i, (x, y) in enumerate(zip(a, b, strict=True)):
                    out.extend(diff_trees(x, y, f"{sub}[{i}]"))
        else:
            out.extend(diff_trees(a, b, sub))
    return out
