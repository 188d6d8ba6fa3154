"""The world model: a frame encoder plus action-conditioned latent dynamics, exposed as verbs.

References:
    Assran et al. 2025 (V-JEPA 2-AC: L1 teacher forcing + rollout loss on layer-normed latents of a frozen encoder);
    Sobal et al. 2025 (PLDM) and EB-JEPA (joint training with loss terms passed in as modules); Hansen et al. 2024
    (TD-MPC2: a world model exposed as verbs).

Verbs: `encode` (frames -> latents), `predict` (teacher-forced next latents), `rollout` (autoregressive, key/value
cached), `step` (one step from one latent: what policies and tree search imagine with). `forward(batch) -> (loss,
metrics)` is the training objective; the planner's cost lives on the planning side (`jepa_world.planning.costs`),
which calls `rollout`.

Shapes: frames `[B, T, 3, H, W]`, latents `[B, T, HW, D]` (HW = 1 when pooled), actions `[B, T-1, A]`, states
`[B, T, S]`. The latent space is the affine-free LayerNorm of the encoder output (after mean-pooling if `pool`) when the
encoder is frozen, the raw encoder output when it trains jointly (or when `latent_norm=False`: a frozen readout fit to
states, whose few coordinates a layer norm would erase).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepa_world.models.ac_predictor import ActionConditionedPredictor, RolloutCache, check_shape
from jepa_world.models.mlp_dynamics import ResidualMlpDynamics
from jepa_world.objectives.losses import InverseDynamicsTerm, feature_std, jepa_loss

STATE_UPDATES = ("hold", "add")


class WorldModel(nn.Module):
    """Encoder + action-conditioned predictor with the verbs `encode`, `predict`, `rollout`, and a training loss.

    Args:
        encoder: frame encoder `[B, 3, H, W] -> [B, N, D]` with an `embed_dim` attribute (a `VisionTransformer`, or
            a `PooledEncoder`); each frame is encoded alone.
        predictor: an `ActionConditionedPredictor` (or, for pooled latents, a `ResidualMlpDynamics`) whose
            `embed_dim` equals the encoder's.
        pool: mean-pool each frame's tokens to one latent (the practical choice on CPU).
        freeze_encoder: no gradient to the encoder (kept in eval mode); targets are then computed under no_grad.
            When False, encoder and predictor train jointly, with the anti-collapse terms below.
        rollout_steps: autoregressive steps of the rollout loss from frame 0 (release: 2; clamped to T - 1; 0 = off).
        loss: regression loss, "l1" (release), "smooth_l1" or "mse".
        tf_weight: weight of the teacher-forcing loss.
        rollout_weight: weight of the rollout loss.
        terms: loss terms on the per-frame latents, added in order (joint training only): modules
            `term(z [B, T, HW, D], actions [B, T-1, A]) -> (weighted loss, metrics)` from
            `jepa_world.objectives.losses` (VICReg variance / covariance, temporal smoothness, inverse dynamics).
        latent_norm: layer-norm latents and predictions; None: when the encoder is frozen (V-JEPA 2-AC). False for
            a frozen low-dimensional latent (a readout fit to states: a layer norm of 2 numbers leaves only a sign).
        state_update: how `rollout` fills states of predicted frames when only context states are given: "hold" (repeat
            the last state), "add" (s + a: delta-pose actions with A == S, as the Franka sample's derived actions), or
            a callable `(s [N, 1, S], a [N, 1, A]) -> [N, 1, S]`.
    """

    def __init__(
        self,
        *,
        encoder: nn.Module,
        predictor: ActionConditionedPredictor | ResidualMlpDynamics,
        pool: bool = False,
        freeze_encoder: bool = True,
        rollout_steps: int = 2,
        loss: str = "l1",
        tf_weight: float = 1.0,
        rollout_weight: float = 1.0,
        terms: Sequence[nn.Module] = (),
        latent_norm: bool | None = None,
        state_update: str | Callable[[Tensor, Tensor], Tensor] = "hold",
    ):
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__", "encoder", "predictor", "terms")}
        super().__init__()
        self.config = config  # the non-module arguments; encoder, predictor and terms keep their own
        enc_dim = getattr(encoder, "embed_dim", None)
        if enc_dim != predictor.embed_dim:
            raise ValueError(f"encoder width {enc_dim} differs from the predictor's embed_dim={predictor.embed_dim}")
        if not isinstance(rollout_steps, int) or rollout_steps < 0:
            raise ValueError(f"rollout_steps must be an int >= 0, got {rollout_steps!r}")
        if not callable(state_update) and state_update not in STATE_UPDATES:
            raise ValueError(f"state_update={state_update!r}; expected one of {STATE_UPDATES} or a callable")
        if state_update == "add" and predictor.state_dim and predictor.state_dim != predictor.action_dim:
            raise ValueError(
                f"state_update='add' needs state_dim == action_dim, got {predictor.state_dim} and "
                f"{predictor.action_dim}"
            )
        if freeze_encoder and terms:
            raise ValueError("loss terms regularise a jointly trained encoder; pass none with freeze_encoder=True")
        jepa_loss(torch.zeros(1), torch.zeros(1), kind=loss)  # fail at construction on an unknown loss name
        self.encoder, self.predictor = encoder, predictor
        self.pool, self.freeze_encoder, self.rollout_steps, self.loss_kind = pool, freeze_encoder, rollout_steps, loss
        self.tf_weight, self.rollout_weight = tf_weight, rollout_weight
        self.terms = nn.ModuleList(terms)
        self.state_update = state_update
        self.latent_norm = freeze_encoder if latent_norm is None else latent_norm
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    @property
    def inverse_dynamics(self) -> nn.Module | None:
        """The inverse-dynamics loss term (it has parameters, saved as a checkpoint component), or None."""
        return next((t for t in self.terms if isinstance(t, InverseDynamicsTerm)), None)

    def parameter_roles(self) -> list[tuple[list[nn.Module], str]]:
        """What trains, in groups with a role: `new` (predictor, loss terms, a readout's head: trained at the full LR)
        or `pretrained` (a fine-tuned pretrained backbone: the loop scales its LR). An encoder part that says what of
        it trains (`parameter_roles`: a readout) answers for itself; any other trains whole unless frozen."""
        roles = [([self.predictor, *self.terms], "new")]
        if self.freeze_encoder:
            return roles
        encoder_roles = getattr(self.encoder, "parameter_roles", None)
        return roles + (encoder_roles() if encoder_roles is not None else [([self.encoder], "pretrained")])

    def train(self, mode: bool = True) -> WorldModel:
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # no drop-path noise in a frozen feature extractor
        return self

    # -- verbs --------------------------------------------------------------------------------------------------------
    def encode(self, frames: Tensor, *, tokens: bool = False) -> Tensor:
        """Encode each frame alone: `[B, T, 3, H, W]` or `[B, 3, H, W]` -> `[B, T, HW, D]` (T = 1 for one image).

        With `tokens=True`, `frames` are a frozen backbone's precomputed features `[B, T, N, D]` of an encoder that
        reads them (`TokenReadout`; see `jepa_world.data.feature_cache`): the same latents without the backbone pass.
        """
        if tokens:
            if frames.ndim != 4:
                raise ValueError(f"tokens must be [B, T, N, D], got {tuple(frames.shape)}")
        elif frames.ndim == 4:
            frames = frames[:, None]
        if not tokens and frames.ndim != 5:
            raise ValueError(f"frames must be [B, T, C, H, W] or [B, C, H, W], got {tuple(frames.shape)}")
        B, T = frames.shape[:2]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            h = self.encoder(frames.flatten(0, 1))  # [B*T, N, D]
        if self.pool:
            h = h.mean(dim=1, keepdim=True)  # [B*T, 1, D]
        return self._norm(h).unflatten(0, (B, T))

    def _norm(self, z: Tensor) -> Tensor:
        # Frozen (pretrained) encoders: layer-normed latents and predictions, as V-JEPA 2-AC. Joint training keeps
        # raw latents (as PLDM): a layer norm there lets the static background dominate every latent, and the
        # variance term cannot pull the normalised latents apart (measured: collapse to std ~1e-5).
        return F.layer_norm(z, (z.shape[-1],)) if self.latent_norm else z

    def _states(self, states: Tensor | None) -> Tensor | None:
        # Verbs ignore states when the predictor has no state token, so callers can pass what the data holds.
        return states if self.predictor.state_dim else None

    def predict(self, z: Tensor, actions: Tensor, states: Tensor | None = None) -> Tensor:
        """Teacher-forced one-step predictions: z `[B, T, HW, D]`, actions `[B, T, A]`, states `[B, T, S]`.

        Returns:
            `[B, T, HW, D]` layer-normed predictions of frames 1..T (output t from frames <= t).
        """
        z_next = self.predictor(z, actions, self._states(states))
        return self._norm(z_next)

    def rollout(self, z0: Tensor, actions: Tensor, states: Tensor | None = None) -> Tensor:
        """Autoregressive rollout that feeds its own predictions back (key/value cached, exact).

        Leading batch dims broadcast: z0 `[E, 1, T0, HW, D]` with actions `[E, S, L, A]` rolls out E*S sequences in
        one batched call per step.

        Args:
            z0: `[*batch, T0, HW, D]` context latents (T0 = 1: the current frame).
            actions: `[*batch, L, A]` with L = T0 - 1 + H: the T0 - 1 actions between context frames, then the H
                actions to roll out.
            states: `[*batch, T0, S]` context states (later ones filled by `state_update`) or `[*batch, >= L, S]`
                states of every input frame (the first L are used); ignored when the model has no state token.

        Returns:
            `[*batch, H, HW, D]` predicted latents of the H future frames.
        """
        T0, L = z0.shape[-3], actions.shape[-2]
        H = L - T0 + 1
        if H < 1:
            raise ValueError(f"actions has {L} steps but {T0} context frames need at least {T0} (T0 - 1 + H)")
        states = self._states(states)
        shapes = [z0.shape[:-3], actions.shape[:-2]] + ([] if states is None else [states.shape[:-2]])
        batch = torch.broadcast_shapes(*shapes)
        z = z0.expand(*batch, *z0.shape[-3:]).flatten(0, len(batch) - 1) if batch else z0[None]
        a = actions.expand(*batch, *actions.shape[-2:]).reshape(-1, *actions.shape[-2:])
        if isinstance(self.predictor, ResidualMlpDynamics) and states is None and T0 == 1:
            # Markov: no cache, no per-step bookkeeping (the planner's hot loop); the same numbers as the loop below.
            check_shape(z, (z.shape[0], 1, 1, self.predictor.embed_dim), "z0 of a pooled model")
            out = self.predictor.rollout(z[:, 0, 0], a, norm=self._norm)  # [N, H, D]
            return out.reshape(*batch, H, *z0.shape[-2:])
        s = None
        if states is not None:
            if states.shape[-2] != T0 and states.shape[-2] < L:
                raise ValueError(f"states must have {T0} (context) or >= {L} steps, got {tuple(states.shape)}")
            s = states.expand(*batch, *states.shape[-2:]).reshape(-1, *states.shape[-2:])

        cache, outs = RolloutCache(), []
        for _ in range(H):
            f0, n = cache.num_frames, z.shape[1]  # frames seen, frames fed now
            if s is not None and s.shape[1] < f0 + n:
                s = torch.cat([s, self._next_state(s[:, -1:], a[:, f0 - 1 : f0])], dim=1)
            s_k = None if s is None else s[:, f0 : f0 + n]
            y = self.predictor(z, a[:, f0 : f0 + n], s_k, cache=cache)[:, -1:]  # [N, 1, HW, D]
            z = self._norm(y)
            outs.append(z)
        return torch.cat(outs, dim=1).reshape(*batch, H, *z0.shape[-2:])

    def step(self, z: Tensor, action: Tensor) -> Tensor:
        """One step from a single latent: z `[N, HW, D]`, action `[N, A]` -> next latent `[N, HW, D]`.

        Exact for Markov dynamics (`ResidualMlpDynamics`, the Two-Rooms recipes); an `ActionConditionedPredictor`
        sees only the current frame here (no history), so prefer `rollout` over a known action sequence with it.
        Differentiable in `z` and `action` (policies backpropagate through the frozen dynamics).
        """
        if z.ndim != 3 or action.ndim != 2 or action.shape[0] != z.shape[0]:
            shapes = f"{tuple(z.shape)} and {tuple(action.shape)}"
            raise ValueError(f"step needs z [N, HW, D] and action [N, A], got {shapes}")
        return self.rollout(z[:, None], action[:, None].to(z.dtype))[:, 0]

    def _next_state(self, s: Tensor, a: Tensor) -> Tensor:
        if callable(self.state_update):
            return self.state_update(s, a)
        return s + a if self.state_update == "add" else s

    # -- training -----------------------------------------------------------------------------------------------------
    def forward(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Teacher forcing + rollout loss, plus the loss terms when the encoder trains.

        Args:
            batch: {"x": `[B, T, 3, H, W]` (or "tokens": precomputed frozen features `[B, T, N, D]`), "actions":
                `[B, T-1, A]`, optional "states": `[B, T, S]`}.

        Returns:
            (loss, metrics): "loss", "loss_tf", "loss_rollout", "rollout_err_{k}" (L1 at step k), "latent_std", and
            each term's metric ("loss_var", "loss_cov", "loss_smooth", "loss_idm").
        """
        cached = "tokens" in batch
        x, actions = batch["tokens"] if cached else batch["x"], batch["actions"]
        if x.ndim != (4 if cached else 5) or x.shape[1] < 2:
            want = "tokens'] must be [B, T >= 2, N, D]" if cached else "x'] must be [B, T >= 2, C, H, W]"
            raise ValueError(f"batch['{want}, got {tuple(x.shape)}")
        B, T = x.shape[:2]
        check_shape(actions, (B, T - 1, self.predictor.action_dim), "batch['actions']")
        states = self._states(batch.get("states"))
        if self.predictor.state_dim:
            check_shape(states, (B, T, self.predictor.state_dim), "batch['states']")

        z = self.encode(x, tokens=cached)  # [B, T, HW, D]; with grad only in joint training
        h = z.detach() if self.freeze_encoder else z  # targets; PLDM backpropagates into them when joint
        metrics: dict[str, Tensor] = {}
        z_tf = self.predict(z[:, :-1], actions, None if states is None else states[:, :-1])  # [B, T-1, HW, D]
        loss_tf = jepa_loss(z_tf, h[:, 1:], kind=self.loss_kind)
        loss = self.tf_weight * loss_tf
        metrics["loss_tf"] = loss_tf.detach()

        R = min(self.rollout_steps, T - 1)
        if R > 0:
            s_r = None if states is None else states[:, :R]
            z_ar = self.rollout(z[:, :1], actions[:, :R], s_r)  # [B, R, HW, D]
            loss_ar = jepa_loss(z_ar, h[:, 1 : R + 1], kind=self.loss_kind)
            loss = loss + self.rollout_weight * loss_ar
            metrics["loss_rollout"] = loss_ar.detach()
            per_step = (z_ar - h[:, 1 : R + 1]).detach().abs().flatten(2).mean(dim=(0, 2))  # [R]
            metrics.update({f"rollout_err_{i + 1}": e for i, e in enumerate(per_step)})

        for term in self.terms:  # anti-collapse terms of joint training; none when the encoder is frozen
            term_loss, term_metrics = term(z, actions)
            loss = loss + term_loss
            metrics.update(term_metrics)
        metrics["loss"] = loss.detach()
        metrics["latent_std"] = feature_std(h.detach())
        return loss, metrics
