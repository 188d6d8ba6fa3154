"""A readout fit to labelled states on frozen features: the supervised first stage of a world model on few labels.

A frozen ViT holds where a cluttered agent is, but no label-free objective tried so far picks it out of the
distractors (docs/benchmarks.md, "Where the cluttered agent is in the tokens"); a few hundred labelled frames do.
`fit_readout` trains a `TokenReadout` (not its backbone) to regress targets from the backbone's frozen tokens, through
an optional affine head (states in any units: the head maps the readout's latent to them, and is thrown away after);
`draw_frames` draws the frames to fit on from a feature cache of episodes. The world-model task runs both once at
the start of a fresh run (`wm.readout_labels`), then freezes the readout under the dynamics.

Shapes: tokens `[N, T, D]` (T tokens of width D per frame), targets `[N, S]`, readout latents `[N, 1, E]`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from jepa_world.data.feature_cache import FeatureWindows
from jepa_world.models.small import TokenReadout


def fit_readout(
    readout: TokenReadout,
    tokens: Tensor,
    targets: Tensor,
    *,
    steps: int,
    head: nn.Module | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = False,
) -> float:
    """Fit the readout (and `head`) to `targets` by mean squared error on the frozen tokens, AdamW, random batches.

    The readout's own parameters train for the fit only: whatever `requires_grad` they had is restored after, and
    the readout is left in eval mode (its BatchNorm then reads the running statistics of the fit).

    Args:
        readout: a `TokenReadout` whose backbone is frozen (`tokens` are its `frozen_features`).
        tokens: `[N, T, D]` frozen features of the labelled frames.
        targets: `[N, S]` what to predict: in the readout's own units without `head` (keypoints in [-1, 1]),
            standardised states with an affine head.
        steps: optimizer steps.
        head: maps the readout's latent `[N, E]` to `[N, S]` (trained with it); None: the latent itself.
        lr, weight_decay, batch_size: AdamW settings and batch (capped at N).
        seed: batch order.
        progress: a tqdm bar.

    Returns:
        The last 100 steps' mean training loss.
    """
    if not readout.freeze_backbone:
        raise ValueError("fit_readout fits the readout of a frozen backbone (freeze_backbone=True)")
    if tokens.ndim != 3 or targets.ndim != 2 or len(tokens) != len(targets) or not len(tokens):
        raise ValueError(f"tokens [N, T, D] and targets [N, S] of the same N >= 1, got {tuple(tokens.shape)} and "
                         f"{tuple(targets.shape)}")  # fmt: skip
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    params = [p for m in readout.head_modules() + ([] if head is None else [head]) for p in m.parameters()]
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    readout.train()
    try:
        for _ in tqdm(range(steps), disable=not progress, desc="readout fit", leave=False):
            b = torch.randint(0, len(tokens), (min(batch_size, len(tokens)),), generator=gen)
            z = readout(tokens[b])[:, 0]  # [b, E]
            loss = ((z if head is None else head(z)) - targets[b]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        readout.eval()
        for p, g in zip(params, was, strict=True):
            p.requires_grad_(g)
    return float(np.mean(losses[-100:]))


def draw_frames(cache: FeatureWindows, episodes: int, num: int, *, seed: int) -> tuple[Tensor, Tensor]:
    """`num` frames drawn at random without replacement from the first `episodes` episodes of a feature cache.

    The draw is a prefix of one seeded permutation, so a larger `num` keeps the smaller draw's frames first.

    Returns:
        (tokens `[num, ...]`, states `[num, S]` float32), in the order drawn.

    Raises:
        ValueError: the episodes have no states, or fewer than `num` frames.
    """
    if cache.windows.state_dim is None:
        raise ValueError("the episodes have no states to fit a readout to")
    ends = np.cumsum([len(cache.features[e]) for e in range(episodes)])  # [E]
    if num > ends[-1]:
        raise ValueError(f"{num} labelled frames asked for; the {episodes} training episodes hold {ends[-1]}")
    picks = np.random.default_rng(seed).permutation(ends[-1])[:num]
    episode = np.searchsorted(ends, picks, side="right")  # [num]
    row = picks - np.concatenate([[0], ends[:-1]])[episode]  # [num] frame within its episode
    states = {int(e): cache.windows.episode_states(int(e)) for e in np.unique(episode)}
    tokens = torch.stack([cache.features[e][r] for e, r in zip(episode, row, strict=True)])
    return tokens, torch.from_numpy(np.stack([states[int(e)][r] for e, r in zip(episode, row, strict=True)]))


def fit_readout_to_states(
    readout: TokenReadout,
    cache: FeatureWindows,
    *,
    episodes: int,
    num_labels: int,
    steps: int,
    seed: int,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Fit the readout of a world model to the states of `num_labels` random frames of the training episodes.

    States are standardised with the labelled frames' mean and std and reached through an affine head (started at
    the identity), thrown away after. The readout's error is then measured, in state units, on up to 2,000 other
    frames of the same episodes (drawn in the same permutation, never among the labelled ones; they carry states
    too: evaluation only).

    Raises:
        ValueError: the episodes have no states, or fewer than `num_labels` frames.

    Returns:
        {"readout_fit_loss", "readout_rmse", "readout_rmse_other"} (RMSE: root of the mean squared error summed over
        the state dims), the median and 90th percentile of the other frames' errors ("readout_median_other",
        "readout_p90_other": Euclidean, in state units) and "readout_fit_s".
    """
    tic = time.perf_counter()
    total = sum(len(cache.features[e]) for e in range(episodes))
    if not 1 <= num_labels <= total:
        raise ValueError(f"{num_labels} labelled frames asked for; the {episodes} training episodes hold {total}")
    tokens, s = draw_frames(cache, episodes, min(num_labels + 2000, total), seed=seed)
    tokens, other_t, s, other_s = tokens[:num_labels], tokens[num_labels:], s[:num_labels], s[num_labels:]
    mean = s.mean(0)
    std = s.std(0).clamp_min(1e-6) if num_labels > 1 else torch.ones_like(mean)
    head = nn.Linear(readout.embed_dim, s.shape[1])
    # Identity-like start: with a default (small) init, head weights and a keypoint readout's small initial spread
    # multiply to a near-zero gradient, and the fit stalls (cluttered Two-Rooms, V-JEPA, 500 labels, 1,500 steps:
    # 15.4 px RMSE on other frames against 7.1 px from this start).
    nn.init.eye_(head.weight)
    nn.init.zeros_(head.bias)
    loss = fit_readout(readout, tokens, (s - mean) / std, steps=steps, head=head, seed=seed, progress=progress)

    def errors(t: Tensor, s_true: Tensor) -> Tensor:  # [N] distance from each frame's readout to its state
        with torch.no_grad():
            pred = torch.cat([head(readout(t[i : i + 512])[:, 0]) for i in range(0, len(t), 512)]) * std + mean
        return (pred - s_true).pow(2).sum(1).sqrt()

    out = {"readout_fit_loss": loss, "readout_rmse": float(errors(tokens, s).pow(2).mean().sqrt())}
    if len(other_t):
        err = errors(other_t, other_s)
        out["readout_rmse_other"] = float(err.pow(2).mean().sqrt())
        # The error's shape: a few far misses (a distractor taken for the agent) or a spread around every frame.
        out["readout_median_other"] = float(err.median())
        out["readout_p90_other"] = float(err.quantile(0.9))
    out["readout_fit_s"] = time.perf_counter() - tic
    if log is not None:
        other = (f", {out['readout_rmse_other']:.2f} on other frames (median {out['readout_median_other']:.2f}, 90th "
                 f"percentile {out['readout_p90_other']:.2f})" if "readout_rmse_other" in out else "")  # fmt: skip
        log(f"readout fit to the states of {num_labels} labelled frames ({steps} steps, {out['readout_fit_s']:.0f} "
            f"s): RMSE {out['readout_rmse']:.2f} on them{other} (state units)")  # fmt: skip
    return out
