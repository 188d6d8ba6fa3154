"""Frozen evaluation: linear and attentive probes on a frozen encoder, many (lr, weight decay) heads at once.

References:
    He et al. 2022 (MAE: linear probe on mean-pooled features behind a BatchNorm without affine);
    Bardes et al. 2024 (V-JEPA: frozen backbone + attentive probe = learnable query token, one cross-attention
    block, linear classifier); Assran et al. 2025 (V-JEPA 2: many probe heads with different (lr, wd) trained in
    parallel on one forward pass of the backbone, as a cheap sweep; its probe stacks 4 blocks, we keep V-JEPA's one).
    The heads and sweeps are in `probe_heads.py`; the labelled datasets in `jepa_world.data.labelled`.

Protocol:
    The encoder runs once per sample: its token features for the train / val / test splits are computed once and
    cached in memory when they fit (`cache="auto"`), and otherwise recomputed once per batch and epoch (one forward
    for all heads). Every head of a sweep sees the same batches in the same order and starts from the same initial
    weights, so heads differ only by their (lr, wd); each head's loss reaches only its own parameters, so training K
    heads together is K independent runs. The best head is chosen on the validation split and reported on the test
    split; without a test split the number reported is the best-of-sweep on validation (flagged in the results).
    Everything random (head init, batch order) comes from `seed`.

Shapes:
    tokens `[B, N, D]`, pooled `[B, D]`, logits `[B, C]`; a sweep of K heads gives `[K, B, C]`.
    Built-in labelled data: `MovingShapeVideo` clips `[3, T, H, W]` labelled with the motion direction of the
    largest shape (8 classes, needs motion), or `ShapesImages` `[3, H, W]` with the kind of the largest shape
    (3 classes) for image encoders.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from jepa_world.config import ProbeConfig
from jepa_world.data.sampler import derive_seed
from jepa_world.eval.probe_heads import (
    AttentiveProbe,
    LinearProbe,
    ProbeSweep,
    evaluate_sweeps,
    probe_inputs,
    train_sweeps,
)

KINDS = ("linear", "attentive")
_DEFAULTS = ProbeConfig()  # the `probe` section's defaults: the one place they are written
DEFAULT_LRS = tuple(_DEFAULTS.lrs)
DEFAULT_EPOCHS = _DEFAULTS.epochs
DEFAULT_WDS = tuple(_DEFAULTS.wds)


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------
def _kinds(kind: str) -> tuple[str, ...]:
    if kind == "both":
        return KINDS
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}; expected 'linear', 'attentive' or 'both'")
    return (kind,)


def _collate(items: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Items `{"x", "label"}` (or `(x, label)` pairs) -> (x `[B, ...]`, labels `[B]` int64)."""
    xs, ys = [], []
    for item in items:
        if isinstance(item, Mapping):
            if "label" not in item:
                raise TypeError(f"dataset items need a 'label' to probe; this one has keys {sorted(item)}")
            x, y = item["x"], item["label"]
        elif isinstance(item, tuple | list) and len(item) == 2:
            x, y = item
        else:
            raise TypeError(f"dataset items must be {{'x', 'label'}} dicts or (x, label) pairs, got {type(item)}")
        xs.append(torch.as_tensor(x))
        ys.append(int(y))
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


def _device_of(module: nn.Module) -> torch.device:
    return next(iter(module.parameters()), torch.zeros(0)).device


def _loader(dataset: Dataset, *, batch_size: int, num_workers: int, order: Sequence[int] | None = None) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order,  # None: dataset order
        num_workers=num_workers,
        collate_fn=_collate,
        drop_last=order is not None and len(order) > batch_size,
        generator=torch.Generator().manual_seed(0),  # DataLoader draws worker seeds: never from the global RNG
    )


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, epoch, 1)))


