"""Benchmark one JEPA training step: samples/s and model FLOP utilisation (MFU) against this machine's fp32 peak.

MFU = model FLOPs per second / measured fp32 matmul peak of the same machine, both measured in the same run.
Model FLOPs are counted, not estimated: one forward + backward step runs under `FlopCounterMode` with the math
SDPA backend (so attention matmuls are counted too); the timed steps use the default (fused) backend. A step is
the full loop body: target encoder, context encoder, predictor, loss, backward, AdamW, EMA.

    python scripts/bench_train.py                  # the default table (ViT-Ti / ViT-S, image and video)
    python scripts/bench_train.py --quick          # small sizes only (a smoke run)
    python scripts/bench_train.py --compare single_pass,fused_adamw,compile   # each case with and without, side by side

With `--compare`, every case is built once per variant (the default, then each option) and the timed steps
alternate between the variants (this machine's noise is bursty); each row gives its speed-up over the default's
s/step of the same run. An option that changes the math (single_pass) also changes the FLOPs it counts; `compile`
(`train.compile=true`) runs untimed warm-up steps first (they compile) and is credited the default's FLOPs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from jepa_world.config import load_config
from jepa_world.factory import build_jepa, build_masks
from jepa_world.objectives.ema import EMA
from jepa_world.objectives.schedules import constant
from jepa_world.training import param_groups

CASES = {
    # name: (overrides, batch)
    "I-JEPA ViT-Ti/16 224px": (["model.name=vit_tiny", "model.patch_size=16", "data.image_size=224",
                                 "data.num_frames=1", "predictor.name=predictor_small", "loss=smooth_l1"], 16),
    "I-JEPA ViT-S/16 224px": (["model.name=vit_small", "model.patch_size=16", "data.image_size=224",
                                "data.num_frames=1", "predictor.name=predictor_small", "loss=smooth_l1"], 16),
    "V-JEPA ViT-Ti/16 16x112px": (["model.name=vit_tiny", "model.patch_size=16", "data.image_size=112",
                                    "data.num_frames=16", "predictor.name=predictor_small"], 8),
    "V-JEPA ViT-S/16 16x112px": (["model.name=vit_small", "model.patch_size=16", "data.image_size=112",
                                   "data.num_frames=16", "predictor.name=predictor_small"], 8),
    "default job (ViT-Ti/8 8x64px)": ([], 16),
}  # fmt: skip
# --compare: options that are off by default
OPTIONS = {
    "single_pass": ["predictor.single_pass=true"],
    "fused_adamw": ["optim.fused=true"],
    "compile": ["train.compile=true"],  # compiled before timing (warm-up steps), same FLOPs as the default
}
WARMUP = 3  # untimed steps of a compiled variant: the first compiles, the next settle the dynamic shapes
QUICK = {
    "I-JEPA ViT-nano/8 64px": (["model.name=vit_nano", "data.image_size=64", "data.num_frames=1"], 16),
    "V-JEPA ViT-nano/8 8x64px": (["model.name=vit_nano"], 8),
}


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best observed fp32 GFLOP/s of an n x n matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def make_step(overrides: list[str], batch: int):
    cfg = load_config([], overrides)
    torch.manual_seed(0)
    model = build_jepa(cfg)
    masks = build_masks(cfg, model.encoder.grid_size)
    fused = True if cfg.optim.fused else None
    opt = torch.optim.AdamW(param_groups([model.encoder, model.predictor]), lr=1e-4, fused=fused)
    ema = EMA(online=model.encoder, target=model.target_encoder, momentum=constant(0.996))
    shape = (batch, 3, cfg.data.num_frames, cfg.data.image_size, cfg.data.image_size)
    x = torch.randn(shape if cfg.data.num_frames > 1 else shape[:2] + shape[3:])
    counter = iter(range(10**9))
    if cfg.train.compile:  # as the training loop does it: in place, dynamic shapes, masks as fresh tensors
        model.compile(dynamic=True)

    def step() -> None:
        step_masks = [m.to("cpu", copy=cfg.train.compile) for m in masks(batch, step=next(counter))]
        loss, _ = model({"x": x, "masks": step_masks})
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(0)

    return step


def count_flops(step) -> float:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def bench(name: str, overrides: list[str], batch: int, steps: int, options: list[str]) -> list[dict]:
    variants = {"default": overrides, **{o: overrides + OPTIONS[o] for o in options}}
    fns = {v: make_step(over, batch) for v, over in variants.items()}
    flops = {v: count_flops(fn) for v, fn in fns.items() if v != "compile"}  # also the warm-up steps
    if "compile" in fns:
        for _ in range(WARMUP):
            fns["compile"]()
        flops["compile"] = flops["default"]  # the same math
    peaks, times = [matmul_peak()], {v: [] for v in fns}
    for _ in range(steps):
        for v, fn in fns.items():  # alternate: each variant sees the same machine
            t = time.perf_counter()
            fn()
            times[v].append(time.perf_counter() - t)
        peaks.append(matmul_peak())
    peak = statistics.median(peaks)
    rows = []
    for v in fns:
        sec = statistics.median(times[v])
        achieved = flops[v] / sec / 1e9
        rows.append({"case": name if v == "default" else f"{name} +{v}", "batch": batch, "s/step": sec,
                     "samples/s": batch / sec, "GFLOP/step": flops[v] / 1e9, "GFLOP/s": achieved,
                     "peak GFLOP/s": peak, "MFU": achieved / peak,
                     "speed-up": statistics.median(times["default"]) / sec})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per case (median reported)")
    parser.add_argument("--only", default=None, help="substring of the case names to run")
    parser.add_argument("--compare", default="", help=f"options timed beside the default: {', '.join(OPTIONS)}")
    args = parser.parse_args()
    options = [o.strip() for o in args.compare.split(",") if o.strip()]
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        parser.error(f"--compare {','.join(unknown)}: expected some of {', '.join(OPTIONS)}")
    cases = QUICK if args.quick else CASES
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32")
    header = f"| {'case':44} | batch | s/step | samples/s | GFLOP/step | GFLOP/s | peak GFLOP/s | MFU | speed-up |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, (overrides, batch) in cases.items():
        if args.only and args.only not in name:
            continue
        for r in bench(name, overrides, batch, args.steps, options):
            print(f"| {r['case']:44} | {r['batch']:5d} | {r['s/step']:6.2f} | {r['samples/s']:9.2f} | "
                  f"{r['GFLOP/step']:10.1f} | {r['GFLOP/s']:7.1f} | {r['peak GFLOP/s']:12.1f} | {r['MFU']:4.0%} | "
                  f"{r['speed-up']:7.2f}x |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
