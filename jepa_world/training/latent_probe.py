"""Does the world model's latent hold the state? A linear probe run once when a train-wm run on episodes with states
ends.

Up to `MAX_FRAMES` frames are drawn with a fixed seed from episodes the model was not trained on (the held-out
episodes of `wm.val_episodes`; without them the last 20% of the episodes, which it was trained on, and the line says
so), encoded by the trained model and pooled to one vector per frame. A ridge-regularised linear map (closed form, on
latents standardised with the fit half's statistics) is fit on half of those frames and scored on the other half: one
R^2 per state dimension. A dimension the latent hardly holds (R^2 < `WEAK_R2`) cannot be planned toward: a goal that
differs from the start only in it looks the same as the start. Push-T latents that held the block but not the agent
were found this way.

Shapes: latents ``[N, D]``, states ``[N, S]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from jepa_world.atomic import atomic_write_text
from jepa_world.data.episodes import read_metadata
from jepa_world.data.transforms import frames_to_tensor
from jepa_world.data.windows import EpisodeWindows

__all__ = ["MAX_FRAMES", "WEAK_R2", "linear_probe_r2", "probe_line", "state_names", "with_state_probe"]

MAX_FRAMES = 2000  # frames encoded for the probe
MAX_EPISODES = 200  # episodes read for them (drawn first, so a large dataset is not read whole)
WEAK_R2 = 0.5  # R^2 under which a state dimension counts as not held by the latent
RIDGE = 1e-2  # ridge strength per fit frame, on standardised latents
SEED = 0  # the frames and the fit / test halves: the same for every run on the same episodes
PROBE_FILE = "probe.json"

Health = Callable[[dict, dict], tuple[str, str]]


def linear_probe_r2(latents: np.ndarray, states: np.ndarray, *, ridge: float = RIDGE, seed: int = SEED) -> np.ndarray:
    """R^2 per state dimension of a ridge linear probe fit on half the frames, scored on the other half.

    Latents are standardised with the fit half's mean and standard deviation; the weights solve
    ``(A^T A + ridge * n I) w = A^T (y - mean y)`` (``n`` fit frames), the intercept is the fit half's mean state.

    Args:
        latents: ``[N, D]`` one latent per frame (N >= 4).
        states: ``[N, S]`` the state of each frame.
        ridge: Regularisation per fit frame.
        seed: Seed of the split into halves.

    Returns:
        ``[S]`` R^2 on the scored half (1 is perfect, 0 is the mean's score, below 0 worse than the mean); NaN for a
        dimension that is constant on the scored half.

    Raises:
        ValueError: Shapes that do not match, or fewer than 4 frames.
    """
    x = np.asarray(latents, dtype=np.float64)
    y = np.asarray(states, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"latents [N, D] and states [N, S] must have the same N, got {x.shape} and {y.shape}")
    if len(x) < 4:
        raise ValueError(f"a probe needs at least 4 frames, got {len(x)}")
    order = np.random.default_rng(seed).permutation(len(x))
    fit, test = order[: len(x) // 2], order[len(x) // 2 :]
    mu, sd = x[fit].mean(0), x[fit].std(0) + 1e-6
    a, b = (x[fit] - mu) / sd, (x[test] - mu) / sd
    y_mu = y[fit].mean(0)
    w = np.linalg.solve(a.T @ a + ridge * len(fit) * np.eye(a.shape[1]), a.T @ (y[fit] - y_mu))  # [D, S]
    pred = b @ w + y_mu  # [M, S]
    truth = y[test]
    total = ((truth - truth.mean(0)) ** 2).sum(0)  # [S]
    resid = ((pred - truth) ** 2).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 1e-12 * len(test), 1.0 - resid / total, np.nan)


def state_names(windows: EpisodeWindows, root: str | Path, state_dim: int) -> list[str]:
    """Names of the state dimensions: the episodes' metadata (``state_names``, or the names of ``env_state`` when
    the states are that state or its first entries), a LeRobot state feature's ``names``, else ``s0, s1, ...``."""
    meta = read_metadata(root) or {}
    candidates = [meta.get("state_names")]
    env_state = meta.get("env_state") or {}
    names = env_state.get("names") if isinstance(env_state, dict) else None
    if isinstance(names, list) and (len(names) == state_dim or meta.get("state_key") == "state"):
        candidates.append(names[:state_dim])
    info, key = getattr(windows, "info", None), getattr(windows, "state_key", None)
    if isinstance(info, dict) and key is not None:
        candidates.append(info.get("features", {}).get(key, {}).get("names"))
    for names in candidates:
        if isinstance(names, list) and len(names) == state_dim and all(isinstance(n, str) for n in names):
            return list(names)
    return [f"s{i}" for i in range(state_dim)]


