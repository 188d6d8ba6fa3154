"""Planning speed: ms per CEM replan on a Two-Rooms world model, one episode alone and 50 batched, 1 vs 2 threads.

    python scripts/bench_plan_speed.py --checkpoint runs/bench_planning/joint_seed0/wm

A replan is what `WorldModelAgent` does before acting: encode the current and goal frames, then CEM (the Two-Rooms
settings: 100 samples x 4 iterations x horizon 40, `PlannerSettings` defaults) over `WorldModel.rollout`. The thread
counts are timed side by side, alternating within each round (the machine's noise is bursty). The table also gives
the FLOPs of one replan's rollouts and the fp32 matmul rate measured in the same run: together they bound what any
implementation of this math can reach on the machine (the compute floor printed in the title).
Recorded in docs/benchmarks.md ("Planning speed").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from jepa_world.checkpoints.world_model import load_world_model
from jepa_world.config import PlannerSettings
from jepa_world.envs.geometry import MAX_ACTION_NORM
from jepa_world.envs.two_rooms import TwoRoomsEnv
from jepa_world.eval.agents import encode_pixels, render_batch
from jepa_world.eval.protocol import eval_pairs
from jepa_world.planning import make_planner
from jepa_world.planning.costs import rollout_cost


def _matmul_gflops() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(5):
        tic = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - tic)
    return 2 * 1024**3 / best / 1e9


def _rollout_flops(model, settings: PlannerSettings) -> float:
    p = model.predictor
    hidden, depth = p.inp.out_features, len(p.blocks)
    macs = p.inp.in_features * hidden + depth * 2 * hidden * hidden + hidden * p.embed_dim
    return 2.0 * macs * settings.samples * settings.horizon * settings.iterations


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a train-wm run with a residual-MLP predictor (Two-Rooms)")
    p.add_argument("--threads", default="1,2", help="thread counts to compare (default 1,2; plan.threads: 1)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--batched", type=int, default=50, help="episodes of the batched replan (default 50)")
    args = p.parse_args()
    variants = [int(t) for t in args.threads.split(",")]
    model = load_world_model(Path(args.checkpoint)).eval()
    settings = PlannerSettings()
    planner = make_planner(settings, action_dim=2, max_norm=MAX_ACTION_NORM, low=-MAX_ACTION_NORM, high=MAX_ACTION_NORM)
    env = TwoRoomsEnv()
    pairs = eval_pairs(env, args.batched, seed=0)  # [E, 2, 2] start / goal states
    frames = render_batch(env, pairs[:, 0]), render_batch(env, pairs[:, 1])
    gen = torch.Generator().manual_seed(0)

    def replan(n: int) -> float:
        tic = time.perf_counter()
        with torch.no_grad():
            z, zg = encode_pixels(model, frames[0][:n]), encode_pixels(model, frames[1][:n])
            planner.plan(rollout_cost(model, z, zg[:, 0], reduce="last+mean"), num_envs=n, generator=gen)
        return time.perf_counter() - tic

    times = {(t, n): [] for t in variants for n in (1, args.batched)}
    peak = {t: [] for t in variants}
    for t in variants:  # warm-up
        torch.set_num_threads(t)
        replan(1), replan(args.batched)
    for _ in range(args.rounds):
        for t in variants:
            torch.set_num_threads(t)
            times[(t, 1)] += [replan(1) for _ in range(10)]
            times[(t, args.batched)].append(replan(args.batched))
            peak[t].append(_matmul_gflops())
    flops = _rollout_flops(model, settings)
    print(
        f"CEM replan, {settings.samples} samples x {settings.iterations} iterations x horizon {settings.horizon}: "
        f"{flops / 1e9:.2f} GFLOP of rollouts per episode; compute floor = that / the matmul peak of the same run"
    )
    rows = []
    for t in variants:
        one, many, top = np.median(times[(t, 1)]), np.median(times[(t, args.batched)]), max(peak[t])
        rows.append({
            "threads": str(t),
            "ms per replan, 1 episode": f"{1e3 * one:.1f}",
            f"ms per episode, {args.batched} batched": f"{1e3 * many / args.batched:.1f}",
            "matmul peak GFLOP/s": f"{top:.0f}",
            "compute floor ms": f"{1e3 * flops / top / 1e9:.1f}",
            "rollout GFLOP/s, 1 episode": f"{flops / one / 1e9:.1f}",
        })  # fmt: skip
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main()
