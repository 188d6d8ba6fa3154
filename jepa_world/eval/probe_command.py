"""What `jepa-world probe` runs: pick the encoder to probe (a checkpoint, its random init, or a random encoder from
the config), make labelled splits at its input size, run `probe`. Settings come from the config's `probe` section.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable

import torch
from omegaconf import DictConfig, OmegaConf

from jepa_world.checkpoints.load import load_encoder
from jepa_world.config import load_config
from jepa_world.data.labelled import builtin_datasets, user_datasets
from jepa_world.eval.probe import probe
from jepa_world.factory import build_jepa
from jepa_world.models.layers import init_weights_, rescale_blocks_
from jepa_world.models.vit import VisionTransformer


def random_encoder_like(encoder: VisionTransformer, *, seed: int = 0) -> VisionTransformer:
    """A copy of `encoder` re-initialised as at construction (same architecture and position table, random weights).

    Args:
        encoder: the architecture to copy (not modified).
        seed: init seed (the global RNG is left as it was).
    """
    if not isinstance(encoder, VisionTransformer):
        raise TypeError(f"encoder is a {type(encoder).__name__}; random_encoder_like expects a VisionTransformer")
    fresh = copy.deepcopy(encoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        init_weights_(fresh)
        rescale_blocks_(fresh.blocks)
    return fresh


def encoder_input_size(encoder: VisionTransformer) -> tuple[int, int]:
    """(num_frames, image_size) of the encoder's nominal input (num_frames 1 for image encoders)."""
    h, w = encoder.input_size
    if h != w:
        raise ValueError(f"the built-in probe data is square; this encoder's input is {h}x{w} px")
    return encoder.num_frames, w


def load_probe_encoder(
    checkpoint: str,
    *,
    component: str = "target_encoder",
    random_init: bool = False,
    cfg: DictConfig | None = None,
    seed: int = 0,
) -> tuple[VisionTransformer, str]:
    """The encoder to probe and how to name it.

    Args:
        checkpoint: anything `jepa_world.load_encoder` reads, or "random": a randomly initialised encoder built from
            `cfg` (default: the default config), exactly the weights a pretraining run with that config and `seed`
            starts from.
        component: "target_encoder" (EMA, default) or "encoder".
        random_init: same architecture as `checkpoint`, random weights (the baseline a probe should beat).
        cfg: resolved config describing a random encoder (checkpoint="random" only).
        seed: init seed for random encoders.
    """
    if checkpoint == "random":
        cfg = cfg if cfg is not None else load_config([], [f"seed={seed}"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            jepa = build_jepa(cfg)
        module = jepa.target_encoder if component == "target_encoder" else jepa.encoder
        return module.eval(), f"random init ({cfg.model.name}, seed {seed})"
    if cfg is not None:
        raise ValueError("a config only describes a random encoder (checkpoint='random')")
    encoder = load_encoder(checkpoint, component=component)
    if random_init:
        return random_encoder_like(encoder, seed=seed).eval(), f"random init like {checkpoint} (seed {seed})"
    return encoder, f"{checkpoint} [{component}]"


def stderr_log(msg: str) -> None:
    """Progress lines to stderr (tables go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def _changed_keys(cfg: DictConfig, reference: DictConfig, prefix: str = "") -> list[str]:
    out = []
    for key in cfg:
        a, b = cfg[key], reference[key]
        if isinstance(a, DictConfig):
            out += _changed_keys(a, b, f"{prefix}{key}.")
        elif (
            OmegaConf.to_container(OmegaConf.create({"v": a}))["v"]
            != OmegaConf.to_container(OmegaConf.create({"v": b}))["v"]
        ):
            out.append(f"{prefix}{key}")
    return out


def probe_checkpoint(checkpoint: str, cfg: DictConfig, *, log: Callable[[str], None] | None = None) -> tuple[dict, str]:
    """What `jepa-world probe` runs: load (or build) an encoder, make labelled splits at its input size, `probe`.

    Args:
        checkpoint: a run folder, checkpoint, export folder or official checkpoint; "random" builds the encoder a
            pretraining run with `cfg` and `cfg.seed` starts from.
        cfg: resolved config (`load_config(..., command="probe")`): the `probe` section and `seed` (random encoders,
            data split, probe init and batch order); the other sections describe a random encoder and must keep their
            defaults for any other checkpoint.
        log: progress lines.

    Returns:
        (results of `probe`, a title naming the encoder and the data).

    Raises:
        ValueError: pretraining keys given with a checkpoint other than "random" (they would be ignored).
    """
    pc, seed = cfg.probe, cfg.seed
    if checkpoint != "random":
        changed = [k for k in _changed_keys(cfg, load_config([], [], command="probe")) if not k.startswith("probe.")]
        changed = [k for k in changed if k != "seed"]
        if changed:
            raise ValueError(
                f"config keys {changed[:6]} only describe a random encoder (--checkpoint random); the architecture "
                f"of {checkpoint} comes from its weights (probe.* keys and seed configure the probe)"
            )
    encoder, name = load_probe_encoder(
        checkpoint,
        component=str(pc.component),
        random_init=pc.random_init,
        cfg=cfg if checkpoint == "random" else None,
        seed=seed,
    )
    num_frames, image_size = encoder_input_size(encoder)
    if pc.data == "builtin":
        train, val, test, num_classes, what = builtin_datasets(
            num_frames=num_frames, image_size=image_size, num_train=pc.num_train, num_val=pc.num_val,
            num_test=pc.num_test,
        )  # fmt: skip
    else:
        train, val, test, num_classes, what = user_datasets(
            pc.data, num_frames=num_frames, image_size=image_size, val_data=pc.val_data, test_data=pc.test_data,
            seed=seed,
        )  # fmt: skip
    if log is not None:
        log(f"probing {name} on {what}")
    results = probe(
        encoder, train, val, test_set=test, num_classes=num_classes, seed=seed, log=log, kind=str(pc.kind),
        lrs=tuple(pc.lrs), wds=tuple(pc.wds), epochs=pc.epochs, batch_size=pc.batch_size,
        cache="auto" if pc.cache else False, num_workers=pc.num_workers,
    )  # fmt: skip
    results.update(encoder=name, data=what)
    return results, f"{name}\n{what}"
