"""Frozen evaluation: linear and attentive probes on a frozen encoder, many (lr, weight decay) heads at once.

References:
    He et al. 2022 (MAE: linear probe on mean-pooled features behind a BatchNorm without affine);
    Bardes et al. 2024 (V-JEPA: frozen backbone + attentive probe = learnable query token, one cross-attention
    block, linear classifier); Assran et al. 2025 (V-JEPA 2: many probe heads with different (lr, wd) trained in
    parallel on one forward pass of the backbone, as a cheap sweep; its probe stacks 4 blocks, we keep V-JEPA's one).

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

import copy
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from jepa_world.data.sampler import derive_seed
from jepa_world.models.layers import LN_EPS, Mlp, init_weights_, rescale_blocks_
from jepa_world.models.vit import VisionTransformer
from jepa_world.schedules import warmup_cosine

KINDS = ("linear", "attentive")
# ~1,500 head updates at lr up to 1e-2: shorter or slower sweeps left the attentive head near uniform attention and
# every encoder (random init included) at chance on the built-in motion task (docs/benchmarks.md, "Frozen probes").
DEFAULT_LRS = (1e-3, 3e-3, 1e-2)
DEFAULT_EPOCHS = 50
DEFAULT_WDS = (0.001, 0.05)
BUILTIN_SEEDS = {"train": 10_001, "val": 10_002, "test": 10_003}  # never the pretraining data's seed (cfg.seed)


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


def probe_inputs(tokens: torch.Tensor, keys: Sequence[str] = ("pooled", "normed")) -> dict[str, torch.Tensor]:
    """What probe sweeps read from encoder tokens `[B, N, D]`.

    Returns:
        {"pooled": mean over tokens `[B, D]` (linear probes), "normed": tokens layer-normed without affine
        `[B, N, D]` (attentive probes: their LayerNorm's affine part is applied after pooling, see `AttentiveProbe`)},
        restricted to `keys`.
    """
    out = {}
    if "pooled" in keys:
        out["pooled"] = tokens.mean(dim=1)
    if "normed" in keys:
        out["normed"] = F.layer_norm(tokens, tokens.shape[-1:], eps=LN_EPS)
    return out


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
    grid, p = encoder.grid_size, encoder.patch_size
    if grid[-1] != grid[-2]:
        raise ValueError(f"the built-in probe data is square; this encoder's token grid is {tuple(grid)}")
    frames = grid[0] * encoder.tubelet_size if encoder.is_video else 1
    return frames, grid[-1] * p


# --------------------------------------------------------------------------------------------------------------------
# Probe heads
# --------------------------------------------------------------------------------------------------------------------
class LinearProbe(nn.Module):
    """Mean over tokens -> optional BatchNorm without affine (MAE) -> Linear.

    Args:
        embed_dim: feature width D.
        num_classes: C.
        batch_norm: normalise the pooled features with batch statistics (running statistics in eval mode).
        init_std: truncated-normal std of the classifier weights.
    """

    def __init__(self, *, embed_dim: int, num_classes: int, batch_norm: bool = True, init_std: float = 0.01):
        super().__init__()
        self.norm = nn.BatchNorm1d(embed_dim, affine=False, eps=1e-6) if batch_norm else nn.Identity()
        self.linear = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=init_std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Tokens `[B, N, D]` or pooled features `[B, D]` -> logits `[B, C]`."""
        if z.ndim == 3:
            z = z.mean(dim=1)  # [B, D]
        elif z.ndim != 2:
            raise ValueError(f"LinearProbe expects [B, N, D] tokens or [B, D] features, got shape {tuple(z.shape)}")
        return self.linear(self.norm(z))


class AttentiveProbe(nn.Module):
    """Learnable query token(s) + one cross-attention block + Linear (V-JEPA's attentive probe).

    The block: z = query + xattn(query, norm1(tokens)); z = z + mlp(norm2(z)) (LayerNorm eps 1e-6, fused `kv`
    weights as in the releases); the classifier reads the mean over queries. Init as the releases: truncated normal
    (std `init_std`) for weights and the query, zero biases, the block's output projections divided by sqrt(2).

    Computed without projecting the N tokens (same function as the usual form, far cheaper on frozen features):
    with norm1(x) = g * x_hat + b, the score of head h is q . (W_k norm1(x_n) + b_k) = u . x_hat_n + const, with
    u = g * (W_k^T q) independent of the input (the query is a parameter); the constant is the same for every token
    and cancels in the softmax. The values: sum_n a_n (W_v norm1(x_n) + b_v) = W_v (g * sum_n a_n x_hat_n + b) + b_v,
    since the attention weights sum to one. So a head costs O(N D H) per query instead of O(N D^2), and the scores
    of many heads are one matrix product (`attentive_logits`).

    Args:
        embed_dim: feature width D.
        num_classes: C.
        num_heads: attention heads H (divides D).
        num_queries: learnable query tokens Q.
        mlp_ratio: MLP hidden width / D.
        init_std: truncated-normal std.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_classes: int,
        num_heads: int = 4,
        num_queries: int = 1,
        mlp_ratio: float = 4.0,
        init_std: float = 0.02,
    ):
        super().__init__()
        if num_queries < 1:
            raise ValueError(f"num_queries={num_queries} must be >= 1")
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must be >= 1 and divide embed_dim={embed_dim}")
        self.embed_dim, self.num_heads, self.num_queries = embed_dim, num_heads, num_queries
        self.query_tokens = nn.Parameter(torch.zeros(num_queries, embed_dim))  # [Q, D]
        self.norm1 = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.xattn = nn.ModuleDict(
            {
                "q": nn.Linear(embed_dim, embed_dim),
                "kv": nn.Linear(embed_dim, 2 * embed_dim),
                "proj": nn.Linear(embed_dim, embed_dim),
            }
        )
        self.norm2 = nn.LayerNorm(embed_dim, eps=LN_EPS)
        self.mlp = Mlp(dim=embed_dim, hidden_dim=int(embed_dim * mlp_ratio))
        self.linear = nn.Linear(embed_dim, num_classes)
        init_weights_(self, std=init_std)
        nn.init.trunc_normal_(self.query_tokens, std=init_std)
        with torch.no_grad():
            self.xattn["proj"].weight.div_(math.sqrt(2.0))
            self.mlp.fc2.weight.div_(math.sqrt(2.0))

    @property
    def num_scores(self) -> int:
        """Attention distributions over the tokens: Q * H."""
        return self.num_queries * self.num_heads

    def score_vectors(self) -> torch.Tensor:
        """`[Q * H, D]`: the score of (query, head) on token n is `score_vectors() @ x_hat_n` (+ a constant)."""
        D, H = self.embed_dim, self.num_heads
        q = self.xattn["q"](self.query_tokens).view(-1, H, D // H)  # [Q, H, Dh]
        w_k = self.xattn["kv"].weight[:D].view(H, D // H, D)  # [H, Dh, D]
        u = torch.einsum("qhd,hde->qhe", q, w_k) * (D // H) ** -0.5  # [Q, H, D]
        return (u * self.norm1.weight).reshape(-1, D)

    def forward_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits `[B, C]` from the attention-pooled normalised tokens `[B, Q * H, D]` (sum_n a_n x_hat_n)."""
        B, D, H = pooled.shape[0], self.embed_dim, self.num_heads
        p = pooled.view(B, -1, H, D) * self.norm1.weight + self.norm1.bias  # [B, Q, H, D]: sum_n a_n norm1(x_n)
        w_v = self.xattn["kv"].weight[D:].view(H, D // H, D)  # [H, Dh, D]
        v = torch.einsum("bqhe,hde->bqhd", p, w_v) + self.xattn["kv"].bias[D:].view(H, D // H)  # [B, Q, H, Dh]
        z = self.query_tokens + self.xattn["proj"](v.flatten(-2))  # [B, Q, D]
        z = z + self.mlp(self.norm2(z))
        return self.linear(z.mean(dim=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens `[B, N, D]` -> logits `[B, C]`."""
        if tokens.ndim != 3:
            raise ValueError(f"AttentiveProbe expects [B, N, D] tokens, got shape {tuple(tokens.shape)}")
        return attentive_logits([self], probe_inputs(tokens, ("normed",))["normed"])[0]


def attentive_logits(heads: Sequence[AttentiveProbe], x_hat: torch.Tensor) -> list[torch.Tensor]:
    """Logits `[B, C]` of several attentive probes on the same tokens, sharing the passes over them.

    Args:
        heads: attentive probes of the same width.
        x_hat: tokens layer-normed without affine `[B, N, D]` (`probe_inputs(...)["normed"]`).
    """
    u = torch.cat([h.score_vectors() for h in heads])  # [S, D], S = sum of Q * H
    attn = (x_hat @ u.T).softmax(dim=1)  # [B, N, S]: one distribution over the N tokens per column
    pooled = attn.transpose(1, 2) @ x_hat  # [B, S, D]
    chunks = pooled.split([h.num_scores for h in heads], dim=1)
    return [h.forward_pooled(c) for h, c in zip(heads, chunks)]


class ProbeSweep(nn.Module):
    """K copies of one probe head, one per (lr, wd) of the grid `lrs x wds`, trained together.

    Every head starts from the same weights (built under `seed`), so after training on the same batches they differ
    only because of their hyper-parameters. Input: `probe_inputs(tokens)[input_key]`, "pooled" for linear heads,
    "normed" for attentive heads (whose scores are then one matrix product for all heads).

    Args:
        make_head: builds one head (called K times under the same seed).
        lrs: peak learning rates.
        wds: AdamW weight decays (on matrices; biases, norms and other 1-D parameters get none).
        seed: init seed (the global RNG is left as it was).
    """

    def __init__(
        self, *, make_head: Callable[[], nn.Module], lrs: Sequence[float], wds: Sequence[float], seed: int = 0
    ):
        super().__init__()
        if not lrs or any(not lr > 0 for lr in lrs):
            raise ValueError(f"lrs={list(lrs)} must be a non-empty list of positive learning rates")
        if not wds or any(not wd >= 0 for wd in wds):
            raise ValueError(f"wds={list(wds)} must be a non-empty list of weight decays >= 0")
        self.hparams = [(float(lr), float(wd)) for lr in lrs for wd in wds]
        heads = []
        for _ in self.hparams:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                heads.append(make_head())
        self.heads = nn.ModuleList(heads)
        if all(isinstance(h, AttentiveProbe) for h in heads):
            self.input_key = "normed"
        elif all(isinstance(h, LinearProbe) for h in heads):
            self.input_key = "pooled"
        else:
            raise TypeError(f"make_head must build LinearProbe or AttentiveProbe heads, got {type(heads[0]).__name__}")

    def __len__(self) -> int:
        return len(self.heads)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """`probe_inputs(tokens)[self.input_key]` -> logits of every head `[K, B, C]`."""
        if self.input_key == "normed":
            return torch.stack(attentive_logits(list(self.heads), z))
        return torch.stack([head(z) for head in self.heads])

    def param_groups(self) -> list[dict]:
        """AdamW groups: two per head (decay / no decay) with `base_lr` (scaled by the schedule each step)."""
        groups = []
        for head, (lr, wd) in zip(self.heads, self.hparams):
            params = [p for p in head.parameters() if p.requires_grad]
            groups.append({"params": [p for p in params if p.ndim > 1], "base_lr": lr, "weight_decay": wd})
            groups.append({"params": [p for p in params if p.ndim <= 1], "base_lr": lr, "weight_decay": 0.0})
        return [g for g in groups if g["params"]]


# --------------------------------------------------------------------------------------------------------------------
# Training and evaluation of sweeps
# --------------------------------------------------------------------------------------------------------------------
def sweep_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over heads of each head's mean cross-entropy: logits `[K, B, C]`, labels `[B]`."""
    K = logits.shape[0]
    return F.cross_entropy(logits.permute(1, 2, 0), labels[:, None].expand(-1, K)) * K


def train_sweeps(
    sweeps: Mapping[str, ProbeSweep],
    batches: Callable[[int], Iterable[tuple[dict[str, torch.Tensor], torch.Tensor]]],
    *,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 1.0,
    log: Callable[[str], None] | None = None,
) -> None:
    """Train every head of every sweep with one AdamW (per-head groups) and a warmup-cosine LR schedule.

    Args:
        sweeps: name -> sweep.
        batches: `epoch -> iterable of (probe_inputs, labels)`; each sweep reads `inputs[sweep.input_key]`.
        epochs: passes over the data.
        steps_per_epoch: batches per epoch (for the schedule).
        warmup_epochs: linear LR warmup from 0.
        log: called with one line per epoch.
    """
    groups = [g for sweep in sweeps.values() for g in sweep.param_groups()]
    optimizer = torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.999))
    total = max(1, epochs * steps_per_epoch)
    schedule = warmup_cosine(
        warmup_steps=min(total, round(warmup_epochs * steps_per_epoch)), total_steps=total, peak=1.0
    )
    step = 0
    for epoch in range(epochs):
        for sweep in sweeps.values():
            sweep.train()
        tic, loss_sum, n = time.perf_counter(), 0.0, 0
        for feats, labels in batches(epoch):
            factor = schedule(step)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            loss = sum(sweep_loss(sweep(feats[sweep.input_key]), labels) for sweep in sweeps.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step, loss_sum, n = step + 1, loss_sum + float(loss.detach()), n + 1
        if log is not None:
            heads = sum(len(s) for s in sweeps.values())
            mean = loss_sum / max(n, 1) / heads
            log(f"  epoch {epoch + 1}/{epochs}: mean loss per head {mean:.4f} ({time.perf_counter() - tic:.1f} s)")


@torch.no_grad()
def evaluate_sweeps(
    sweeps: Mapping[str, ProbeSweep], batches: Iterable[tuple[dict[str, torch.Tensor], torch.Tensor]]
) -> dict[str, list[float]]:
    """Top-1 accuracy (%) of every head: name -> [K]."""
    for sweep in sweeps.values():
        sweep.eval()
    correct = {name: torch.zeros(len(sweep), dtype=torch.long) for name, sweep in sweeps.items()}
    total = 0
    for feats, labels in batches:
        for name, sweep in sweeps.items():
            pred = sweep(feats[sweep.input_key]).argmax(dim=-1)  # [K, B]
            correct[name] += (pred == labels).sum(dim=1).cpu()
        total += len(labels)
    if total == 0:
        raise ValueError("cannot evaluate on an empty split")
    return {name: (100.0 * c.double() / total).tolist() for name, c in correct.items()}


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
    batch_size: int = 64,
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


# --------------------------------------------------------------------------------------------------------------------
# Data and encoders for the command line
# --------------------------------------------------------------------------------------------------------------------
def builtin_datasets(
    *,
    num_frames: int,
    image_size: int,
    num_train: int = 2000,
    num_val: int = 500,
    num_test: int = 1000,
    num_distractors: tuple[int, int] = (1, 3),
) -> tuple[Dataset, Dataset, Dataset, int, str]:
    """Built-in labelled splits, each from its own dataset seed (`BUILTIN_SEEDS`), disjoint from pretraining data.

    Videos (num_frames > 1): `MovingShapeVideo` (the bouncing-shapes family of the pretraining data, with the
    labelled shape made unambiguous: largest, in front, no bounce during the clip), label = its motion direction
    (8 classes; a single frame cannot tell it).
    Images: `ShapesImages`, label = kind of the largest shape (3 classes).

    Args:
        num_frames: clip length (1: images).
        image_size: frame side.
        num_train, num_val, num_test: split sizes.
        num_distractors: inclusive range of the number of smaller shapes besides the labelled one (videos).

    Returns:
        (train, val, test, num_classes, description).
    """
    from jepa_world.data.synthetic import KIND_NAMES, NUM_DIRECTIONS, MovingShapeVideo, ShapesImages

    sizes = {"train": num_train, "val": num_val, "test": num_test}
    for split, n in sizes.items():
        if n < 1:
            raise ValueError(f"num_{split}={n} must be >= 1")
    if num_frames > 1:
        lo, hi = num_distractors
        sets = [
            MovingShapeVideo(
                num_samples=n,
                num_frames=num_frames,
                image_size=image_size,
                num_distractors=(lo, hi),
                seed=BUILTIN_SEEDS[s],
            )
            for s, n in sizes.items()
        ]
        what = (
            f"built-in MovingShapeVideo {num_frames}x{image_size}px ({lo}-{hi} distractors), motion direction of "
            "the largest shape"
        )
        return (*sets, NUM_DIRECTIONS, what)
    sets = [ShapesImages(num_samples=n, image_size=image_size, seed=BUILTIN_SEEDS[s]) for s, n in sizes.items()]
    return (*sets, len(KIND_NAMES), f"built-in ShapesImages {image_size}px, kind of the largest shape")


class LabelledMedia(Dataset):
    """A user's labelled videos or images for probing: items `{"x", "label"}` with deterministic eval transforms.

    Labels come from the index's label column (`path label` V-JEPA CSV, `path,label`), else from the top-level
    subfolder of a folder (ImageNet layout). Class names are sorted (numerically when they are all integers) unless
    `classes` is given (to share one mapping between splits).

    Args:
        path: a folder, or an index file of videos.
        num_frames: clip length for video encoders (1: image encoder; images are repeated over the clip otherwise).
        image_size: output side.
        classes: class names in label order.
        frame_step: distance between sampled video frames.
    """

    def __init__(
        self,
        *,
        path: str | Path,
        num_frames: int,
        image_size: int,
        classes: Sequence[str] | None = None,
        frame_step: int = 4,
    ):
        from jepa_world.data.index import _class_of, detect_kind, read_index

        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"probe data {path} does not exist")
        self.kind = detect_kind(path)
        self.num_frames = num_frames
        if self.kind == "video":
            from jepa_world.data.video import VideoClipDataset

            if num_frames < 2:
                raise ValueError(f"{path} holds videos but the encoder takes images (num_frames={num_frames})")
            self.dataset: Dataset = VideoClipDataset(
                index=path, frames_per_clip=num_frames, frame_step=frame_step, image_size=image_size, train=False
            )
            entries = [(e.path, e.label) for e in read_index(path)]
        else:
            from jepa_world.data.images import ImageFolderDataset

            if not path.is_dir():
                raise ValueError(f"{path}: image data for probing must be a folder with one subfolder per class")
            self.dataset = ImageFolderDataset(index=path, image_size=image_size, train=False)
            entries = [(p, None) for p in self.dataset.paths]
        names = [label if label is not None else (_class_of(p, path) if path.is_dir() else "") for p, label in entries]
        if any(not n for n in names):
            raise ValueError(
                f"{path}: some items have no label (an index needs a label column; a folder needs one subfolder per "
                "class)"
            )
        if classes is None:
            found = sorted(set(names))
            classes = sorted(found, key=int) if all(n.lstrip("-").isdigit() for n in found) else found
        self.classes = list(classes)
        lookup = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(names) - set(lookup))
        if unknown:
            raise ValueError(f"{path}: labels {unknown[:5]} are not among the training classes {self.classes[:10]}")
        self.labels = [lookup[n] for n in names]
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        if self.kind == "video":
            label = self.labels[int(item["video_index"])]
            return {"x": item["x"], "label": label}
        # A skipped unreadable image is replaced by the next one: its label follows it.
        label = self.labels[(index + int(item["skipped"])) % len(self.labels)]
        x = item["x"]
        if self.num_frames > 1:
            x = x.unsqueeze(1).expand(-1, self.num_frames, -1, -1).contiguous()  # [3, T, H, W]
        return {"x": x, "label": label}


def _split_indices(n: int, fractions: Sequence[float], seed: int) -> list[list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, 2))).tolist()
    cuts = [round(n * sum(fractions[: i + 1])) for i in range(len(fractions))]
    starts = [0, *cuts[:-1]]
    return [sorted(order[a:b]) for a, b in zip(starts, cuts)]


def user_datasets(
    data: str | Path,
    *,
    num_frames: int,
    image_size: int,
    val_data: str | Path | None = None,
    test_data: str | Path | None = None,
    split: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> tuple[Dataset, Dataset, Dataset | None, int, str]:
    """Labelled splits from user data: separate train / val (/ test) paths, or one path split by `split` fractions.

    Returns:
        (train, val, test or None, num_classes, description).
    """
    train = LabelledMedia(path=data, num_frames=num_frames, image_size=image_size)
    if val_data is None:
        if test_data is not None:
            raise ValueError("test_data without val_data: pass val_data too, or neither to split data")
        parts = _split_indices(len(train), split, seed)
        if any(len(p) == 0 for p in parts):
            raise ValueError(f"{data} has {len(train)} items: too few to split into train / val / test by {split}")
        sets = [Subset(train, p) for p in parts]
        what = f"{data} ({train.kind}s, split {'/'.join(f'{f:g}' for f in split)} with seed {seed})"
        return (*sets, train.num_classes, what)
    kw = dict(num_frames=num_frames, image_size=image_size, classes=train.classes)
    val = LabelledMedia(path=val_data, **kw)
    test = LabelledMedia(path=test_data, **kw) if test_data is not None else None
    return train, val, test, train.num_classes, f"{data} (val {val_data}" + (f", test {test_data})" if test else ")")


def load_probe_encoder(
    checkpoint: str,
    *,
    component: str = "target_encoder",
    random_init: bool = False,
    config_files: Sequence[str] = (),
    overrides: Sequence[str] = (),
    seed: int = 0,
) -> tuple[VisionTransformer, str]:
    """The encoder to probe and how to name it.

    Args:
        checkpoint: anything `jepa_world.load_encoder` reads, or "random": a randomly initialised encoder built from
            the config (`config_files` + `overrides`), exactly the weights a pretraining run with that config and
            `seed` starts from.
        component: "target_encoder" (EMA, default) or "encoder".
        random_init: same architecture as `checkpoint`, random weights (the baseline a probe should beat).
        seed: init seed for random encoders.
    """
    if checkpoint == "random":
        from jepa_world.config import load_config
        from jepa_world.tasks import build_jepa

        cfg = load_config(list(config_files), [*overrides, f"seed={seed}"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            jepa = build_jepa(cfg)
        module = jepa.target_encoder if component == "target_encoder" else jepa.encoder
        return module.eval(), f"random init ({cfg.model.name}, seed {seed})"
    if config_files or overrides:
        raise ValueError("config files / overrides only describe a random encoder (checkpoint='random')")
    import jepa_world

    encoder = jepa_world.load_encoder(checkpoint, component=component)
    if random_init:
        return random_encoder_like(encoder, seed=seed).eval(), f"random init like {checkpoint} (seed {seed})"
    return encoder, f"{checkpoint} [{component}]"


def stderr_log(msg: str) -> None:
    """Progress lines to stderr (tables go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


def probe_checkpoint(
    checkpoint: str,
    *,
    component: str = "target_encoder",
    random_init: bool = False,
    config_files: Sequence[str] = (),
    overrides: Sequence[str] = (),
    data: str = "builtin",
    val_data: str | None = None,
    test_data: str | None = None,
    num_train: int = 2000,
    num_val: int = 500,
    num_test: int = 1000,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    **probe_kwargs: Any,
) -> tuple[dict, str]:
    """What `jepa-world probe` runs: load (or build) an encoder, make labelled splits at its input size, `probe`.

    Args:
        checkpoint, component, random_init, config_files, overrides: see `load_probe_encoder`.
        data: "builtin" (`builtin_datasets`, sized `num_train` / `num_val` / `num_test`) or a path (`user_datasets`).
        val_data, test_data: separate splits for a path.
        seed: random encoders, data split and probe.
        log: progress lines.
        **probe_kwargs: passed to `probe` (kind, lrs, wds, epochs, batch_size, cache, ...).

    Returns:
        (results of `probe`, a title naming the encoder and the data).
    """
    encoder, name = load_probe_encoder(
        checkpoint,
        component=component,
        random_init=random_init,
        config_files=config_files,
        overrides=overrides,
        seed=seed,
    )
    num_frames, image_size = encoder_input_size(encoder)
    if data == "builtin":
        if val_data is not None or test_data is not None:
            raise ValueError("val_data / test_data go with a data path, not with data='builtin'")
        train, val, test, num_classes, what = builtin_datasets(
            num_frames=num_frames, image_size=image_size, num_train=num_train, num_val=num_val, num_test=num_test
        )
    else:
        train, val, test, num_classes, what = user_datasets(
            data, num_frames=num_frames, image_size=image_size, val_data=val_data, test_data=test_data, seed=seed
        )
    if log is not None:
        log(f"probing {name} on {what}")
    results = probe(encoder, train, val, test_set=test, num_classes=num_classes, seed=seed, log=log, **probe_kwargs)
    results.update(encoder=name, data=what)
    return results, f"{name}\n{what}"
