"""Planning benchmark on Two-Rooms: the whole pipeline (collect, train, plan) under the strict protocol.

    python scripts/bench_planning.py                                  # 3 seeds x 50 episodes (the recorded run)
    python scripts/bench_planning.py --seeds 0 --episodes 10 --train-steps 300 --collect-episodes 500   # smoke

1. Collect `--collect-episodes` random-walk episodes of 16 steps once (`jepa-world collect`, von Mises headings).
2. For each training seed: `jepa-world train-wm --config configs/world_model/two_rooms.yaml` (plus overrides), then
   plan on the same 50 start / goal pairs (`jepa-world plan`): start and goal in opposite rooms, 200 steps, success =
   final distance < 4.5 px; the learned agent sees pixels only and never queries the simulator.
3. Random, no-op, straight line and CEM on the true simulator (ceiling) run once on the same pairs.

Prints one table per seed, then the summary (mean +- std over seeds) with the wall times of every stage; writes
`<output>/summary.json` and each seed's `plan/{results.json,episodes.gif,landscape.png}`. Recorded in
docs/benchmarks.md (section "Planning").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from jepa_world.config import PlannerSettings, load_config
from jepa_world.envs.collect import collect_episodes
from jepa_world.eval.plan_benchmark import run_plan_benchmark
from jepa_world.eval.protocol import format_table
from jepa_world.training import train_world_model

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "world_model" / "two_rooms.yaml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    p.add_argument("--episodes", type=int, default=50, help="evaluation episodes per agent and seed (default 50)")
    p.add_argument("--collect-episodes", type=int, default=4000, help="training episodes to collect (default 4000)")
    p.add_argument("--train-steps", type=int, default=None, help="override train.max_steps of the recipe")
    p.add_argument("--output", default="runs/bench_planning", help="run folder (default runs/bench_planning)")
    p.add_argument("--config", default=str(RECIPE), help="train-wm recipe (default configs/world_model/two_rooms.yaml)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on the shared 2-core CPU)")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--horizon", type=int, default=40)
    p.add_argument("--replan-every", type=int, default=4)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="train-wm config overrides")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    out = Path(args.output)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    times: dict[str, float] = {}

    episodes_dir = out / "episodes"
    tic = time.perf_counter()
    if not (episodes_dir / "metadata.json").exists():
        collect_episodes(env_name="two_rooms", num_episodes=args.collect_episodes, steps=16, output_dir=episodes_dir,
                         seed=12345, progress=False)  # fmt: skip
    times["collect_s"] = time.perf_counter() - tic
    print(f"collect: {args.collect_episodes} episodes in {times['collect_s']:.0f} s")

    settings = PlannerSettings(samples=args.samples, iterations=args.iterations, horizon=args.horizon,
                               replan_every=args.replan_every)  # fmt: skip
    per_seed, learned_rows, baselines = [], [], None
    for i, seed in enumerate(seeds):
        run = out / f"seed{seed}"
        overrides = [f"seed={seed}", f"wm.episodes={episodes_dir}", f"train.output_dir={run / 'wm'}",
                     "train.progress=false", "train.tensorboard=false", *args.overrides]  # fmt: skip
        if args.train_steps is not None:
            overrides.append(f"train.max_steps={args.train_steps}")
        cfg = load_config([args.config], overrides, command="train-wm")
        tic = time.perf_counter()
        summary = train_world_model(cfg)
        train_s = time.perf_counter() - tic
        tic = time.perf_counter()
        # The same pairs (seed 0) for every training seed; baselines and the simulator ceiling once.
        result = run_plan_benchmark(run / "wm", episodes=args.episodes, settings=settings, seed=0,
                                    output=run / "plan", baselines=i == 0, simulator_ceiling=i == 0,
                                    num_threads=args.threads)  # fmt: skip
        plan_s = time.perf_counter() - tic
        print(result["table"])
        learned = result["results"][0]
        learned_rows.append(learned)
        per_seed.append({"seed": seed, "steps": summary["step"], "train_s": train_s, "plan_s": plan_s,
                         "success_rate": learned["success_rate"], "mean_final_distance": learned["mean_final_distance"],
                         "ms_per_replan_batched": learned["ms_per_replan_batched"]})  # fmt: skip
        if i == 0:
            baselines = result["results"][1:]
        print(f"seed {seed}: {summary['step']} steps, train {train_s / 60:.1f} min, plan {plan_s / 60:.1f} min, "
              f"success {100 * learned['success_rate']:.0f}%")  # fmt: skip

    rates = np.array([r["success_rate"] for r in per_seed])
    rows = [{"name": f"world model + CEM ({len(seeds)} seeds pooled)", "success_rate": float(rates.mean()),
             "success": [ok for r in learned_rows for ok in r["success"]],
             "mean_final_distance": float(np.mean([r["mean_final_distance"] for r in learned_rows])),
             "ms_per_step": float(np.mean([r["ms_per_step"] for r in learned_rows])),
             "ms_per_replan_batched": float(np.mean([r["ms_per_replan_batched"] for r in learned_rows])),
             "num_plans": sum(r["num_plans"] for r in learned_rows)}]  # fmt: skip
    replan = rows[0]["ms_per_replan_batched"]
    rows += baselines or []
    title = (f"two_rooms: {len(seeds)} training seeds x {args.episodes} episodes (same pairs), 200 steps, success = "
             "final distance < 4.5 px, start/goal in opposite rooms")  # fmt: skip
    print(format_table(rows, title=title))
    print("per seed success: " + ", ".join(f"{100 * r:.0f}%" for r in rates)
          + f" (mean {100 * rates.mean():.1f} +- {100 * rates.std():.1f})")  # fmt: skip
    episodes_per_replan = args.episodes
    print(f"replan: {replan:.0f} ms for {episodes_per_replan} episodes batched = "
          f"{replan / episodes_per_replan:.1f} ms per episode")  # fmt: skip
    total = times["collect_s"] + sum(r["train_s"] + r["plan_s"] for r in per_seed)
    print(f"wall time: collect {times['collect_s']:.0f} s; per seed train "
          + ", ".join(f"{r['train_s'] / 60:.1f}" for r in per_seed) + " min; plan (incl. baselines on the first) "
          + ", ".join(f"{r['plan_s'] / 60:.1f}" for r in per_seed) + f" min; total {total / 60:.1f} min")  # fmt: skip
    (out / "summary.json").write_text(json.dumps(
        {"seeds": per_seed, "baselines": baselines, "times": {**times, "total_s": total},
         "settings": vars(args)}, indent=1, default=str))  # fmt: skip


if __name__ == "__main__":
    main()
