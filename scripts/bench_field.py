"""The field's tasks (stable-worldmodel's Push-T and TwoRoom): collect -> [pretrain] -> train-wm -> plan, per encoder
and training seed, under the papers' protocol (swm) and the strict one, with the floors on the same pairs.

    python scripts/bench_field.py --task pusht --encoder jepa,random-vit --seeds 0,1,2          # the recorded run
    python scripts/bench_field.py --task tworoom --encoder jepa --seeds 0 --pairs 10 --train-steps 300   # smoke

1. Collect `--collect-episodes` episodes of `--steps` steps once with the field's behaviour policy (Push-T: the weak
   policy, random targets near the block; TwoRoom: the door-seeking expert with noise 2.0, repeat probability 0.05).
2. For each encoder and training seed:
   - `jepa`: V-JEPA on the episodes' clips (configs/pretrain/two_rooms_vjepa.yaml + the task's pretraining diff),
     then train-wm with the task's recipe on top of the frozen ViT;
   - `random-vit`: a random-init ViT of the same architecture, frozen under the same recipe (the control: does
     pretraining matter?);
   - `joint`: the pooled-pixel encoder trained jointly with the dynamics (configs/world_model/two_rooms.yaml with the
     task's frameskip and window).
   The last `--val-episodes` episodes are never trained on (wm.val_episodes): the strict protocol draws from them.
3. Plan with `--plan-config` (default configs/plan/swm_cem.yaml: the papers' CEM, 300 x 30, 5 blocks of 5 actions) on
   every protocol of `--protocols`; no-op, random and the replay of the dataset's actions run on the same pairs.

Prints each table and writes one row per run and protocol (and the floors' once per protocol) to `--results`
(docs/results/bench_field.csv; scripts/results.py). Summarised in docs/benchmarks.md, "The field's tasks".
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch
from omegaconf import OmegaConf
from results import append_rows  # scripts/results.py: this script's folder is on sys.path

from jepa_world.checkpoints import save_pretrained
from jepa_world.config import PlanConfig, load_config
from jepa_world.envs.collect import collect_episodes
from jepa_world.eval.plan_benchmark import run_plan_benchmark
from jepa_world.factory import build_jepa
from jepa_world.training import pretrain, train_world_model

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TASKS = {  # env id, steps per episode, pretraining diff, train-wm recipes on top of two_rooms.yaml for a frozen ViT
    "pusht": ("swm/PushT-v1", 32, "pusht_vjepa.yaml", ["two_rooms_jepa.yaml", "pusht_jepa.yaml"]),
    "tworoom": ("swm/TwoRoom-v1", 60, "swm_tworoom_vjepa.yaml", ["two_rooms_jepa.yaml", "swm_tworoom_jepa.yaml"]),
}
ENCODERS = ("jepa", "random-vit", "joint")
QUIET = ["train.progress=false", "train.tensorboard=false"]
RESULTS = ROOT / "docs" / "results" / "bench_field.csv"


def _pretrained(kind: str, task: str, seed: int, out: Path, episodes: Path, args) -> tuple[Path, float]:
    """The frozen encoder of `kind` for `task` (pretrained, or the random init it starts from) and its seconds."""
    _, _, diff, _ = TASKS[task]
    over = [f"seed={seed}", f"data.episodes={episodes}", f"train.output_dir={out / f'pretrain_seed{seed}'}", *QUIET]
    if args.pretrain_steps is not None:
        over.append(f"train.max_steps={args.pretrain_steps}")
    cfg = load_config([CONFIGS / "pretrain" / "two_rooms_vjepa.yaml", CONFIGS / "pretrain" / diff], over)
    tic = time.perf_counter()
    if kind == "random-vit":
        enc = out / f"random_vit_seed{seed}"
        torch.manual_seed(seed)
        save_pretrained(build_jepa(cfg).target_encoder, enc, source=f"random init, seed {seed}")
        return enc, time.perf_counter() - tic
    pretrain(cfg)  # a finished run says so and returns at once
    return out / f"pretrain_seed{seed}", time.perf_counter() - tic


def _rows(args, task: str, kind: str, seed: int, result: dict, costs: dict, first: bool, recipe: str) -> list[dict]:
    proto = result["protocol"]
    common = {"task": f"{TASKS[task][0]} ({proto.get('name', '?')})", "pair_seed": proto.get("pair_seed", "")}
    learned = result["results"][0]
    rows = [{**common, "encoder": kind, "recipe": recipe, "seed": seed, "success": learned["success_rate"],
             "extra": {**costs, "pairs": len(learned["success"]),
                       "ms_per_replan_batched": round(learned["ms_per_replan_batched"], 1)}}]  # fmt: skip
    if first:
        rows += [{**common, "encoder": b["name"], "success": b["success_rate"], "extra": {"pairs": len(b["success"])}}
                 for b in result["results"][1:]]  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), default="pusht")
    p.add_argument("--encoder", default="jepa,random-vit", help=f"comma-separated, of {', '.join(ENCODERS)}")
    p.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    p.add_argument("--protocols", default="swm,strict", help="comma-separated: swm, strict")
    p.add_argument("--pairs", type=int, default=None, help="pairs per protocol (default: 50 swm, 100 strict)")
    p.add_argument("--pair-seed", type=int, default=None,
                   help="seed of the pairs, the same for every run (default: 42 swm, 0 strict)")  # fmt: skip
    p.add_argument("--collect-episodes", type=int, default=2000)
    p.add_argument("--val-episodes", type=int, default=200, help="held out from training (the strict pairs)")
    p.add_argument("--episodes-dir", default=None, help="episodes collected earlier (default: <output>/episodes)")
    p.add_argument("--train-steps", type=int, default=None, help="override train.max_steps of the recipe")
    p.add_argument("--pretrain-steps", type=int, default=None, help="override train.max_steps of the pretraining")
    p.add_argument("--plan-config", default=str(CONFIGS / "plan" / "swm_cem.yaml"))
    p.add_argument("--output", default=None, help="run folder (default runs/bench_field_<task>)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default=str(RESULTS), help="results CSV ('' for none)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="train-wm config overrides")
    args = p.parse_args()
    kinds = [k for k in args.encoder.split(",") if k]
    if unknown := [k for k in kinds if k not in ENCODERS]:
        p.error(f"--encoder {','.join(unknown)}: expected some of {', '.join(ENCODERS)}")
    env_id, steps, _, recipes = TASKS[args.task]
    torch.set_num_threads(args.threads)
    out = Path(args.output or f"runs/bench_field_{args.task}")
    episodes = Path(args.episodes_dir) if args.episodes_dir else out / "episodes"
    if not (episodes / "metadata.json").exists():
        tic = time.perf_counter()
        collect_episodes(env_name=env_id, num_episodes=args.collect_episodes, steps=steps, output_dir=episodes,
                         policy=None, seed=12345, progress=False)  # fmt: skip
        print(f"collect: {args.collect_episodes} episodes of {steps} steps in {time.perf_counter() - tic:.0f} s")
    plan_file = OmegaConf.load(args.plan_config).get("plan", {})
    plan = replace(PlanConfig(), **{k: v for k, v in plan_file.items()}, env=env_id, threads=args.threads)

    first = {proto: True for proto in args.protocols.split(",")}
    for kind in kinds:
        for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
            run = out / f"{kind}_seed{seed}"
            files = [CONFIGS / "world_model" / "two_rooms.yaml"]
            over = [f"seed={seed}", f"wm.episodes={episodes}", f"wm.val_episodes={args.val_episodes}",
                    f"train.output_dir={run / 'wm'}", *QUIET]  # fmt: skip
            pretrain_s = 0.0
            if kind == "joint":
                task_recipe = load_config([CONFIGS / "world_model" / r for r in recipes], command="train-wm")
                over += [f"wm.frameskip={task_recipe.wm.frameskip}", f"wm.window={task_recipe.wm.window}",
                         f"wm.env={env_id}"]  # fmt: skip
            else:
                encoder, pretrain_s = _pretrained(kind, args.task, seed, out, episodes, args)
                files += [CONFIGS / "world_model" / r for r in recipes]
                over.append(f"wm.encoder.checkpoint={encoder}")
            if args.train_steps is not None:
                over.append(f"train.max_steps={args.train_steps}")
            recipe = " ".join(["+".join(f.name for f in files),
                               *(o for o in over if o.startswith(("wm.frameskip", "wm.window", "train.max_steps"))),
                               Path(args.plan_config).name, *args.overrides])  # fmt: skip
            tic = time.perf_counter()
            train_world_model(load_config(files, [*over, *args.overrides], command="train-wm"))
            train_s = time.perf_counter() - tic
            for proto in args.protocols.split(","):
                tic = time.perf_counter()
                pair_seed = args.pair_seed if args.pair_seed is not None else (42 if proto == "swm" else 0)
                settings = replace(plan, protocol=proto, pairs=args.pairs, pair_seed=pair_seed,
                                   output=str(run / f"plan_{proto}"), baselines=first[proto])  # fmt: skip
                result = run_plan_benchmark(run / "wm", plan=settings, seed=seed, log=None)
                plan_s = time.perf_counter() - tic
                print(result["table"], flush=True)
                costs = {"pretrain_min": round(pretrain_s / 60, 2), "train_min": round(train_s / 60, 2),
                         "plan_min": round(plan_s / 60, 2)}  # fmt: skip
                print(f"{args.task} {kind} seed {seed} {proto}: {costs}", flush=True)
                if args.results:
                    append_rows(args.results, _rows(args, args.task, kind, seed, result, costs, first[proto], recipe))
                first[proto] = False


if __name__ == "__main__":
    main()