@torch.no_grad()
def encode_dataset(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    keys: Sequence[str] = ("pooled", "normed"),
    batch_size: int = 32,
    num_workers: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run a frozen encoder once over a labelled dataset (eval mode, no gradient; its mode is restored after).

    Args:
        encoder: maps `x [B, ...]` to tokens `[B, N, D]`.
        dataset: items `{"x", "label"}` or `(x, label)`.
        keys: which `probe_inputs` to keep.
        batch_size: items per forward.
        num_workers: DataLoader workers.
        log: called with a progress line every ~30 s.

    Returns:
        ({key: features `[M, ...]` on the CPU}, labels `[M]` int64).
    """
    device, was_training = _device_of(encoder), encoder.training
    encoder.eval()
    feats: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    labels, tic, last = [], time.perf_counter(), time.perf_counter()
    try:
        for x, y in _loader(dataset, batch_size=batch_size, num_workers=num_workers):
            for k, v in probe_inputs(encoder(x.to(device)).float(), keys).items():
                feats[k].append(v.cpu())
            labels.append(y)
            if log is not None and time.perf_counter() - last > 30:
                done = sum(len(t) for t in labels)
                log(f"  encoded {done}/{len(dataset)} ({done / (time.perf_counter() - tic):.1f}/s)")
                last = time.perf_counter()
    finally:
        encoder.train(was_training)
    return {k: torch.cat(v) for k, v in feats.items()}, torch.cat(labels)


# --------------------------------------------------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------------------------------------------------
def _infer_num_classes(labels: Sequence[torch.Tensor]) -> int:
    low = min(int(y.min()) for y in labels if len(y))
    if low < 0:
        raise ValueError(f"labels must be class indices >= 0, found {low}")
    return max(int(y.max()) for y in labels if len(y)) + 1


def _summary(heads: list[dict], test: bool) -> dict:
    best = max(range(len(heads)), key=lambda k: (heads[k]["val_top1"], -k))  # ties: the first in grid order
    out = {**heads[best], "index": best}
    out["top1"] = heads[best]["test_top1"] if test else heads[best]["val_top1"]
    return out


def probe(
    encoder: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    *,
    test_set: Dataset | None = None,
    kind: str = "both",
    lrs: Sequence[float] = DEFAULT_LRS,
    wds: Sequence[float] = DEFAULT_WDS,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = _DEFAULTS.batch_size,
    num_classes: int | None = None,
    seed: int = 0,
    num_heads: int | None = None,
    num_queries: int = 1,
    batch_norm: bool = True,
    warmup_epochs: float = 1.0,
    cache: bool | str = "auto",
    cache_limit_gb: float = 4.0,
    feature_batch_size: int = 32,
    num_workers: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train linear and / or attentive probes on a frozen encoder and report top-1 accuracy.

    Args:
        encoder: maps `x [B, ...]` to tokens `[B, N, D]`; never trained (no gradient, left in its mode).
        train_set, val_set, test_set: items `{"x", "label"}` or `(x, label)`; the best head is chosen on val_set and
            reported on test_set (on val_set when there is no test_set: a best-of-sweep number).
        kind: "linear", "attentive" or "both".
        lrs, wds: the sweep grid; every (lr, wd) pair is one head of each kind.
        epochs: passes over the train split.
        batch_size: probe batch size (the last incomplete batch of an epoch is dropped; the order is reshuffled).
        num_classes: C; inferred as max label + 1 when the features are cached.
        seed: head init and batch order.
        num_heads: attention heads of the attentive probe (default: the encoder's, else 4).
        num_queries: query tokens of the attentive probe.
        batch_norm: BatchNorm (no affine) before the linear probe's classifier.
        warmup_epochs: linear LR warmup, then cosine decay to 0.
        cache: True: encode every split once and train on the cached features; False: encode every batch of every
            epoch (for data too large to cache); "auto": cache when the token features fit in `cache_limit_gb`.
        cache_limit_gb: memory allowed for cached token features with cache="auto".
        feature_batch_size: clips per encoder forward when caching.
        num_workers: DataLoader workers.
        log: progress lines (e.g. `print`); None is silent.

    Returns:
        {"linear" / "attentive": {"heads": [{"lr", "wd", "train_top1", "val_top1", ("test_top1")}, ...],
        "best": that head's entry plus "index" and "top1" (the reported number)}, "num_classes", "chance",
        "num_train", "num_val", "num_test", "reported_on" ("test" or "val"), "cached", "seconds"}.
    """
    names = _kinds(kind)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs={epochs} and batch_size={batch_size} must be >= 1")
    if cache not in (True, False, "auto"):
        raise ValueError(f"cache={cache!r}; expected True, False or 'auto'")
    say = log or (lambda msg: None)
    tic = time.perf_counter()
    splits = {"train": train_set, "val": val_set, **({"test": test_set} if test_set is not None else {})}
    for split, ds in splits.items():
        if len(ds) == 0:
            raise ValueError(f"the {split} split is empty")
    device = _device_of(encoder)
    if cache == "auto" and "attentive" not in names:
        cache = True  # pooled features are small
    if cache is not True:
        # One item through the encoder tells the token count and width (for the cache size and the heads).
        x, _ = _collate([train_set[0]])
        was_training = encoder.training
        with torch.no_grad():
            n_tok, width = encoder.eval()(x.to(device)).shape[1:]
        encoder.train(was_training)
        if cache == "auto":
            need = sum(len(ds) for ds in splits.values()) * n_tok * width * 4 / 2**30
            cache = need <= cache_limit_gb
            say(f"token features need {need:.2f} GiB: {'cached' if cache else 'recomputed every epoch'}")

    keys = tuple(dict.fromkeys({"linear": "pooled", "attentive": "normed"}[n] for n in names))
    cached: dict[str, tuple[dict[str, torch.Tensor], torch.Tensor]] = {}
    if cache:
        for split, ds in splits.items():
            t = time.perf_counter()
            cached[split] = encode_dataset(
                encoder, ds, keys=keys, batch_size=feature_batch_size, num_workers=num_workers, log=log
            )
            say(f"encoded {split}: {len(ds)} items in {time.perf_counter() - t:.1f} s")
        width = cached["train"][0][keys[0]].shape[-1]
        if num_classes is None:
            num_classes = _infer_num_classes([y for _, y in cached.values()])
    if num_classes is None:
        raise ValueError("num_classes is required when features are not cached (cache=False)")
    for split, (_, y) in cached.items():
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"{split} labels span [{int(y.min())}, {int(y.max())}], outside num_classes={num_classes}")

    heads_h = num_heads or getattr(encoder, "num_heads", None) or 4
    makers = {
        "linear": lambda: LinearProbe(embed_dim=width, num_classes=num_classes, batch_norm=batch_norm),
        "attentive": lambda: AttentiveProbe(
            embed_dim=width, num_classes=num_classes, num_heads=heads_h, num_queries=num_queries
        ),
    }
    sweeps = {n: ProbeSweep(make_head=makers[n], lrs=lrs, wds=wds, seed=seed).to(device) for n in names}

    n_train = len(train_set)
    steps = n_train // batch_size if n_train > batch_size else 1

    def cached_batches(split: str, order: torch.Tensor | None, size: int) -> Iterator:
        feats, labels = cached[split]
        drop_last = order is not None  # training: a full batch every step (and BatchNorm never sees one item)
        order = torch.arange(len(labels)) if order is None else order
        for i in range(0, len(order), size):
            idx = order[i : i + size]
            if drop_last and len(idx) < size and i > 0:
                break
            yield {k: v[idx].to(device) for k, v in feats.items()}, labels[idx].to(device)

    @torch.no_grad()
    def encoded(loader: DataLoader) -> Iterator:
        was_training = encoder.training
        encoder.eval()
        try:
            for x, y in loader:
                yield probe_inputs(encoder(x.to(device)).float(), keys), y.to(device)
        finally:
            encoder.train(was_training)

    def train_batches(epoch: int) -> Iterator:
        order = _epoch_order(n_train, seed, epoch)
        if cache:
            yield from cached_batches("train", order, batch_size)
        else:
            loader = _loader(train_set, batch_size=batch_size, num_workers=num_workers, order=order.tolist())
            yield from encoded(loader)

    def eval_batches(split: str) -> Iterable:
        if cache:
            return cached_batches(split, None, 256)
        return encoded(_loader(splits[split], batch_size=feature_batch_size, num_workers=num_workers))

    t = time.perf_counter()
    say(f"training {sum(len(s) for s in sweeps.values())} heads ({', '.join(names)}) for {epochs} epochs")
    train_sweeps(sweeps, train_batches, epochs=epochs, steps_per_epoch=steps, warmup_epochs=warmup_epochs, log=log)
    say(f"trained in {time.perf_counter() - t:.1f} s")
    acc = {split: evaluate_sweeps(sweeps, eval_batches(split)) for split in splits}

    results: dict[str, Any] = {}
    for name in names:
        heads = []
        for k, (lr, wd) in enumerate(sweeps[name].hparams):
            entry = {"lr": lr, "wd": wd}
            entry.update({f"{split}_top1": acc[split][name][k] for split in splits})
            heads.append(entry)
        results[name] = {"heads": heads, "best": _summary(heads, test_set is not None)}
    results.update(
        num_classes=num_classes,
        chance=100.0 / num_classes,
        num_train=len(train_set),
        num_val=len(val_set),
        num_test=len(test_set) if test_set is not None else 0,
        reported_on="test" if test_set is not None else "val",
        cached=bool(cache),
        seconds=time.perf_counter() - tic,
    )
    return results


