"""Planning benchmark on Two-Rooms: train a world model for a fixed CPU budget, then run the `plan` protocol.

    python scripts/bench_plan.py --minutes 8 --episodes 50 --output runs/bench_plan

Training stops at the time budget (a SIGTERM to this process, which the training loop turns into a graceful stop
with a checkpoint) or at --max-steps, whichever comes first. Protocol: start and goal in opposite rooms, 200 steps,
success = final distance < 4.5 px, the learned planner sees pixels only. Writes the table to stdout and
<output>/plan/{results.json,episodes.gif,landscape.png}. Results are recorded in docs/benchmarks_plan.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path

import torch

from jepa_world.config import load_config
from jepa_world.control import PlannerSettings, run_plan_benchmark
from jepa_world.train import train_world_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=8.0, help="training wall-time budget (default 8)")
    p.add_argument("--max-steps", type=int, default=800, help="training steps if the budget is not hit first")
    p.add_argument("--episodes", type=int, default=50, help="evaluation episodes per agent (default 50)")
    p.add_argument("--output", default="runs/bench_plan", help="run folder (default runs/bench_plan)")
    p.add_argument(
        "--config", action="append", default=[], help="train-wm recipe, e.g. configs/world_model/two_rooms.yaml"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 was fastest on the loaded 2-core CPU)")
    p.add_argument("--planner", choices=("cem", "mppi"), default="cem")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--horizon", type=int, default=40)
    p.add_argument("--replan-every", type=int, default=4)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="train-wm config overrides")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    run = Path(args.output)
    overrides = [f"train.output_dir={run / 'wm'}", f"train.max_steps={args.max_steps}", f"seed={args.seed}",
                 "train.progress=false", "train.tensorboard=false", *args.overrides]  # fmt: skip
    cfg = load_config(args.config, overrides, command="train-wm")
    timer = threading.Timer(60.0 * args.minutes, lambda: os.kill(os.getpid(), signal.SIGTERM))
    tic = time.perf_counter()
    timer.start()
    try:
        summary = train_world_model(cfg)
    finally:
        timer.cancel()
    train_s = time.perf_counter() - tic
    m = summary["metrics"]
    std, err = m.get("latent_std", float("nan")), m.get("rollout_err_4", float("nan"))
    print(f"trained {summary['step']} steps in {train_s / 60:.1f} min; latent_std {std:.4g}, rollout_err_4 {err:.4g}")

    settings = PlannerSettings(planner=args.planner, samples=args.samples, iterations=args.iterations,
                               horizon=args.horizon, replan_every=args.replan_every)  # fmt: skip
    tic = time.perf_counter()
    result = run_plan_benchmark(run / "wm", episodes=args.episodes, settings=settings, seed=args.seed,
                                output=run / "plan", num_threads=args.threads)  # fmt: skip
    print(result["table"])
    print(f"plan evaluation: {(time.perf_counter() - tic) / 60:.1f} min; train {train_s / 60:.1f} min")


if __name__ == "__main__":
    main()
