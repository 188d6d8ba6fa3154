"""The JEPA objective: context encoder + EMA target encoder + mask predictor.

References:
    Assran et al. 2023 (I-JEPA); Bardes et al. 2024 (V-JEPA).

Batch:
    x `[B, 3, H, W]` or `[B, 3, T, H, W]`; masks: a list of `MaskSet`, one per mask config (I-JEPA: one config with
    M = 4 target blocks; V-JEPA: two configs, each with its own mask token and its own encoder/predictor pass).

The target encoder embeds the whole input once per batch, without gradient; its output is layer-normed (no affine)
and gathered at the target indices. The loss averages over mask configs. The EMA update of the target encoder is
the training loop's job (once per optimizer step).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from jepa_world.losses import collapse_diagnostics, feature_std, jepa_loss, layer_norm_targets
from jepa_world.masks import MaskSet, apply_masks
from jepa_world.models.predictor import MaskPredictor
from jepa_world.models.vit import VisionTransformer


class JEPA(nn.Module):
    """I-JEPA / V-JEPA model: `forward(batch) -> (loss, metrics)`.

    Args:
        encoder: context encoder (trained by gradient).
        predictor: mask predictor with one mask token per mask config.
        loss: "smooth_l1" (I-JEPA) or "l1" (V-JEPA).
        target_encoder: EMA copy of the encoder; a deep copy of `encoder` when omitted.
    """

    def __init__(
        self,
        *,
        encoder: VisionTransformer,
        predictor: MaskPredictor,
        loss: str = "smooth_l1",
        target_encoder: VisionTransformer | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor
        self.target_encoder = target_encoder if target_encoder is not None else copy.deepcopy(encoder)
        self.target_encoder.requires_grad_(False)
        self.loss_kind = loss
        jepa_loss(torch.zeros(1), torch.zeros(1), kind=loss)  # fail at construction on an unknown loss name

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Compute the JEPA loss for one batch.

        Args:
            batch: {"x": input, "masks": list[MaskSet], optional "diagnostics": bool (add effective rank etc.)}.

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
            m: MaskSet
            z = self.encoder(x, m.context_idx)  # [B, Kc, D]
            z = self.predictor(z, m.context_idx, m.target_idx, mask_index=i, grid_size=grid)  # [B, M, Kt, D]
            losses.append(jepa_loss(z, apply_masks(h, m.target_idx), kind=self.loss_kind))
            metrics[f"loss_mask{i}"] = losses[-1].detach()
        loss = torch.stack(losses).mean()
        metrics["loss"] = loss.detach()
        metrics["target_std"] = feature_std(h)
        if batch.get("diagnostics"):
            # Effective rank needs an SVD: only on logging steps.
            metrics.update(
                {f"target_{k}": torch.tensor(v, device=h.device) for k, v in collapse_diagnostics(h).items()}
            )
        return loss, metrics
