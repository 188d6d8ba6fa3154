"""Shared fixtures: tiny model sizes so every test runs in seconds on 2 CPU cores."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MKL_DYNAMIC", "FALSE")  # reproducible CPU BLAS (see jepa_world/__init__.py), before torch

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def python_exe() -> str:
    return sys.executable


def tiny_overrides(tmp_path: Path, **extra) -> list[str]:
    """Config overrides for a seconds-long CPU run."""
    base = {
        "train.output_dir": str(tmp_path / "run"),
        "train.max_steps": 4,
        "train.batch_size": 4,
        "train.log_every": 1,
        "train.ckpt_every": 2,
        "train.progress": False,
        "train.tensorboard": False,
        "model.name": "vit_nano",
        "model.depth": 2,
        "predictor.depth": 1,
        "data.image_size": 32,
        "data.num_frames": 4,
        "data.num_samples": 64,
        "optim.warmup_steps": 1,
        # The releases' objective: its loss is a mean over samples, so accumulation and process-count equivalence
        # hold exactly (the default's VICReg terms use each micro-batch's statistics); tests of VICReg set weights.
        "var_weight": 0.0,
        "cov_weight": 0.0,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
