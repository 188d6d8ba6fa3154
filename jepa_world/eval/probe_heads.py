"""Probe heads and their sweeps: linear and attentive heads, many (lr, weight decay) heads trained at once.

References:
    He et al. 2022 (MAE: linear probe on mean-pooled features behind a BatchNorm without affine);
    Bardes et al. 2024 (V-JEPA: attentive probe = learnable query token, one cross-attention block, linear
    classifier); Assran et al. 2025 (V-JEPA 2: many probe heads with different (lr, wd) trained in parallel on one
    forward pass of the backbone, as a cheap sweep).

Every head of a sweep sees the same batches in the same order and starts from the same initial weights, so heads
differ only by their (lr, wd); each head's loss reaches only its own parameters, so training K heads together is K
independent runs.

Shapes: tokens `[B, N, D]`, pooled `[B, D]`, logits `[B, C]`; a sweep of K heads gives `[K, B, C]`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jepa_world.models.layers import LN_EPS, Mlp, constructor_config, init_weights_
from jepa_world.objectives.schedules import warmup_cosine


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
        config = constructor_config(locals())
        super().__init__()
        self.config = config
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
        config = constructor_config(locals())
        super().__init__()
        self.config = config
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
