"""Planning speed: ms per CEM replan on Two-Rooms world models, one episode alone and 50 batched, variants side by side.

    python scripts/bench_plan_speed.py --checkpoint runs/bench_planning/jepa-video_seed0/wm
    python scripts/bench_plan_speed.py --checkpoint h128=RUN_A --checkpoint h32=RUN_B --compile off,on --threads 1,2

A replan is what `WorldModelAgent` does before acting: encode the current frame (the goal's latent is encoded once
per episode and kept), then CEM with the Two-Rooms settings (100 samples x 4 iterations x horizon 40,
`PlannerSettings` defaults) over `WorldModel.rollout`, the latent L1 cost reduced as "last+mean". A variant is one
(checkpoint, torch threads, compiled rollout or not); the variants are timed in turn within each round (the machine's
noise is bursty), after an untimed warm-up that also compiles (its seconds are printed). The table gives the
FLOPs of one episode's rollouts per replan and the fp32 matmul rate measured in the same rounds: together they bound
what any implementation of this math can reach on this machine (the compute floor). Recorded in
docs/notes/planning-speed.md ("Planning speed").
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
from jepa_world.planning.costs import compile_rollout, rollout_cost


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
    p.add_argument("--checkpoint", action="append", required=True, metavar="[NAME=]RUN",
                   help="a train-wm run with a residual-MLP predictor (Two-Rooms); repeat to compare")  # fmt: skip
    p.add_argument("--threads", default="1", help="thread counts to compare (default 1, as plan.threads)")
    p.add_argument("--compile", default="off", help="off, on, or off,on: the rollout through torch.compile")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--batched", type=int, default=50, help="episodes of the batched replan (default 50)")
    args = p.parse_args()
    compiles = [{"off": False, "on": True}[c.strip()] for c in args.compile.split(",")]
    settings = PlannerSettings()
    planner = make_planner(settings, action_dim=2, max_norm=MAX_ACTION_NORM, low=-MAX_ACTION_NORM, high=MAX_ACTION_NORM)
    env = TwoRoomsEnv()
    pairs = eval_pairs(env, args.batched, seed=0)  # [E, 2, 2] start / goal states
    frames, goals = render_batch(env, pairs[:, 0]), render_batch(env, pairs[:, 1])
    gen = torch.Generator().manual_seed(0)

    variants = []
    for spec in args.checkpoint:
        name, _, run = spec.rpartition("=")
        model = load_world_model(Path(run)).eval()
        name = name or Path(run).parent.name
        with torch.no_grad():
            z_goal = encode_pixels(model, goals)  # once per episode, as the agent does
        for compiled in compiles:
            rolls = model
            if compiled:
                rolls = compile_rollout(model)
            for t in (int(t) for t in args.threads.split(",")):
                label = f"{name}, {t} thread{'s' * (t > 1)}" + (", compiled" if compiled else "")
                variants.append({"label": label, "model": model, "rolls": rolls, "z_goal": z_goal, "threads": t})

    def replan(v: dict, n: int) -> tuple[float, float]:
        torch.set_num_threads(v["threads"])
        tic = time.perf_counter()
        with torch.no_grad():
            z = encode_pixels(v["model"], frames[:n])
            mid = time.perf_counter()
            cost = rollout_cost(v["rolls"], z, v["z_goal"][:n, 0], reduce="last+mean")
            planner.plan(cost, num_envs=n, generator=gen)
        end = time.perf_counter()
        return end - tic, mid - tic

    for v in variants:  # warm-up; compiles the compiled variants for both shapes
        tic = time.perf_counter()
        replan(v, 1), replan(v, args.batched)
        v["warmup_s"], v["one"], v["enc"], v["many"] = time.perf_counter() - tic, [], [], []
        print(f"{v['label']}: warm-up {v['warmup_s']:.1f} s", flush=True)
    peak = []
    for r in range(args.rounds):
        for v in variants:
            ts = [replan(v, 1) for _ in range(10)]
            v["one"] += [t for t, _ in ts]
            v["enc"] += [e for _, e in ts]
            v["many"].append(replan(v, args.batched)[0])
        torch.set_num_threads(1)
        peak.append(_matmul_gflops())
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    top = max(peak)
    budget = f"{settings.samples} samples x {settings.iterations} iterations x horizon {settings.horizon}"
    print(f"\nCEM replan, {budget}; 1-thread fp32 matmul peak {top:.0f} GFLOP/s (best of the rounds); medians over "
          f"{args.rounds} rounds")  # fmt: skip
    rows = []
    for v in variants:
        flops = _rollout_flops(v["model"], settings)
        one, enc, many = np.median(v["one"]), np.median(v["enc"]), np.median(v["many"])
        rows.append({
            "variant": v["label"],
            "ms per replan, 1 episode": f"{1e3 * one:.1f}",
            "of which encode": f"{1e3 * enc:.1f}",
            f"ms per episode, {args.batched} batched": f"{1e3 * many / args.batched:.1f}",
            "GFLOP per episode": f"{flops / 1e9:.2f}",
            "compute floor ms": f"{1e3 * flops / top / 1e9:.1f}",
            "warm-up s": f"{v['warmup_s']:.0f}",
        })  # fmt: skip
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")


if __name__ == "__main__":
    main()
