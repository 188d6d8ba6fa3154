"""Our planner beside stable-worldmodel's CEM solver, on the same world model and the same pairs, in one run.

    python scripts/bench_field_solver.py --checkpoint RUN --pairs-json RUN_DIR/plan_swm/pairs.json --pairs 10

Both plan at the papers' setting (configs/plan/swm_cem.yaml: CEM 300 samples x 30 iterations, top 30, horizon 5
blocks, all executed before the next solve: 2 solves per 50-step episode) with the same latent cost (the last predicted
latent's mean L1 distance to the goal's), from the same start rows to the same goals (the swm protocol's pairs of a
`plan` or `bench_field.py` run): ours through `jepa-world plan` (`eval.plan_benchmark`), theirs through their
`World.evaluate` + `WorldModelPolicy` + `CEMSolver` (`eval.swm_harness`). The two alternate `--rounds` times; each row
gives success and wall seconds per episode, setup included (loading the model and drawing the pairs for ours,
building their vectorised World for theirs: use enough pairs to amortise it); both step their envs on this CPU. Rows
go to `--results`.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import OmegaConf
from results import append_rows  # scripts/results.py: this script's folder is on sys.path

from jepa_world.checkpoints.world_model import load_world_model_run
from jepa_world.config import PlanConfig
from jepa_world.eval.plan_benchmark import run_plan_benchmark
from jepa_world.eval.swm_harness import SwmEpisodes, evaluate_with_swm
from jepa_world.training.tasks import episodes_of

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a train-wm run trained on swm episodes")
    p.add_argument("--pairs-json", required=True, help="pairs.json of a plan run with plan.protocol=swm")
    p.add_argument("--pairs", type=int, default=10, help="the first N pairs of the file (default 10)")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds of both planners (default 1)")
    p.add_argument("--plan-config", default=str(ROOT / "configs" / "plan" / "swm_cem.yaml"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=str(ROOT / "docs" / "results" / "bench_field_solver.csv"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = load_world_model_run(args.checkpoint)
    root = episodes_of(run.config)
    saved = json.loads(Path(args.pairs_json).read_text())
    proto, pairs = saved["protocol"], saved["pairs"][: args.pairs]
    env_id = proto["env_id"]
    episodes = [int(re.search(r"(\d+)", pair["episode"]).group(1)) for pair in pairs]
    starts = [int(pair["row"]) for pair in pairs]
    plan_file = OmegaConf.load(args.plan_config).get("plan", {})
    plan_file = {k: v for k, v in dict(plan_file).items() if k != "protocol"}
    plan = replace(PlanConfig(), **plan_file, env=env_id, protocol="swm", pairs=len(pairs),
                   pair_seed=proto["pair_seed"], offset=proto["offset"], budget=proto["budget"], baselines=False,
                   threads=args.threads)  # fmt: skip
    solver = {"num_samples": plan.samples, "n_steps": plan.iterations, "topk": plan.elites, "horizon": plan.horizon,
              "receding_horizon": plan.replan_every, "var_scale": plan.init_std}  # fmt: skip
    rows = []
    for r in range(args.rounds):
        tic = time.perf_counter()
        ours = run_plan_benchmark(args.checkpoint, plan=plan, seed=0, log=None)
        ours_s = time.perf_counter() - tic
        learned = ours["results"][0]
        tic = time.perf_counter()
        theirs = evaluate_with_swm(run.model, env_id=env_id, dataset=SwmEpisodes(root), episodes_idx=episodes,
                                   start_steps=starts, goal_offset=proto["offset"], eval_budget=proto["budget"],
                                   solver=solver, reduce="last")  # fmt: skip
        theirs_s = time.perf_counter() - tic
        n = len(pairs)
        print(f"round {r}: ours {100 * learned['success_rate']:.0f}% in {ours_s / n:.2f} s per episode; "
              f"stable-worldmodel's CEM {100 * theirs['success_rate']:.0f}% in {theirs_s / n:.2f} s per episode "
              f"(ratio {theirs_s / ours_s:.2f}x)", flush=True)  # fmt: skip
        for name, rate, secs in (("jepa_world CEM", learned["success_rate"], ours_s),
                                 ("stable-worldmodel CEMSolver", theirs["success_rate"], theirs_s)):  # fmt: skip
            rows.append({"task": f"{env_id} (swm, solver)", "encoder": name, "recipe": Path(args.checkpoint).name,
                         "pair_seed": proto["pair_seed"], "success": rate,
                         "extra": {"pairs": n, "s_per_episode": round(secs / n, 3), "round": r,
                                   "threads": args.threads}})  # fmt: skip
    if args.results:
        append_rows(args.results, rows)


if __name__ == "__main__":
    main()