def format_results(results: Mapping, *, title: str | None = None, all_heads: bool = True) -> str:
    """A plain-text table of `probe` results: the best head per kind, then (optionally) every head."""
    on = results["reported_on"]
    lines = [title] if title else []
    lines.append(
        f"train {results['num_train']} / val {results['num_val']}"
        + (f" / test {results['num_test']}" if results["num_test"] else "")
        + f", {results['num_classes']} classes, chance {results['chance']:.1f}%"
    )
    sel = "best head chosen on val, top-1 on test" if on == "test" else "best-of-sweep top-1 on val (no test split)"
    lines.append(f"{'probe':<10} {'top-1 %':>8}  {'lr':>8} {'wd':>8}   ({sel})")
    for name in KINDS:
        if name in results:
            b = results[name]["best"]
            lines.append(f"{name:<10} {b['top1']:>8.1f}  {b['lr']:>8.1e} {b['wd']:>8.1e}")
    if all_heads:
        cols = ["train", "val"] + (["test"] if on == "test" else [])
        lines.append("")
        lines.append(f"{'probe':<10} {'lr':>8} {'wd':>8}  " + " ".join(f"{c + ' %':>8}" for c in cols))
        for name in KINDS:
            for h in results.get(name, {}).get("heads", []):
                accs = " ".join(f"{h[c + '_top1']:>8.1f}" for c in cols)
                lines.append(f"{name:<10} {h['lr']:>8.1e} {h['wd']:>8.1e}  {accs}")
    return "\n".join(lines)
