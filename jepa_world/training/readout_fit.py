"""A readout fit to labelled states on frozen features: the supervised first stage of a world model on few labels.

A frozen ViT holds where a cluttered agent is, but none of the world model's own label-free objectives picks it out of
the distractors (docs/notes/cluttered-two-rooms.md, "Where the cluttered agent is in the tokens"); a few hundred
labelled frames do, and so does a fit to the actions read where the keypoint attends (`training.readout_actions`).
`fit_readout` trains a `TokenReadout` (not its backbone) to regress targets from the backbone's frozen tokens, through
an optional affine head (states in any units: the head maps the readout's latent to them, and is thrown away after);
`draw_frames` draws the frames to fit on from a feature cache of episodes. The world-model task runs both once at
the start of a fresh run (`wm.readout.fit: {type: labels, labels: 500}`: `LabelsFit`), then freezes the readout
under the dynamics.

The labels can be helped by the episodes' actions (`wm.readout.fit.dynamics_weight`): on unlabelled windows, a small MLP
predicts the fit state at t + 1 from the state at t and the action (the readout's own forward model, thrown away
after), and its error joins the label loss. The agent moves as its actions say and a distractor does not, so a readout
that jumps to a distractor on some frames pays for it on frames no label covers (semi-supervised keypoints with a
dynamics prior; the same signal as the world model's, here anchored by the labels).

Without labels: `training.readout_actions`.

Shapes: tokens `[N, T, D]` (T tokens of width D per frame), targets `[N, S]`, readout latents `[N, 1, E]`; windows
of the cache `[W, F, T, D]` (F frames) with actions `[W, F - 1, A]`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from jepa_world.config.parts import fail, register_part
from jepa_world.data.feature_cache import FeatureWindows
from jepa_world.models.layers import Mlp
from jepa_world.models.readout import TokenReadout

# A fit whose error on frames it was not fit to is above this fraction of the error of guessing their mean state has
# settled on something else (R^2 < 0.75). Cluttered Two-Rooms, 250 labels: 0.04-0.09 where the fit found the agent,
# 0.83-0.89 where it took a distractor or the texture for it (docs/notes/cluttered-two-rooms.md, "Fewer labels: 250").
MISS_RATIO = 0.5


@contextmanager
def fitting(readout: TokenReadout, *extra: nn.Module | None) -> Iterator[list[nn.Parameter]]:
    """Inside: the readout's own modules and `extra` (None skipped) trainable, the readout in train mode; yields their
    parameters. After: `requires_grad` as it was, the readout in eval mode (BatchNorm reads the fit's statistics)."""
    params = [p for m in [*readout.head_modules(), *extra] if m is not None for p in m.parameters()]
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    readout.train()
    try:
        yield params
    finally:
        readout.eval()
        for p, g in zip(params, was, strict=True):
            p.requires_grad_(g)


def other_frame_errors(err: Tensor, states: Tensor) -> dict[str, float]:
    """How far a fit readout is from the states of frames it was not fit to: `err [M]` (Euclidean distance of each
    frame's readout to its state) and those `states [M, S]` -> "readout_rmse_other", "readout_median_other",
    "readout_p90_other" (the error's shape: a few far misses, a distractor taken for the agent, or a spread around
    every frame) and "readout_chance_other" (the RMSE of guessing their mean state)."""
    return {
        "readout_rmse_other": float(err.pow(2).mean().sqrt()),
        "readout_median_other": float(err.median()),
        "readout_p90_other": float(err.quantile(0.9)),
        "readout_chance_other": float(states.var(0, unbiased=False).sum().sqrt()),
    }


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
    windows: FeatureWindows | None = None,
    dynamics_weight: float = 0.0,
    windows_per_step: int = 32,
) -> dict[str, float]:
    """Fit the readout (and `head`) to `targets` by mean squared error on the frozen tokens, AdamW, random batches.

    The readout's own parameters train for the fit only: whatever `requires_grad` they had is restored after, and
    the readout is left in eval mode (its BatchNorm then reads the running statistics of the fit). With `windows`
    and `dynamics_weight > 0`, each step adds `dynamics_weight` times the one-step prediction error of a fresh MLP
    forward model (state, action -> next-state change) on `windows_per_step` unlabelled windows (module docstring).

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
        windows: a feature cache of episode windows (the same frozen tokens) to draw the unlabelled windows from.
        dynamics_weight: weight of their forward-model term (0: labels only).
        windows_per_step: unlabelled windows per step.

    Returns:
        {"loss": the last 100 steps' mean label loss, "dynamics_loss": theirs of the forward-model term (with one)}.
    """
    if not readout.freeze_backbone:
        raise ValueError("fit_readout fits the readout of a frozen backbone (freeze_backbone=True)")
    if tokens.ndim != 3 or targets.ndim != 2 or len(tokens) != len(targets) or not len(tokens):
        raise ValueError(f"tokens [N, T, D] and targets [N, S] of the same N >= 1, got {tuple(tokens.shape)} and "
                         f"{tuple(targets.shape)}")  # fmt: skip
    if steps < 1:
        raise ValueError(f"steps={steps} must be >= 1")
    if dynamics_weight < 0 or (dynamics_weight > 0 and windows is None):
        raise ValueError(f"dynamics_weight={dynamics_weight} must be >= 0, and > 0 needs windows")
    gen = torch.Generator().manual_seed(seed)
    forward_model = None
    if dynamics_weight > 0:
        action_dim = windows[(0, 0)]["actions"].shape[-1]
        with torch.random.fork_rng(devices=[]):  # its init, like the batches, follows the seed alone
            torch.manual_seed(seed)
            forward_model = Mlp(dim=targets.shape[1] + action_dim, hidden_dim=64, out_dim=targets.shape[1])
    losses: list[float] = []
    dyn_losses: list[float] = []

    def fit_state(t: Tensor) -> Tensor:  # [b, T, D] -> [b, S]
        z = readout(t)[:, 0]
        return z if head is None else head(z)

    with fitting(readout, head, forward_model) as params:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        for _ in tqdm(range(steps), disable=not progress, desc="readout fit", leave=False):
            b = torch.randint(0, len(tokens), (min(batch_size, len(tokens)),), generator=gen)
            loss = (fit_state(tokens[b]) - targets[b]).pow(2).mean()
            losses.append(loss.item())
            if forward_model is not None:
                keys = torch.randint(0, len(windows), (windows_per_step,), generator=gen).tolist()
                items = [windows[(k, 0)] for k in keys]
                w_tokens = torch.stack([it["tokens"] for it in items])  # [W, F, T, D]
                actions = torch.stack([it["actions"] for it in items])  # [W, F - 1, A]
                s = fit_state(w_tokens.flatten(0, 1)).unflatten(0, w_tokens.shape[:2])  # [W, F, S]
                step = forward_model(torch.cat([s[:, :-1], actions], dim=-1))  # [W, F - 1, S]
                dyn = (s[:, 1:] - s[:, :-1] - step).pow(2).mean()
                dyn_losses.append(dyn.item())
                loss = loss + dynamics_weight * dyn
            opt.zero_grad()
            loss.backward()
            opt.step()
    out = {"loss": float(np.mean(losses[-100:]))}
    if dyn_losses:
        out["dynamics_loss"] = float(np.mean(dyn_losses[-100:]))
    return out


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
    dynamics_weight: float = 0.0,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Fit the readout of a world model to the states of `num_labels` random frames of the training episodes.

    With `dynamics_weight > 0` the fit also reads the cache's unlabelled windows (`fit_readout`); they may hold the
    frames the error is measured on (their tokens and actions, never their states).

    States are standardised with the labelled frames' mean and std and reached through an affine head (started at
    the identity), thrown away after. The readout's error is then measured, in state units, on up to 2,000 other
    frames of the same episodes (drawn in the same permutation, never among the labelled ones; they carry states
    too: evaluation only). Warns when that error is above `MISS_RATIO` times the error of guessing their mean state:
    the fit has settled on something other than the state (a distractor, the texture).

    Raises:
        ValueError: the episodes have no states, or fewer than `num_labels` frames.

    Returns:
        {"readout_fit_loss", "readout_rmse", "readout_rmse_other"} (RMSE: root of the mean squared error summed over
        the state dims), the median and 90th percentile of the other frames' errors ("readout_median_other",
        "readout_p90_other": Euclidean, in state units), the RMSE of guessing the other frames' mean state
        ("readout_chance_other"), "readout_fit_s", and with `dynamics_weight`
        "readout_dynamics_loss" (the forward-model term's last 100 steps).
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
    fit = fit_readout(readout, tokens, (s - mean) / std, steps=steps, head=head, seed=seed, progress=progress,
                      windows=cache, dynamics_weight=dynamics_weight)  # fmt: skip

    def errors(t: Tensor, s_true: Tensor) -> Tensor:  # [N] distance from each frame's readout to its state
        with torch.no_grad():
            pred = torch.cat([head(readout(t[i : i + 512])[:, 0]) for i in range(0, len(t), 512)]) * std + mean
        return (pred - s_true).pow(2).sum(1).sqrt()

    out = {"readout_fit_loss": fit["loss"], "readout_rmse": float(errors(tokens, s).pow(2).mean().sqrt())}
    if len(other_t):
        out.update(other_frame_errors(errors(other_t, other_s), other_s))
        chance = out["readout_chance_other"]
        if out["readout_rmse_other"] > MISS_RATIO * chance:
            warnings.warn(
                f"the readout fit to {num_labels} labelled frames did not find the state: RMSE "
                f"{out['readout_rmse_other']:.2f} on other frames, more than {MISS_RATIO} x the "
                f"{chance:.2f} of guessing their mean state (median {out['readout_median_other']:.2f}); the "
                "world model will plan on something else. More labels (wm.readout.fit.labels) or the actions as a "
                "second teacher (wm.readout.fit.dynamics_weight) help; a pretrained encoder needs fewer labels",
                stacklevel=2,
            )
    if "dynamics_loss" in fit:
        out["readout_dynamics_loss"] = fit["dynamics_loss"]
    out["readout_fit_s"] = time.perf_counter() - tic
    if log is not None:
        other = (f", {out['readout_rmse_other']:.2f} on other frames (median {out['readout_median_other']:.2f}, 90th "
                 f"percentile {out['readout_p90_other']:.2f})" if "readout_rmse_other" in out else "")  # fmt: skip
        log(f"readout fit to the states of {num_labels} labelled frames ({steps} steps, {out['readout_fit_s']:.0f} "
            f"s): RMSE {out['readout_rmse']:.2f} on them{other} (state units)")  # fmt: skip
    return out


@register_part("fit", "labels")
class LabelsFit:
    """`wm.readout.fit: {type: labels, labels: 500}`: fit the readout to the episodes' states on a few labelled frames
    (`fit_readout_to_states`), then it is frozen. A setting with labels: report it apart from pixel-only rows.

    Args:
        config: the section, resolved (`Config`).
    """

    needs_states = True  # the episodes must carry states (the labels)

    @dataclass
    class Config:
        """`labels`: labelled frames drawn at random from the training episodes; `steps`: AdamW steps (batch 128, LR
        1e-3); `dynamics_weight` > 0: unlabelled windows join through a forward model of the readout's state (a
        distractor moves on its own, so the frames where the readout jumps to one are the ones this penalises)."""

        type: str = "labels"
        labels: int = 500
        steps: int = 3000
        dynamics_weight: float = 0.0

        def check(self, key: str) -> None:
            for name in ("labels", "steps"):
                if getattr(self, name) < 1:
                    fail(f"{key}.{name}", getattr(self, name), "must be >= 1")
            if not self.dynamics_weight >= 0:
                fail(f"{key}.dynamics_weight", self.dynamics_weight, "must be >= 0")

    def __init__(self, config: Config):
        self.config = config

    def check_readout(self, readout: object, *, key: str) -> None:
        """Any readout can be fit to labels."""

    def __call__(self, readout: TokenReadout, cache: FeatureWindows, *, episodes: int, seed: int,
                 log: Callable[[str], None] | None = None, progress: bool = False) -> dict[str, float]:  # fmt: skip
        c = self.config
        return fit_readout_to_states(readout, cache, episodes=episodes, num_labels=c.labels, steps=c.steps, seed=seed,
                                     dynamics_weight=c.dynamics_weight, log=log, progress=progress)  # fmt: skip
