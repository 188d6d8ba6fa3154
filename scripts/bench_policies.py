"""Acting without a search at every step: policies learned in imagination against CEM, one table on the same pairs.

    python scripts/bench_policies.py                                   # 3 seeds x 50 pairs (the recorded run)
    python scripts/bench_policies.py --seeds 0 --episodes 10 --policy-steps 200 --wm-steps 300   # smoke

For each training seed, on the world model of `scripts/bench_planning.py`'s `joint` pipeline
(`<output>/joint_seed{s}/wm`, trained here with `configs/world_model/two_rooms.yaml` when missing, on
`<output>/episodes`, collected when missing):
1. `jepa-world train-policy` twice inside that world model, never touching the simulator: the actor-critic
   (`policy.method=actor_critic`, Dreamer) and the evolved linear controller (`policy.method=evolution`, CMA-ES);
2. the agents, on the same `--episodes` opposite-room pairs (`--pair-seed`), 200 steps, success = final distance <
   4.5 px, pixels only: CEM on the world model (today's agent), the evolved controller alone, the actor-critic alone,
   the actor-critic inside CEM with half the samples and with a 10-step horizon, and MCTS over the nine discrete
   actions of `two_rooms_discrete` (the actor-critic's heads);
3. random, no-op, straight line and CEM on the true simulator once on the same pairs.

Every row: success pooled over seeds (and per seed), mean final distance, ms per decision (agent time per env step)
for 50 episodes batched and for one episode alone, and the CPU minutes to train the policy. Writes
`<output>/policies_summary.json`; appends one row per agent and seed (and the baselines') to the `--results` CSV
(`scripts/results.py`; default docs/results/bench_policies.csv). Recorded in docs/notes/policies.md (section
"Policies learned in imagination").
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from results import append_rows  # scripts/results.py: this script's folder is on sys.path

from jepa_world.config import PlanConfig, PlannerSettings, load_config
from jepa_world.envs.collect import collect_episodes
from jepa_world.eval.plan_benchmark import run_plan_benchmark
from jepa_world.eval.protocol import format_table
from jepa_world.training import train_policy, train_world_model

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "world_model" / "two_rooms.yaml"
QUIET = ["train.progress=false", "train.tensorboard=false"]
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "bench_policies.csv"


def _train(fn, cfg) -> float:
    tic = time.perf_counter()
    fn(cfg)
    return time.perf_counter() - tic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    p.add_argument("--pair-seed", type=int, default=0, help="seed of the start / goal pairs (default 0)")
    p.add_argument("--episodes", type=int, default=50, help="evaluation episodes per agent and seed (default 50)")
    p.add_argument("--collect-episodes", type=int, default=4000, help="training episodes to collect (default 4000)")
    p.add_argument("--wm-steps", type=int, default=None, help="override train.max_steps of the world model")
    p.add_argument("--policy-steps", type=int, default=1500, help="actor-critic steps (default 1500)")
    p.add_argument("--evolution-steps", type=int, default=300, help="CMA-ES generations (default 300)")
    p.add_argument("--output", default="runs/bench_planning", help="run folder (default runs/bench_planning)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on the shared 2-core CPU)")
    p.add_argument("--simulations", type=int, default=32, help="MCTS simulations per decision (default 32)")
    p.add_argument("--policy-overrides", nargs="*", default=[], metavar="key=value", help="actor-critic overrides")
    p.add_argument("--results", default=str(RESULTS), help="CSV the rows are appended to ('' for none)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out, seeds = Path(args.output), [int(s) for s in args.seeds.split(",") if s.strip()]
    episodes = out / "episodes"
    if not (episodes / "metadata.json").exists():
        collect_episodes(env_name="two_rooms", num_episodes=args.collect_episodes, steps=16, output_dir=episodes,
                         seed=12345, progress=False)  # fmt: skip

    cem = PlannerSettings()  # today's agent: 100 samples x 4 iterations, horizon 40, replan every 4
    rows_spec = [  # (row, agent, policy run or None for the world model, env, settings)
        ("world model + CEM (today)", "cem", None, "two_rooms", cem),
        ("evolved controller (CMA-ES)", "policy", "evo", "two_rooms", cem),
        ("actor-critic alone", "policy", "ac", "two_rooms", cem),
        ("actor-critic + CEM, 50 samples", "policy+cem", "ac", "two_rooms", replace(cem, samples=50, elites=5)),
        ("actor-critic + CEM, horizon 10", "policy+cem", "ac", "two_rooms", replace(cem, horizon=10)),
        (f"MCTS, {args.simulations} simulations", "mcts", "ac", "two_rooms_discrete", cem),
    ]
    results: dict[str, list[dict]] = {name: [] for name, *_ in rows_spec}
    train_min: dict[str, list[float]] = {"ac": [], "evo": []}
    baselines = None
    for seed in seeds:
        run = out / f"joint_seed{seed}"
        over = [f"seed={seed}", f"wm.episodes={episodes}", f"train.output_dir={run / 'wm'}", *QUIET]
        over += [f"train.max_steps={args.wm_steps}"] if args.wm_steps else []
        wm_s = _train(train_world_model, load_config([RECIPE], over, command="train-wm"))
        print(f"seed {seed}: world model {wm_s / 60:.1f} min (0 when it was already trained)", flush=True)
        for kind, method, steps in (
            ("ac", "actor_critic", args.policy_steps),
            ("evo", "evolution", args.evolution_steps),
        ):
            extra = ["policy.horizon=40", "train.batch_size=64"] if kind == "evo" else []
            cfg = load_config([], [f"seed={seed}", f"policy.world_model={run / 'wm'}", f"policy.method={method}",
                                   f"train.output_dir={run / f'policy_{kind}'}", f"train.max_steps={steps}", *extra,
                                   *QUIET, *(args.policy_overrides if kind == "ac" else [])],
                             command="train-policy")  # fmt: skip
            train_min[kind].append(_train(train_policy, cfg) / 60)
            print(f"seed {seed}: {method} policy {train_min[kind][-1]:.1f} min", flush=True)
        for name, agent, policy, env, settings in rows_spec:
            ckpt = run / "wm" if policy is None else run / f"policy_{policy}"
            first = baselines is None
            plan = PlanConfig(**asdict(settings), env=env, agent=agent, simulations=args.simulations,
                              threads=args.threads, episodes=args.episodes)  # fmt: skip
            kw = dict(seed=args.pair_seed, log=None)
            res = run_plan_benchmark(ckpt, plan=replace(plan, baselines=first, ceiling=first), **kw)
            alone = run_plan_benchmark(ckpt, plan=replace(plan, episodes=1, baselines=False, ceiling=False), **kw)
            row = res["results"][0]
            row["ms_per_step_alone"] = alone["results"][0]["ms_per_step"]
            row["train_min"] = train_min[policy][-1] if policy else 0.0
            results[name].append(row)
            if first:
                baselines = res["results"][1:]
            if args.results:  # one row per agent and seed, the baselines' with the first
                extra = {"agent": agent, "episodes": args.episodes, "threads": args.threads,
                         "final_dist_px": round(row["mean_final_distance"], 2),
                         "ms_per_decision": round(row["ms_per_step"], 2),
                         "ms_per_decision_alone": round(row["ms_per_step_alone"], 2),
                         "train_min": round(row["train_min"], 2)}  # fmt: skip
                rows = [{"task": env, "encoder": "joint", "recipe": f"two_rooms.yaml; {name}", "seed": seed,
                         "pair_seed": args.pair_seed, "success": row["success_rate"], "extra": extra}]  # fmt: skip
                rows += [{"task": env, "encoder": b["name"], "pair_seed": args.pair_seed, "success": b["success_rate"],
                          "extra": {"episodes": args.episodes, "final_dist_px": round(b["mean_final_distance"], 2)}}
                         for b in (baselines if first else [])]  # fmt: skip
                append_rows(args.results, rows)
            print(f"seed {seed}: {name}: {100 * row['success_rate']:.0f}%, {row['ms_per_step']:.2f} ms / decision "
                  f"batched, {row['ms_per_step_alone']:.2f} alone", flush=True)  # fmt: skip
        partial = {"rows": results, "baselines": baselines, "train_min": train_min, "settings": vars(args)}
        (out / "policies_summary.json").write_text(json.dumps(partial, indent=1, default=str))  # after every seed

    table, lines = [], []
    for name, rows in results.items():
        rates = [r["success_rate"] for r in rows]
        table.append({"name": f"{name} ({len(rows)} seeds)", "success_rate": float(np.mean(rates)),
                      "success": [ok for r in rows for ok in r["success"]],
                      "mean_final_distance": float(np.mean([r["mean_final_distance"] for r in rows])),
                      "ms_per_step": float(np.mean([r["ms_per_step"] for r in rows])), "num_plans": 0})  # fmt: skip
        lines.append(f"{name}: per seed {', '.join(f'{100 * r:.0f}%' for r in rates)}; ms per decision "
                     f"{np.mean([r['ms_per_step'] for r in rows]):.2f} batched ({args.episodes} episodes), "
                     f"{np.mean([r['ms_per_step_alone'] for r in rows]):.2f} alone; train "
                     f"{np.mean([r['train_min'] for r in rows]):.1f} CPU-min")  # fmt: skip
    title = (f"two_rooms: {len(seeds)} training seeds x {args.episodes} episodes (pair seed {args.pair_seed}), 200 "
             "steps, success = final distance < 4.5 px, opposite rooms; ms per decision = agent time per env "
             "step")  # fmt: skip
    print(format_table(table + (baselines or []), title=title))
    print("\n".join(lines))
    summary = {"rows": results, "baselines": baselines, "train_min": train_min, "settings": vars(args)}
    (out / "policies_summary.json").write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
