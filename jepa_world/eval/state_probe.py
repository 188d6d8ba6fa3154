"""Does a frozen encoder know the agent's state? Probes of a low-dimensional state from frozen features.

The state is what an environment records per frame (the Two-Rooms position, px of the arena). Frames are split by
episode, so that no episode is in two splits: the first 60% of the episodes to fit on (all their frames or `n` of
them), the next 20% to pick the regularisation, the last 20% to test on. The probe is a kernel (dual) ridge
regression with a bias from the flattened, standardised features (`kernel_ridge`: features are wide, frames few), or
any other fit passed in (`scripts/bench_state_probe.py --probe keypoints` passes the world model's keypoint readout).

Shapes: features ``[N, ...]`` (``[N, T, D]`` tokens or ``[N, D]`` pooled), states ``[N, S]``, episode ids ``[N]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from jepa_world.data.episode_formats import open_episodes
from jepa_world.envs.two_rooms import SUCCESS_THRESHOLD

__all__ = ["LAMBDAS", "encode_tokens", "episode_frames", "kernel_ridge", "probe_state"]

LAMBDAS = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)  # the ridge's regularisation, picked on the validation episodes


def episode_frames(
    root: str | Path, num_episodes: int, image_size: int, *, stride: int = 4
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Every `stride`-th frame of the first `num_episodes` recorded episodes, with their states.

    Args:
        root: An episode folder (any format `open_episodes` reads) with states.
        num_episodes: Episodes whose frames are read.
        image_size: Side the frames are read at.
        stride: Frames between two read frames.

    Returns:
        ``(x [N, 3, S, S], states [N, state_dim], episode ids [N])``.

    Raises:
        ValueError: The episodes hold no states.
    """
    data = open_episodes(root=root, window=1, stride=stride, image_size=image_size)
    if data.state_dim is None:
        raise ValueError(f"--episodes {root}: the episodes have no states (positions) to probe")
    keys = [k for k in range(len(data)) if data.window_rows(k)[0] < num_episodes]
    items = [data[k] for k in keys]
    x = torch.cat([it["x"] for it in items])  # [N, 3, S, S]
    s = np.concatenate([it["states"].numpy() for it in items])  # [N, state_dim]
    return x, s, np.array([data.window_rows(k)[0] for k in keys])


@torch.no_grad()
def encode_tokens(encoder: torch.nn.Module, x: torch.Tensor, *, batch: int = 256) -> np.ndarray:
    """The frozen encoder's output for frames ``x [N, ...]`` in batches: ``[N, T, D]`` (the encoder is put in eval)."""
    encoder.eval()
    return torch.cat([encoder(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


def kernel_ridge(
    train: np.ndarray, y: np.ndarray, tests: Sequence[np.ndarray], lams: Sequence[float]
) -> dict[float, list[np.ndarray]]:
    """Kernel (dual) ridge regression with a bias on standardised ``[N, F]`` features, fit once per lambda.

    The Gram matrix is computed once (``O(N^2 F)``: cheap when F >> N, as for flattened tokens).

    Args:
        train: Fit features ``[N, F]``.
        y: Fit targets ``[N, S]``.
        tests: Feature matrices ``[M, F]`` to predict.
        lams: Regularisations to fit.

    Returns:
        ``{lambda: [predictions [M, S] for each of tests]}``.
    """
    mu, sd = train.mean(0), train.std(0) + 1e-6
    a = (train - mu) / sd
    y_mu = y.mean(0)
    gram = a @ a.T / a.shape[1]
    cross = [(t - mu) / sd @ a.T / a.shape[1] for t in tests]
    out = {}
    for lam in lams:
        alpha = np.linalg.solve(gram + lam * np.eye(len(a)), y - y_mu)
        out[lam] = [c @ alpha + y_mu for c in cross]
    return out


def probe_state(
    features: np.ndarray,
    states: np.ndarray,
    episode: np.ndarray,
    sizes: Sequence[int] = (0,),
    *,
    fit: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    lambdas: Sequence[float] = LAMBDAS,
    radius: float = SUCCESS_THRESHOLD,
) -> dict[int, dict]:
    """Fit a probe from the features to the states on some episodes; test it on held-out ones.

    Args:
        features: ``[N, ...]`` frozen features of N frames.
        states: ``[N, S]`` the state of each frame.
        episode: ``[N]`` episode id of each frame (the split is by episode).
        sizes: Fit-set sizes: n frames drawn from the fit episodes (the same draws for every call), 0 for all.
        fit: ``(features [n, ...], states [n, S], test features [M, ...]) -> predictions [M, S]`` in place of the
            ridge (which then picks no lambda), or None.
        lambdas: The ridge's regularisations; the one with the lowest validation error is reported.
        radius: Distance under which a state counts as recovered (the planning benchmark's success radius).

    Returns:
        Per size ``n``: ``{"rmse", "r2", "within" (share of test frames within radius), "lambda", "fit_frames",
        "test_frames"}``.
    """
    cut = np.quantile(np.unique(episode), [0.6, 0.8])
    tr, va, te = episode < cut[0], (episode >= cut[0]) & (episode < cut[1]), episode >= cut[1]
    f = None if fit is not None else features.reshape(len(features), -1).astype(np.float64)  # the ridge's
    rng = np.random.default_rng(0)  # the same subsets for every encoder
    out = {}
    for n in sizes:
        rows = np.flatnonzero(tr)
        rows = np.sort(rng.choice(rows, size=n, replace=False)) if 0 < n < len(rows) else rows
        if fit is not None:
            pred, lam = fit(features[rows], states[rows], features[te]), None
        else:
            preds = kernel_ridge(f[rows], states[rows], [f[va], f[te]], lambdas)
            lam = min(lambdas, key=lambda k: ((preds[k][0] - states[va]) ** 2).mean())
            pred = preds[lam][1]
        dist = np.linalg.norm(pred - states[te], axis=1)
        r2 = 1 - ((pred - states[te]) ** 2).sum() / ((states[te] - states[te].mean(0)) ** 2).sum()
        out[n] = {"rmse": float(np.sqrt((dist**2).mean())), "r2": float(r2), "within": float((dist < radius).mean()),
                  "lambda": lam, "fit_frames": len(rows), "test_frames": int(te.sum())}  # fmt: skip
    return out
