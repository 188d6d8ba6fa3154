"""JEPA objective pieces and representation-collapse diagnostics.

Objective (the releases' recipe): the predictor outputs ``z`` for the masked target tokens
are regressed onto ``h``, the target-encoder features at those tokens, LayerNorm-ed over the feature dim without
affine parameters (``layer_norm_targets``) and computed without gradient. I-JEPA uses smooth-L1, V-JEPA and V-JEPA 2
use L1 (``jepa_loss``).

Collapse (all features mapping to one point or a low-dimensional subspace) shows as the per-dimension std of the
target features falling to 0, the mean pairwise cosine similarity rising to 1 and the effective rank falling towards
1; ``collapse_metrics`` computes all three cheaply (``collapse_diagnostics``: as floats). ``variance_loss`` /
``covariance_loss`` are the VICReg regularisers, optional add-ons against collapse.

World-model loss terms (`VarianceTerm`, `CovarianceTerm`, `SmoothnessTerm`, `InverseDynamicsTerm`) are small modules
passed to `WorldModel(terms=...)` (as EB-JEPA does): each maps the per-frame latents `z [B, T, HW, D]` and the actions
`[B, T-1, A]` to `(weighted loss, {metric: raw value})`, so the world model keeps only its verbs and its prediction
loss, and a new regulariser is one more module here.

Shapes: features are ``[..., D]`` (e.g. ``[B, N, D]`` tokens); diagnostics flatten all leading dims to rows
``[rows, D]``. Diagnostics and VICReg terms are computed in at least float32 (bf16 inputs are upcast).

References:
    - Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture", 2023.
    - Bardes et al., "Revisiting Feature Prediction for Learning Visual Representations from Video", 2024.
    - Roy & Vetterli, "The effective rank: A measure of effective dimensionality", EUSIPCO 2007.
    - Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization", ICLR 2022.
    - Sobal et al., "Learning from Reward-Free Offline Data: A Case for Planning with Latent Dynamics Models", 2025
      (PLDM: per-frame VICReg, temporal smoothness and inverse dynamics when encoder and dynamics train jointly).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "COLLAPSE_MEAN_COS",
    "COLLAPSE_RANK_FRACTION",
    "CovarianceTerm",
    "InverseDynamicsTerm",
    "SmoothnessTerm",
    "VarianceTerm",
    "collapse_diagnostics",
    "collapse_health",
    "collapse_metrics",
    "covariance_loss",
    "effective_rank",
    "feature_std",
    "jepa_loss",
    "layer_norm_targets",
    "mean_cosine_similarity",
    "variance_loss",
]

_LOSSES = {"smooth_l1": F.smooth_l1_loss, "l1": F.l1_loss, "mse": F.mse_loss}


def _rows(h: Tensor, name: str = "h") -> Tensor:
    """``[..., D]`` -> ``[rows, D]`` in at least float32 (float64 stays float64)."""
    if not isinstance(h, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(h).__name__}")
    if h.dim() < 2:
        raise ValueError(f"{name} must have shape [..., D] with at least 2 dims, got {tuple(h.shape)}")
    h = h.reshape(-1, h.shape[-1])  # [rows, D]
    if h.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows (all dims but the last flattened), got {tuple(h.shape)}")
    if h.dtype != torch.float64:
        h = h.float()
    return h


def _centred(h: Tensor) -> Tensor:
    """Subtract the column means of ``[rows, D]``.

    Shifting by the first row first makes identical rows centre to exactly 0 (a float mean of equal values is not
    always exact), so full collapse reads as std 0 / rank 1 instead of rounding noise; the shift cancels otherwise.
    """
    h = h - h[:1]
    return h - h.mean(dim=0)


def jepa_loss(z: Tensor, h: Tensor, *, kind: str = "smooth_l1") -> Tensor:
    """Regression of predictions onto targets, averaged over all elements.

    Args:
        z: Predictor outputs at the target tokens, ``[..., D]``.
        h: Targets (LayerNorm-ed target-encoder features, computed under ``torch.no_grad``), same shape as ``z``.
        kind: ``"smooth_l1"`` (I-JEPA, beta 1), ``"l1"`` (V-JEPA, V-JEPA 2) or ``"mse"``.

    Returns:
        Scalar loss.

    Raises:
        ValueError: If the shapes differ or ``kind`` is unknown.
    """
    if kind not in _LOSSES:
        raise ValueError(f"unknown loss kind={kind!r}; valid kinds: {sorted(_LOSSES)}")
    if z.shape != h.shape:
        raise ValueError(f"z and h must have the same shape, got z {tuple(z.shape)} and h {tuple(h.shape)}")
    return _LOSSES[kind](z, h, reduction="mean")


def layer_norm_targets(h: Tensor) -> Tensor:
    """LayerNorm over the last dim without affine parameters (how the target-encoder outputs are normalised).

    Args:
        h: Target-encoder features ``[..., D]``.

    Returns:
        Normalised features, same shape and dtype.
    """
    return F.layer_norm(h, (h.shape[-1],))


@torch.no_grad()
def feature_std(h: Tensor) -> Tensor:
    """Mean over feature dims of the per-dim std over all rows; falls to 0 at collapse.

    Args:
        h: Features ``[..., D]`` with at least 2 rows once the leading dims are flattened.

    Returns:
        Scalar (float32, or float64 for float64 input). Uses the unbiased std.
    """
    h = _centred(_rows(h))  # [rows, D]
    return h.square().sum(dim=0).div(h.shape[0] - 1).sqrt().mean()


@torch.no_grad()
def effective_rank(h: Tensor) -> Tensor:
    """Effective rank (Roy & Vetterli 2007) of the centred features: ``exp(entropy(s / sum(s)))``.

    ``s`` are the singular values of the row-centred ``[rows, D]`` matrix. The result lies in ``[1, min(rows, D)]``
    and equals ``k`` when there are ``k`` equal non-zero singular values. Fully collapsed features (all rows equal,
    so the centred matrix is 0) give 1. The measure is scale-free: collapse to a point plus small isotropic noise
    still has a high effective rank, which is why ``feature_std`` is logged next to it.

    Args:
        h: Features ``[..., D]`` with at least 2 rows once the leading dims are flattened.

    Returns:
        Scalar (float32, or float64 for float64 input).
    """
    h = _centred(_rows(h))  # [rows, D]
    s = torch.linalg.svdvals(h)  # [min(rows, D)]
    # Clamping instead of branching avoids a device sync; an all-zero s gives p = 0, entropy 0, rank 1
    p = s / s.sum().clamp_min(torch.finfo(s.dtype).tiny)
    entropy = -torch.special.xlogy(p, p).sum()  # xlogy: 0 * log 0 = 0 for exactly-zero singular values
    return entropy.exp()


@torch.no_grad()
def mean_cosine_similarity(h: Tensor) -> Tensor:
    """Average cosine similarity over all pairs of distinct rows; 1 at full collapse, about 0 for random features.

    Computed in O(rows * D) as ``(|sum_i u_i|^2 - sum_i |u_i|^2) / (rows * (rows - 1))`` with ``u_i`` the unit rows,
    so no ``[rows, rows]`` matrix is formed. An all-zero row counts as cosine 0 with every other row.

    Args:
        h: Features ``[..., D]`` with at least 2 rows once the leading dims are flattened.

    Returns:
        Scalar (float32, or float64 for float64 input).
    """
    h = _rows(h)  # [rows, D]
    n = h.shape[0]
    u = F.normalize(h, dim=1)  # [rows, D]
    total = u.sum(dim=0).square().sum()  # sum over all ordered pairs, diagonal included
    diagonal = u.square().sum()
    return (total - diagonal) / (n * (n - 1))


@torch.no_grad()
def collapse_metrics(h: Tensor, *, max_rows: int = 4096) -> dict[str, Tensor]:
    """Feature std, effective rank and mean cosine similarity of ``h`` as 0-d tensors (no device sync, no graph break
    under torch.compile); all three NaN when ``h`` holds a non-finite value.

    Above ``max_rows`` rows the diagnostics use ``max_rows`` evenly spaced rows (deterministic, so values are
    comparable across steps) to keep the SVD and the reductions cheap.

    Args:
        h: Features ``[..., D]``, e.g. target-encoder outputs ``[B, N, D]``.
        max_rows: Most rows used (>= 2).

    Returns:
        ``{"feat_std": ..., "eff_rank": ..., "mean_cos": ...}``.
    """
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 2:
        raise ValueError(f"max_rows must be an int >= 2, got max_rows={max_rows!r}")
    h = _rows(h)  # [rows, D]
    n = h.shape[0]
    if n > max_rows:
        idx = torch.arange(max_rows, device=h.device) * n // max_rows  # [max_rows], strictly increasing
        h = h[idx]
    # A diverged step reports NaN (the loop's non-finite guard decides); the SVD never sees a non-finite value.
    finite = torch.isfinite(h).all()
    h = torch.where(finite, h, torch.zeros_like(h))
    values = torch.stack([feature_std(h), effective_rank(h), mean_cosine_similarity(h)])  # [3]
    values = torch.where(finite, values, torch.full_like(values, math.nan))
    return dict(zip(("feat_std", "eff_rank", "mean_cos"), values.unbind()))


@torch.no_grad()
def collapse_diagnostics(h: Tensor, *, max_rows: int = 4096) -> dict[str, float]:
    """`collapse_metrics` as Python floats (for logging; one device sync)."""
    metrics = collapse_metrics(h, max_rows=max_rows)
    return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))


def variance_loss(z: Tensor, *, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg variance term: ``mean_d relu(gamma - sqrt(var_d(z) + eps))``, pushing each dim's std up to ``gamma``.

    Args:
        z: Features ``[N, D]`` (leading dims of ``[..., D]`` are flattened), at least 2 rows.
        gamma: Target std per dim.
        eps: Added to the (unbiased) variance for a finite gradient at zero variance.

    Returns:
        Scalar loss (float32, or float64 for float64 input); 0 when every dim has std >= gamma.
    """
    z = _rows(z, "z")  # [N, D]
    std = torch.sqrt(z.var(dim=0) + eps)  # [D]
    return F.relu(gamma - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """VICReg covariance term: sum of squared off-diagonal entries of the covariance of ``z``, divided by ``D``.

    Args:
        z: Features ``[N, D]`` (leading dims of ``[..., D]`` are flattened), at least 2 rows.

    Returns:
        Scalar loss (float32, or float64 for float64 input); 0 for decorrelated dims.
    """
    z = _rows(z, "z")  # [N, D]
    n, d = z.shape
    z = z - z.mean(dim=0)
    cov = (z.T @ z) / (n - 1)  # [D, D]
    off_diagonal = cov.square().sum() - cov.diagonal().square().sum()
    return off_diagonal / d


# Collapse thresholds of `collapse_health` (docs/notes/health.md): a mean token cosine above this, or an
# effective rank that fell below this fraction of its first logged value, is reported as (partial) collapse.
COLLAPSE_MEAN_COS = 0.9
COLLAPSE_RANK_FRACTION = 0.7


def collapse_health(first: dict[str, float], last: dict[str, float], *, prefix: str = "target_") -> tuple[str, str]:
    """A one-line summary of the collapse diagnostics between two logged steps, and a warning ("" when healthy).

    Args:
        first: metrics of the first logged step (`{prefix}feat_std`, `{prefix}eff_rank`, `{prefix}mean_cos`, "step").
        last: metrics of the last logged step.
        prefix: key prefix of the diagnostics.

    Returns:
        (summary, warning): e.g. ("target std 0.60 -> 0.58, effective rank 85 -> 81, mean token cosine 0.59 -> 0.62
        (steps 10 -> 200)", "").
    """
    keys = [f"{prefix}{k}" for k in ("feat_std", "eff_rank", "mean_cos")]
    if not all(k in first and k in last for k in keys):
        return "", ""
    (s0, r0, c0), (s1, r1, c1) = ([float(m[k]) for k in keys] for m in (first, last))
    summary = (
        f"target std {s0:.2f} -> {s1:.2f}, effective rank {r0:.0f} -> {r1:.0f}, mean token cosine {c0:.2f} -> "
        f"{c1:.2f} (steps {first.get('step', '?')} -> {last.get('step', '?')})"
    )
    if not all(math.isfinite(v) for v in (s1, r1, c1)):  # a diverged run: not a collapse, and no threshold to quote
        return summary, (
            f"the target features are not finite at step {last.get('step', '?')} (std {s1}, effective rank {r1}, "
            f"mean token cosine {c1}): the run diverged. Try a lower optim.lr or a tighter optim.grad_clip"
        )
    problems = []
    if not c1 <= COLLAPSE_MEAN_COS:
        problems.append(f"mean token cosine {c1:.2f} > {COLLAPSE_MEAN_COS}")
    if not r1 >= COLLAPSE_RANK_FRACTION * r0:
        problems.append(f"effective rank fell from {r0:.0f} to {r1:.0f} (below {COLLAPSE_RANK_FRACTION:.0%} of it)")
    warning = ""
    if problems:
        warning = (
            "the target features are collapsing (" + "; ".join(problems) + "): the encoder may have learned little. "
            "Try var_weight / cov_weight (VICReg on the context tokens: configs/pretrain/vjepa_vcr_nano_cpu.yaml), a "
            "slower EMA (optim.ema) or a lower optim.lr"
        )
    return summary, warning


# --------------------------------------------------------------------------------------------------------------------
# World-model loss terms: `term(z [B, T, HW, D], actions [B, T-1, A]) -> (weighted loss, metrics)`
# --------------------------------------------------------------------------------------------------------------------
class _Term(nn.Module):
    """A weighted loss term on the per-frame latents of a jointly trained world model."""

    metric = "loss"

    def __init__(self, *, weight: float = 1.0):
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"{type(self).__name__}: weight must be >= 0, got {weight}")
        self.weight = float(weight)
        self.config = {"weight": self.weight}  # what it was built with (a checkpoint's tree of parts)

    def value(self, z: Tensor, actions: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, z: Tensor, actions: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raw = self.value(z, actions)
        return self.weight * raw, {self.metric: raw.detach()}

    def extra_repr(self) -> str:
        return f"weight={self.weight:g}"


def _per_frame(z: Tensor) -> Tensor:
    # Statistics over the batch for each frame (PLDM): a latent that only varies over time still collapses.
    return z.transpose(0, 1).flatten(1, 2)  # [T, B*HW, D]


class VarianceTerm(_Term):
    """VICReg variance of each frame's latents over the batch (`variance_loss`, averaged over frames)."""

    metric = "loss_var"

    def value(self, z: Tensor, actions: Tensor) -> Tensor:
        return torch.stack([variance_loss(f) for f in _per_frame(z)]).mean()


class CovarianceTerm(_Term):
    """VICReg covariance of each frame's latents over the batch (`covariance_loss`, averaged over frames)."""

    metric = "loss_cov"

    def value(self, z: Tensor, actions: Tensor) -> Tensor:
        return torch.stack([covariance_loss(f) for f in _per_frame(z)]).mean()


class SmoothnessTerm(_Term):
    """Temporal smoothness `mean |z_{t+1} - z_t|^2` (PLDM): a small move gets a small latent step."""

    metric = "loss_smooth"

    def value(self, z: Tensor, actions: Tensor) -> Tensor:
        return (z[:, 1:] - z[:, :-1]).pow(2).sum(-1).mean()


class InverseDynamicsTerm(_Term):
    """MSE of an MLP head that predicts the action between consecutive latents (PLDM's anti-collapse head).

    The head's parameters are this module's (`mlp.*`): the training loop optimises them with the predictor, and
    checkpoints keep them as the `inverse_dynamics` component.

    Args:
        embed_dim: latent width D.
        action_dim: action width A.
        hidden_dim: MLP hidden width.
        weight: loss weight.
    """

    metric = "loss_idm"

    def __init__(self, *, embed_dim: int, action_dim: int, hidden_dim: int = 256, weight: float = 1.0):
        super().__init__(weight=weight)
        self.config = {
            "embed_dim": embed_dim,
            "action_dim": action_dim,
            "hidden_dim": hidden_dim,
            "weight": self.weight,
        }
        # fc1 -> GELU -> fc2, the layout and parameter names of `models.layers.Mlp`, built here so that the objectives
        # stay below the models (checkpoints keep `mlp.fc1.*` / `mlp.fc2.*`).
        self.mlp = nn.Sequential(
            OrderedDict(fc1=nn.Linear(2 * embed_dim, hidden_dim), act=nn.GELU(), fc2=nn.Linear(hidden_dim, action_dim))
        )

    def predict_action(self, z_t: Tensor, z_t1: Tensor) -> Tensor:
        """`(z_t, z_t1) [..., HW, D] -> [..., A]`: the action that moved z_t to z_t1."""
        return self.mlp(torch.cat([z_t.mean(-2), z_t1.mean(-2)], dim=-1))

    def value(self, z: Tensor, actions: Tensor) -> Tensor:
        return F.mse_loss(self.predict_action(z[:, :-1], z[:, 1:]), actions)