def probe_frames(
    windows: EpisodeWindows, episodes: Sequence[int], *, max_frames: int = MAX_FRAMES, seed: int = SEED
) -> list[tuple[int, np.ndarray]]:
    """``[(episode, sorted frame rows)]``: up to `max_frames` frames drawn without replacement from `episodes`."""
    rng = np.random.default_rng(seed)
    episodes = np.asarray(episodes, dtype=np.int64)
    if len(episodes) > MAX_EPISODES:
        episodes = np.sort(rng.choice(episodes, size=MAX_EPISODES, replace=False))
    lengths = np.array([windows.episodes[e].num_frames for e in episodes])
    flat = np.arange(lengths.sum())
    if len(flat) > max_frames:
        flat = np.sort(rng.choice(flat, size=max_frames, replace=False))
    which = np.searchsorted(np.cumsum(lengths), flat, side="right")  # position in `episodes` of each frame
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return [(int(episodes[i]), flat[which == i] - starts[i]) for i in np.unique(which)]


@torch.no_grad()
def encode_pooled(model: nn.Module, x: torch.Tensor, *, batch: int = 256) -> np.ndarray:
    """The model's latents of frames ``x [N, 3, H, W]``, mean-pooled over tokens: ``[N, D]`` (model left as it was)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            parts = [model.encode(x[i : i + batch].to(device)) for i in range(0, len(x), batch)]  # [n, 1, HW, D]
    finally:
        model.train(was_training)
    return torch.cat(parts).float().mean(dim=(1, 2)).cpu().numpy()


def probe_line(names: Sequence[str], r2: np.ndarray, where: str) -> str:
    """``probe (linear, <where>): R^2 per state dim [name 0.98, ...]``."""
    cells = ", ".join(f"{n} {v:.2f}" if np.isfinite(v) else f"{n} constant" for n, v in zip(names, r2, strict=True))
    return f"probe (linear, {where}): R^2 per state dim [{cells}]"


def run_state_probe(
    model: nn.Module,
    windows: EpisodeWindows,
    *,
    names: Sequence[str],
    image_size: int | None,
    val_episodes: int,
) -> tuple[str, str, dict]:
    """Probe the model's latent for each state dimension on frames it was not trained on (see the module docstring).

    Returns:
        ``(line, warning, record)``: the one line to print, a warning naming the dimensions under `WEAK_R2` (empty
        when none), and what `probe.json` holds.
    """
    total = len(windows.episodes)
    if val_episodes > 0:
        episodes, where = range(total - val_episodes, total), "held-out frames"
    else:
        first = total - max(1, int(np.ceil(0.2 * total)))
        episodes, where = range(first, total), "frames of the last 20% of the training episodes"
    picks = probe_frames(windows, episodes)
    if sum(len(rows) for _, rows in picks) < 8:
        return f"probe (linear, {where}): skipped, fewer than 8 frames", "", {"source": where, "r2": None}
    frames = np.concatenate([windows.episode_frames(e)[rows] for e, rows in picks])  # [N, H, W, 3]
    states = np.concatenate([windows.episode_states(e)[rows] for e, rows in picks])  # [N, S]
    latents = encode_pooled(model, frames_to_tensor(frames, image_size=image_size))
    r2 = linear_probe_r2(latents, states)
    line = probe_line(names, r2, where)
    weak = [n for n, v in zip(names, r2, strict=True) if np.isfinite(v) and v < WEAK_R2]
    warning = ""
    if weak:
        warning = (f"the latent hardly holds {', '.join(weak)} (linear probe R^2 < {WEAK_R2:g}): planning toward "
                   f"goals that differ in {'it' if len(weak) == 1 else 'them'} will fail")  # fmt: skip
    record = {"r2": {n: (float(v) if np.isfinite(v) else None) for n, v in zip(names, r2, strict=True)},
              "frames": len(frames), "fit_frames": len(frames) // 2,
              "test_frames": len(frames) - len(frames) // 2, "episodes": [int(e) for e, _ in picks],
              "source": where, "ridge": RIDGE, "seed": SEED, "weak_below": WEAK_R2}  # fmt: skip
    return line, warning, record


def with_state_probe(
    health: Health, *, model: nn.Module, windows: EpisodeWindows, cfg: DictConfig, root: str | Path
) -> Health:
    """`health` (a world-model Task's end-of-run check), plus the state probe when the episodes carry states.

    The returned check prints the probe's line, writes `probe.json` to the run folder (`train.output_dir`), and adds
    the probe's warning to `health`'s; `health`'s summary is returned as it was. Episodes without states: `health`
    itself.

    Args:
        health: The check to extend.
        model: The world model being trained (probed as it is when the run ends).
        windows: The run's episode windows (all episodes; the last `wm.val_episodes` are the held-out ones).
        cfg: The run's config (`train.output_dir`, `data.image_size`, `wm.val_episodes`).
        root: The episode folder (its metadata names the state dims).
    """
    state_dim = windows.state_dim
    if state_dim is None:
        return health
    names = state_names(windows, root, state_dim)
    out, image_size, val_episodes = Path(cfg.train.output_dir), cfg.data.image_size, int(cfg.wm.val_episodes or 0)

    def check(first: dict, last: dict) -> tuple[str, str]:
        summary, warning = health(first, last)
        line, probe_warning, record = run_state_probe(model, windows, names=names, image_size=image_size,
                                                      val_episodes=val_episodes)  # fmt: skip
        print(line)
        atomic_write_text(out / PROBE_FILE, json.dumps(record, indent=1) + "\n")
        return summary, "; ".join(w for w in (warning, probe_warning) if w)

    return check
