"""The JEPA objective: context encoder + EMA target encoder + mask predictor.

References:
    Assran et al. 2023 (I-JEPA); Bardes et al. 2024 (V-JEPA).

Batch:
    x `[B, 3, H, W]` or `[B, 3, T, H, W]`; masks: a list of `MaskSet`, one per mask config (I-JEPA: one config with
    M = 4 target blocks; V-JEPA: two configs, each with its own mask token and its own encoder/predictor pass).

The target encoder embeds the whole input once per batch, without gradient; its output is layer-normed (no affine)
and gathered at the target indices. The loss averages over mask configs. The EMA update of the target encoder is
the training loop's job (once per optimizer step).

Optional variance-covariance regularisation (VJ-VCR, Drozdov et al. 2024): VICReg's variance and covariance terms on
the context encoder's output tokens `[B * Kc, D]`, added with weights `var_weight` / `cov_weight` (0 = off, the
I-JEPA / V-JEPA objective). It keeps token features from collapsing onto one direction, which short runs on small
data otherwise do (docs/notes/probes.md, "Frozen probes").
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from jepa_world.models.layers import apply_masks
from jepa_world.models.predictor import MaskPredictor
from jepa_world.models.vit import VisionTransformer
from jepa_world.objectives.losses import (
    collapse_metrics,
    covariance_loss,
    feature_std,
    jepa_loss,
    layer_norm_targets,
    variance_loss,
)


class JEPA(nn.Module):
    """I-JEPA / V-JEPA model: `forward(batch) -> (loss, metrics)`.

    Args:
        encoder: context encoder (trained by gradient).
        predictor: mask predictor with one mask token per mask config.
        loss: "smooth_l1" (I-JEPA) or "l1" (V-JEPA).
        target_encoder: EMA copy of the encoder; a deep copy of `encoder` when omitted.
        var_weight: weight of the VICReg variance term on the context tokens (0: off).
        cov_weight: weight of the VICReg covariance term on the context tokens (0: off).
    """

    def __init__(
        self,
        *,
        encoder: VisionTransformer,
        predictor: MaskPredictor,
        loss: str = "smooth_l1",
        target_encoder: VisionTransformer | None = None,
        var_weight: float = 0.0,
        cov_weight: float = 0.0,
    ):
        super().__init__()
        self.config = dict(loss=loss, var_weight=var_weight, cov_weight=cov_weight)  # encoder / predictor: their own
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = target_encoder if target_encoder is not None else copy.deepcopy(encoder)
        self.target_encoder.requires_grad_(False)
        self.loss_kind = loss
        for name, weight in (("var_weight", var_weight), ("cov_weight", cov_weight)):
            if weight < 0:
                raise ValueError(f"{name} must be >= 0, got {weight}")
        self.var_weight, self.cov_weight = float(var_weight), float(cov_weight)
        jepa_loss(torch.zeros(1), torch.zeros(1), kind=loss)  # fail at construction on an unknown loss name

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Compute the JEPA loss for one batch.

        Args:
            batch: {"x": input, "masks": list of `MaskSet` (`objectives.masks`), optional "diagnostics": bool}.

        Returns:
            (loss, metrics) with scalar tensors; metrics has "loss", "loss_mask{i}" per mask config and "target_std".
        """
        x, masks = batch["x"], batch["masks"]
        if not masks:
            raise ValueError("batch['masks'] is empty: JEPA needs at least one mask config")
        grid = self.encoder.token_grid(self.encoder._as_input(x))

        with torch.no_grad():
            h = layer_norm_targets(self.target_encoder(x))  # [B, N, D]

        metrics: dict[str, torch.Tensor] = {}
        losses = []
        for i, m in enumerate(masks):
            z = self.encoder(x, m.context_idx)  # [B, Kc, D]
            reg = self._regulariser(z, metrics, suffix=f"_mask{i}")
            z = self.predictor(z, m.context_idx, m.target_idx, mask_index=i, grid_size=grid)  # [B, M, Kt, D]
            pred_loss = jepa_loss(z, apply_masks(h, m.target_idx), kind=self.loss_kind)
            metrics[f"loss_mask{i}"] = pred_loss.detach()
            losses.append(pred_loss + reg)
        loss = torch.stack(losses).mean()
        metrics["loss"] = loss.detach()
        metrics["target_std"] = feature_std(h)
        if batch.get("diagnostics"):
            # Effective rank needs an SVD: only on logging steps.
            metrics.update({f"target_{k}": v for k, v in collapse_metrics(h).items()})
        return loss, metrics

    def _regulariser(self, z: torch.Tensor, metrics: dict[str, torch.Tensor], *, suffix: str) -> torch.Tensor:
        """Weighted VICReg variance + covariance of the context tokens `z` `[B, Kc, D]` (0 when both weights are 0)."""
        if not (self.var_weight or self.cov_weight):
            return z.new_zeros(())
        tokens = z.float().flatten(0, -2)  # [B * Kc, D]
        var, cov = variance_loss(tokens), covariance_loss(tokens)
        metrics[f"var_loss{suffix}"], metrics[f"cov_loss{suffix}"] = var.detach(), cov.detach()
        return self.var_weight * var + self.cov_weight * cov
