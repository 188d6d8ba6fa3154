"""Models: ViT encoder, mask predictor, JEPA objective (and, later, the action-conditioned dynamics)."""
