"""A keypoint readout fit to where the actions act, without labels: the first stage of a pixel-only world model.

On the cluttered Two-Rooms the agent is one dot of four on a textured floor; no label-free objective of the world
model's own picks it out (docs/notes/cluttered-two-rooms.md, "A cluttered Two-Rooms"), a few hundred labelled frames do
(`training.readout_fit`). The actions alone do too, read the right way: an inverse-dynamics model reads the action
from every token's change and averages the readings with the keypoint's own softmax weights over the tokens, so the
weights go where the action can be read: the agent, not a distractor (it moves on its own) or the floor (it does not
move). Then the keypoint's motion is asked to be linear in the action, which trains its offsets inside a token's
cell. The controllable part of the observation as the target follows AC-State (Lamb et al. 2022), the keypoint the
soft-argmax of Levine et al. 2016; attention as the selector is ours. The world-model task runs it once at the start
of a fresh run (`wm.readout.fit: {type: actions}`: `ActionsFit`), then freezes the readout under the dynamics.

Shapes: windows of the cache `[W, F, N, D]` (F frames of N tokens of width D), actions `[W, F - 1, A]`, keypoints
`[W, F, 2]` in image units ([-1, 1]).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from jepa_world.config.parts import fail, register_part
from jepa_world.data.feature_cache import FeatureWindows
from jepa_world.models.layers import Mlp
from jepa_world.models.readout_keypoints import KeypointReadout, soft_argmax_keypoints
from jepa_world.training.readout_fit import draw_frames, fitting, other_frame_errors

# A fit whose inverse dynamics explains less than this share of the actions' variance has not found what they move
# (cluttered Two-Rooms: see docs/notes/cluttered-two-rooms.md, "Without labels").
ACTIONS_MIN_R2 = 0.5


def _explained_share_lost(y: Tensor, x: Tensor, eps: float = 1e-5) -> Tensor:
    """1 - R^2 of the least-squares fit of `y [R, K]` by an affine map of `x [R, A]` (differentiable in `y`); `eps`
    keeps a `y` that barely varies at 1, not at an undefined 0 / 0."""
    x1 = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)  # [R, A + 1]
    eye = torch.eye(x1.shape[1], dtype=x1.dtype)
    beta = torch.linalg.solve(x1.T @ x1 + 1e-6 * eye, x1.T @ y)  # [A + 1, K]
    lost = (y - x1 @ beta).pow(2).sum(-1).mean()
    return (lost + eps) / ((y - y.mean(0)).pow(2).sum(-1).mean() + eps)


def fit_readout_to_actions(
    readout: KeypointReadout,
    cache: FeatureWindows,
    *,
    episodes: int,
    steps: int,
    seed: int,
    attend_fraction: float = 2 / 3,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    windows_per_step: int = 32,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Fit a one-keypoint readout to where the actions act, without labels (module docstring), then leave it in eval.

    The first `attend_fraction` of the steps train the keypoint's weights over the tokens: the action `a_t` is read
    from each token's pair `(z_t, z_t+1)` by a small MLP shared over tokens (thrown away after), and the readings are
    averaged with the keypoint's softmax weights at t; the error (MSE over the actions' variance) trains both. The
    rest add the share of the keypoint's motion `k_t+1 - k_t` that an affine map of the action does not explain
    (least squares within the batch): it trains the offsets inside a token's cell. The keypoint stays in image units
    ([-1, 1]); no state is read for the fit. Episodes with states are used after, to measure it (evaluation only).

    Warns when the inverse dynamics explains less than `ACTIONS_MIN_R2` of the actions' variance at the end.

    Args:
        readout: a `KeypointReadout` with one keypoint whose backbone is frozen; `cache` holds its frozen tokens.
        cache: the training windows' frozen tokens and actions.
        episodes: windows of the first `episodes` episodes are read (the rest are held out).
        steps: AdamW steps (each reads `windows_per_step` windows).
        seed: window draw and the inverse-dynamics model's init.
        attend_fraction: share of the steps before the motion term joins.
        lr, weight_decay: AdamW settings.
        windows_per_step: windows per step.
        log, progress: a summary line, a tqdm bar.

    Returns:
        "readout_idm_r2" (share of the actions' variance read where the keypoint attends, the last 100 steps),
        "readout_motion_r2" (share of the keypoint's motion explained by the action), "readout_attention" (mean
        largest weight over the tokens), "readout_fit_s"; with states in the episodes, "readout_rmse_other",
        "readout_median_other", "readout_p90_other", "readout_chance_other" (`readout_fit.other_frame_errors`): an
        affine map from the keypoint to the states fit on half of up to 2,000 frames, its error on the other half
        (state units; evaluation only).

    Raises:
        ValueError: the readout is not a frozen one-keypoint readout, or the arguments are out of range.
    """
    keypoints = getattr(readout, "num_keypoints", None)
    if keypoints != 1 or not readout.freeze_backbone:
        raise ValueError("fit_readout_to_actions fits one keypoint (a KeypointReadout with keypoints=1) on a frozen "
                         f"backbone; got a {type(readout).__name__} with keypoints={keypoints}, "
                         f"freeze_backbone={readout.freeze_backbone}")  # fmt: skip
    if steps < 1 or not 0 < attend_fraction <= 1:
        raise ValueError(f"steps={steps} must be >= 1 and attend_fraction={attend_fraction} in (0, 1]")
    keys = np.flatnonzero(cache.windows.window_episodes() < episodes)
    if not len(keys):
        raise ValueError(f"no windows in the first {episodes} episodes")
    tic = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    first = cache[(int(keys[0]), 0)]
    action_dim, token_dim = first["actions"].shape[-1], first["tokens"].shape[-1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        inverse = Mlp(dim=2 * token_dim, hidden_dim=128, out_dim=action_dim)
    idm_losses, motion_losses, attention = [], [], []
    attend_steps = round(attend_fraction * steps)
    with fitting(readout, inverse) as params:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        for step in tqdm(range(steps), disable=not progress, desc="readout fit (actions)", leave=False):
            picks = keys[torch.randint(0, len(keys), (windows_per_step,), generator=gen).numpy()]
            items = [cache[(int(k), 0)] for k in picks]
            tokens = torch.stack([it["tokens"] for it in items])  # [W, F, N, D]
            a = torch.stack([it["actions"] for it in items])  # [W, F - 1, A]
            z = readout.normed_tokens(tokens.flatten(0, 1)).unflatten(0, tokens.shape[:2])  # [W, F, N, D]
            scores = readout.keypoint_scores(z, normed=True)  # [W, F, N, 3]
            weights = scores[:, :-1, :, 0].softmax(-1)  # [W, F - 1, N]
            read = inverse(torch.cat([z[:, :-1], z[:, 1:]], dim=-1))  # [W, F - 1, N, A]
            a_hat = (weights[..., None] * read).sum(-2)  # [W, F - 1, A]
            loss = (a_hat - a).pow(2).mean() / a.var(dim=(0, 1)).mean().clamp_min(1e-8)
            idm_losses.append(loss.item())
            attention.append(weights.max(-1).values.mean().item())
            if step >= attend_steps:
                k = soft_argmax_keypoints(scores.flatten(0, 1), readout.centres, readout.half_cell)
                k = k[:, 0].unflatten(0, scores.shape[:2])  # [W, F, 2]
                motion = _explained_share_lost((k[:, 1:] - k[:, :-1]).flatten(0, 1), a.flatten(0, 1))
                motion_losses.append(motion.item())
                loss = loss + motion
            opt.zero_grad()
            loss.backward()
            opt.step()
    out = {
        "readout_idm_r2": 1 - float(np.mean(idm_losses[-100:])),
        "readout_attention": float(np.mean(attention[-100:])),
    }
    if motion_losses:
        out["readout_motion_r2"] = 1 - float(np.mean(motion_losses[-100:]))
    if cache.windows.state_dim is not None:  # evaluation only: an affine map from the keypoint to the states
        total = sum(len(cache.features[e]) for e in range(episodes))
        tokens, s = draw_frames(cache, episodes, min(2000, total), seed=seed)
        with torch.no_grad():
            k = torch.cat([readout(tokens[i : i + 512])[:, 0] for i in range(0, len(tokens), 512)]).double()
        k1, s = torch.cat([k, torch.ones_like(k[:, :1])], dim=1), s.double()  # [M, 3], [M, S]
        half = len(k1) // 2
        if half >= 3:
            beta = torch.linalg.lstsq(k1[:half], s[:half]).solution
            out.update(other_frame_errors((k1[half:] @ beta - s[half:]).pow(2).sum(1).sqrt(), s[half:]))
    out["readout_fit_s"] = time.perf_counter() - tic
    if out["readout_idm_r2"] < ACTIONS_MIN_R2:
        warnings.warn(
            f"the readout fit to the actions did not find what they move: its inverse dynamics explains "
            f"{out['readout_idm_r2']:.2f} of the actions' variance (below {ACTIONS_MIN_R2}); the world model will "
            "plan on something else. More fit steps (wm.readout.fit.steps), a pretrained encoder, or a few labels "
            "(wm.readout.fit.type=labels) help",
            stacklevel=2,
        )
    if log is not None:
        where = (f"; against the states (evaluation only, affine): RMSE {out['readout_rmse_other']:.2f}, median "
                 f"{out['readout_median_other']:.2f}" if "readout_rmse_other" in out else "")  # fmt: skip
        log(f"readout fit to the actions ({steps} steps, {out['readout_fit_s']:.0f} s): inverse dynamics R^2 "
            f"{out['readout_idm_r2']:.2f}, motion R^2 {out.get('readout_motion_r2', float('nan')):.2f}, attention "
            f"{out['readout_attention']:.2f}{where}")  # fmt: skip
    return out


@register_part("fit", "actions")
class ActionsFit:
    """`wm.readout.fit: {type: actions}`: fit a one-keypoint readout to where the actions act, without labels
    (`fit_readout_to_actions`), then it is frozen: a pixel-only setting.

    Args:
        config: the section, resolved (`Config`).
    """

    needs_states = False

    @dataclass
    class Config:
        """`steps`: AdamW steps (32 windows each, LR 1e-3)."""

        type: str = "actions"
        steps: int = 3000

        def check(self, key: str) -> None:
            if self.steps < 1:
                fail(f"{key}.steps", self.steps, "must be >= 1")

    def __init__(self, config: Config):
        self.config = config

    def check_readout(self, readout: object, *, key: str) -> None:
        """The fit finds one keypoint: `wm.readout` must be `{type: keypoints, keypoints: 1}`."""
        if getattr(readout, "type", None) != "keypoints" or getattr(readout, "keypoints", None) != 1:
            fail(f"{key}.type", "actions", "fits one keypoint: it needs wm.readout.type=keypoints and "
                 f"wm.readout.keypoints=1 (got type {getattr(readout, 'type', None)!r})")  # fmt: skip

    def __call__(self, readout: KeypointReadout, cache: FeatureWindows, *, episodes: int, seed: int,
                 log: Callable[[str], None] | None = None, progress: bool = False) -> dict[str, float]:  # fmt: skip
        return fit_readout_to_actions(readout, cache, episodes=episodes, steps=self.config.steps, seed=seed, log=log,
                                      progress=progress)  # fmt: skip
