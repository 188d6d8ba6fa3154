"""Planning benchmark on Two-Rooms: the whole pipeline (collect, [pretrain,] train, plan) under the strict protocol.

    python scripts/bench_planning.py                                  # 3 seeds x 50 episodes (the recorded run)
    python scripts/bench_planning.py --seeds 0 --episodes 10 --train-steps 300 --collect-episodes 500   # smoke
    python scripts/bench_planning.py --encoder jepa,random-vit,joint --seeds 0,1,2 --pair-seed 1
    python scripts/bench_planning.py --encoder jepa-video,random-vit,joint --wm-episodes 50,200  # few labelled

1. Collect `--collect-episodes` random-walk episodes of 16 steps once (`jepa-world collect`, von Mises headings) on
   `--env` (`two_rooms`, or `two_rooms_clutter`: a textured floor per episode and three dots that move on their own).
2. For each encoder and training seed:
   - `joint`: `jepa-world train-wm --config configs/world_model/two_rooms.yaml` (a pooled-pixel encoder trained
     jointly with the dynamics: the PLDM recipe);
   - `jepa`: `jepa-world pretrain --config configs/pretrain/two_rooms_ijepa.yaml` on the same episodes' frames, then
     train-wm with `configs/world_model/two_rooms_jepa.yaml` on top (the ViT frozen under a trained readout);
   - `jepa-finetune`: the same pretrained ViT, fine-tuned (`wm.encoder.finetune=true`, 1,000 train-wm steps instead
     of the frozen recipe's 4,000: every step re-encodes its windows; smoothness FINETUNE_SMOOTH = 20, not 40);
   - `random-vit`: a random-init ViT of the same architecture, frozen (the control: does pretraining matter?);
   - `random-vit-finetune`: the same random-init ViT, fine-tuned (the control of `jepa-finetune`);
   - `jepa-finetune-last`, `random-vit-finetune-last`: only the ViT's last block fine-tuned
     (`wm.encoder.finetune_blocks=1`, FINETUNE_LAST_STEPS train-wm steps): the frozen first blocks' tokens are
     computed once, as for a frozen ViT;
   - `jepa-transfer`: the same pretraining recipe on other video (the built-in moving-shapes frames,
     `data.source=synthetic_images`: no Two-Rooms frame is seen), then frozen like `jepa` (what most users will do);
   - `jepa-video`: V-JEPA on the episodes' clips, predicting the future half of each clip from its past
     (`configs/pretrain/two_rooms_vjepa.yaml`), then frozen like `jepa` (each frame read as one repeated tubelet);
     `jepa-video-finetune-last`: the same with its last block fine-tuned;
   - `jepa-video-lpft`, `jepa-lpft`, `random-vit-lpft`: two stages (LP-FT): the frozen row's trained world model
     (`jepa-video` etc., same seed: list it first in --encoder) is the start (`wm.init_from`) of
     `configs/world_model/two_rooms_jepa_lpft.yaml` (500 steps with the ViT's last block fine-tuned, peak LR 3e-4
     instead of 1e-3; smoothness as the recipe, 40);
   then plan on the same `--episodes` start / goal pairs (`jepa-world plan`, pairs from `--pair-seed`): start and goal
   in opposite rooms, 200 steps, success = final distance < 4.5 px; the learned agent sees pixels only and never
   queries the simulator.
   With `--wm-episodes N[,N...]` the world model trains on the first N collected episodes only (the same episodes:
   collection is reproducible per episode), while the pretraining still reads the frames of all of them: the
   setting of a user with much unlabelled video and few episodes with actions. Run folders gain `_wm{N}`.
3. Random, no-op, straight line and CEM on the true simulator (ceiling) run once on the same pairs.

Prints one table per run, then the summary (one row per encoder, pooled over seeds, mean +- std of the per-seed
success) with the wall time of every stage and the planning cost (batched over the episodes, and one episode alone);
writes `<output>/summary.json`, and appends one row per run (and the baselines') to the `--results` CSV
(`scripts/results.py`; default docs/results/bench_planning.csv). Recorded in docs/notes/two-rooms-world-model.md
(section "Planning").
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from results import append_rows  # scripts/results.py: this script's folder is on sys.path

from jepa_world.checkpoints import save_pretrained
from jepa_world.config import PlanConfig, load_config
from jepa_world.envs.collect import collect_episodes
from jepa_world.eval.plan_benchmark import run_plan_benchmark
from jepa_world.eval.protocol import format_table
from jepa_world.factory import build_jepa
from jepa_world.training import pretrain, train_world_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
RECIPE = CONFIGS / "world_model" / "two_rooms.yaml"
JEPA_RECIPE = CONFIGS / "world_model" / "two_rooms_jepa.yaml"
PRETRAIN_RECIPE = CONFIGS / "pretrain" / "two_rooms_ijepa.yaml"
VIDEO_RECIPE = CONFIGS / "pretrain" / "two_rooms_vjepa.yaml"
LPFT_RECIPE = CONFIGS / "world_model" / "two_rooms_jepa_lpft.yaml"  # the second stage of the -lpft rows
ENCODERS = ("joint", "jepa", "jepa-finetune", "jepa-finetune-last", "random-vit", "random-vit-finetune",
            "random-vit-finetune-last", "jepa-transfer", "jepa-video", "jepa-video-finetune-last", "jepa-lpft",
            "random-vit-lpft", "jepa-video-lpft")  # fmt: skip
QUIET = ["train.progress=false", "train.tensorboard=false"]
FINETUNE_STEPS = 1000  # train-wm steps of the -finetune rows (--train-steps overrides)
FINETUNE_LAST_STEPS = 1000  # as FINETUNE_STEPS; the first blocks' tokens are cached, only the last one runs
FINETUNE_SMOOTH = 20.0  # the fine-tuned rows' smoothness: they planned better at 20 than at the recipe's 40
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results" / "bench_planning.csv"


def _encoder(kind: str, seed: int, out: Path, episodes: Path, args) -> tuple[list[str], float]:
    """The train-wm overrides that put `kind`'s encoder under the world model, and the pretraining seconds."""
    if kind == "joint":
        return [], 0.0
    enc = out / f"pretrain_seed{seed}"
    data = [f"data.episodes={episodes}"]
    if kind == "jepa-transfer":  # other video: the built-in moving shapes, at the same frame size
        enc, data = out / f"pretrain_transfer_seed{seed}", ["data.source=synthetic_images"]
    recipe = PRETRAIN_RECIPE
    if kind.startswith("jepa-video"):
        enc, recipe = out / f"pretrain_video_seed{seed}", VIDEO_RECIPE
    over = [f"seed={seed}", *data, f"train.output_dir={enc}", *QUIET, *args.pretrain_overrides]
    if args.pretrain_steps is not None:
        over.append(f"train.max_steps={args.pretrain_steps}")
    cfg = load_config([recipe], over)
    tic = time.perf_counter()
    if kind.startswith("random-vit"):  # the weights the pretraining run starts from
        enc = out / f"random_vit_seed{seed}"
        torch.manual_seed(seed)
        save_pretrained(build_jepa(cfg).target_encoder, enc, source=f"random init, seed {seed}")
    else:  # jepa and jepa-finetune share one pretraining run per seed (a second call finds it finished)
        pretrain(cfg)
    # Fine-tuning re-encodes every window (~2.5 s per step on this CPU): FINETUNE_STEPS, not the frozen recipe's 4,000.
    extra = ["wm.encoder.finetune=true", f"train.max_steps={FINETUNE_STEPS}"] if kind.endswith("-finetune") else []
    if kind.endswith("-finetune-last"):
        extra = ["wm.encoder.finetune=true", "wm.encoder.finetune_blocks=1", f"train.max_steps={FINETUNE_LAST_STEPS}"]
    if extra:  # key=value overrides on the command line come after these, so wm.terms.smooth=40 still applies
        extra.append(f"wm.terms.smooth={FINETUNE_SMOOTH}")
    return [f"wm.encoder.checkpoint={enc}", *extra], time.perf_counter() - tic


def _csv_rows(args, run: dict, files: list, baselines: list) -> list[dict]:
    """The `--results` rows of one run (scripts/results.py columns); success is a fraction of the episodes."""
    learned = run["learned"]
    recipe = " ".join(["+".join(Path(f).name for f in files), *args.overrides]
                      + ([f"train.max_steps={args.train_steps}"] if args.train_steps is not None else []))  # fmt: skip
    extra = {"episodes": args.episodes, "wm_episodes": run["wm_episodes"], "steps": run["steps"],
             "final_dist_px": round(learned["mean_final_distance"], 2),
             "ms_per_replan_batched": round(learned["ms_per_replan_batched"], 1),
             "ms_per_replan_alone": round(run["ms_per_replan_alone"], 1), "threads": args.threads,
             **{k[:-2] + "_min": round(run[k] / 60, 2) for k in ("pretrain_s", "train_s", "plan_s")}}  # fmt: skip
    rows = [{"task": args.env, "encoder": run["encoder"], "recipe": recipe, "seed": run["seed"],
             "pair_seed": args.pair_seed, "success": learned["success_rate"], "extra": extra}]  # fmt: skip
    return rows + [{"task": args.env, "encoder": b["name"], "pair_seed": args.pair_seed, "success": b["success_rate"],
                    "extra": {"episodes": args.episodes, "final_dist_px": round(b["mean_final_distance"], 2)}}
                   for b in baselines]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="joint", help=f"comma-separated, of {', '.join(ENCODERS)} (default joint)")
    p.add_argument("--seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    p.add_argument("--pair-seed", type=int, default=0, help="seed of the start / goal pairs (default 0)")
    p.add_argument("--episodes", type=int, default=50, help="evaluation episodes per agent and seed (default 50)")
    p.add_argument("--collect-episodes", type=int, default=4000, help="training episodes to collect (default 4000)")
    p.add_argument(
        "--env",
        default="two_rooms",
        choices=("two_rooms", "two_rooms_clutter"),
        help="two_rooms, or two_rooms_clutter (textured floors, moving distractors; default two_rooms)",
    )
    p.add_argument("--wm-episodes", default="", help="comma-separated: train-wm on the first N episodes only")
    p.add_argument("--train-steps", type=int, default=None, help="override train.max_steps of the recipe")
    p.add_argument("--pretrain-steps", type=int, default=None, help="override train.max_steps of the pretraining")
    p.add_argument("--output", default="runs/bench_planning", help="run folder (default runs/bench_planning)")
    p.add_argument("--config", default=str(RECIPE), help="train-wm recipe (default configs/world_model/two_rooms.yaml)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on the shared 2-core CPU)")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--iterations", type=int, default=4)
    p.add_argument("--horizon", type=int, default=40)
    p.add_argument("--replan-every", type=int, default=4)
    p.add_argument("--pretrain-overrides", nargs="*", default=[], metavar="key=value", help="pretraining overrides")
    p.add_argument("--results", default=str(RESULTS), help="CSV the runs' rows are appended to ('' for none)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="train-wm config overrides")
    args = p.parse_args()
    kinds = [k.strip() for k in args.encoder.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(ENCODERS))
    if unknown:
        p.error(f"--encoder {','.join(unknown)}: expected some of {', '.join(ENCODERS)}")

    torch.set_num_threads(args.threads)
    out = Path(args.output)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    episodes_dir = out / "episodes"
    tic = time.perf_counter()
    if not (episodes_dir / "metadata.json").exists():
        collect_episodes(env_name=args.env, num_episodes=args.collect_episodes, steps=16, output_dir=episodes_dir,
                         seed=12345, progress=False)  # fmt: skip
    subsets = [int(n) for n in args.wm_episodes.split(",") if n.strip()]
    if any(not 1 <= n <= args.collect_episodes for n in subsets):
        p.error(f"--wm-episodes {args.wm_episodes}: each must be in 1..{args.collect_episodes} (--collect-episodes)")
    for n in subsets:  # each episode depends only on the seed and its index: these are the first n of episodes_dir
        if not (out / f"episodes_first{n}" / "metadata.json").exists():
            collect_episodes(env_name=args.env, num_episodes=n, steps=16, output_dir=out / f"episodes_first{n}",
                             seed=12345, progress=False)  # fmt: skip
    collect_s = time.perf_counter() - tic
    print(f"collect: {args.collect_episodes} episodes in {collect_s:.0f} s", flush=True)

    plan = PlanConfig(samples=args.samples, iterations=args.iterations, horizon=args.horizon,
                      replan_every=args.replan_every, env=args.env, episodes=args.episodes,
                      threads=args.threads)  # fmt: skip
    runs, baselines = [], None
    cases = [(kind, n) for n in (subsets or [None]) for kind in kinds]
    for kind, n in cases:
        for seed in seeds:
            run = out / (f"{kind}_seed{seed}" + (f"_wm{n}" if n else ""))
            base = kind.removesuffix("-lpft")  # an -lpft row's first stage: the frozen row of the same seed
            first = out / (f"{base}_seed{seed}" + (f"_wm{n}" if n else "")) / "wm"
            if base != kind and not list((first / "checkpoints").glob("step_*.pt")):
                p.error(f"{kind}: no frozen world model at {first}; list {base} before it")
            enc_over, pretrain_s = _encoder(kind, seed, out, episodes_dir, args)
            if base != kind:
                enc_over.append(f"wm.init_from={first}")
            wm_episodes = out / f"episodes_first{n}" if n else episodes_dir
            overrides = [f"seed={seed}", f"wm.episodes={wm_episodes}", f"train.output_dir={run / 'wm'}", *QUIET,
                         *enc_over, *args.overrides]  # fmt: skip
            if args.train_steps is not None:
                overrides.append(f"train.max_steps={args.train_steps}")
            files = [args.config] + ([JEPA_RECIPE] if kind != "joint" else [])
            files += [LPFT_RECIPE] if base != kind else []
            cfg = load_config(files, overrides, command="train-wm")
            if n is not None and cfg.train.batch_size > n:  # a window per episode at least: a batch of n fits
                print(f"{kind}: train.batch_size {cfg.train.batch_size} -> {n} (only {n} episodes)", flush=True)
                cfg = load_config(files, [*overrides, f"train.batch_size={n}"], command="train-wm")
            tic = time.perf_counter()
            summary = train_world_model(cfg)
            train_s = time.perf_counter() - tic
            tic = time.perf_counter()
            first = baselines is None  # baselines and the simulator ceiling once: the pairs are the same
            result = run_plan_benchmark(run / "wm", plan=replace(plan, output=str(run / "plan"), baselines=first,
                                        ceiling=first), seed=args.pair_seed, log=None)  # fmt: skip
            plan_s = time.perf_counter() - tic
            alone = run_plan_benchmark(run / "wm", plan=replace(plan, episodes=1, baselines=False, ceiling=False),
                                       seed=args.pair_seed, log=None)  # fmt: skip
            learned = result["results"][0]
            if first:
                baselines = result["results"][1:]
            n_wm = n or args.collect_episodes
            runs.append({"encoder": kind, "wm_episodes": n_wm, "seed": seed, "steps": summary["step"],
                         "pretrain_s": pretrain_s, "train_s": train_s, "plan_s": plan_s, "learned": learned,
                         "ms_per_replan_alone": alone["results"][0]["ms_per_replan_batched"]})  # fmt: skip
            if args.results:  # one row per run, the baselines' with the first
                append_rows(args.results, _csv_rows(args, runs[-1], files, baselines if first else []))
            print(result["table"])
            print(f"{kind} seed {seed}, {n_wm} train-wm episodes: pretrain {pretrain_s / 60:.1f} min, train "
                  f"{train_s / 60:.1f} min, plan {plan_s / 60:.1f} min, success {100 * learned['success_rate']:.0f}%",
                  flush=True)  # fmt: skip

    rows, lines = [], []
    for kind, n in cases:
        mine = [r for r in runs if (r["encoder"], r["wm_episodes"]) == (kind, n or args.collect_episodes)]
        name = kind + (f", {n} episodes" if n else "")
        rates = np.array([r["learned"]["success_rate"] for r in mine])
        rows.append({"name": f"{name} + CEM ({len(mine)} seeds pooled)", "success_rate": float(rates.mean()),
                     "success": [ok for r in mine for ok in r["learned"]["success"]],
                     "mean_final_distance": float(np.mean([r["learned"]["mean_final_distance"] for r in mine])),
                     "ms_per_step": float(np.mean([r["learned"]["ms_per_step"] for r in mine])),
                     "ms_per_replan_batched": float(np.mean([r["learned"]["ms_per_replan_batched"] for r in mine])),
                     "num_plans": sum(r["learned"]["num_plans"] for r in mine)})  # fmt: skip
        stage = {k: np.mean([r[k] for r in mine]) / 60 for k in ("pretrain_s", "train_s", "plan_s")}
        # The -lpft rows' train-wm is their second stage; the first is the frozen row's (and its minutes).
        first_stage = f" (second stage; + the {kind.removesuffix('-lpft')} row's)" if kind.endswith("-lpft") else ""
        lines.append(
            f"{name}: per seed " + ", ".join(f"{100 * r:.0f}%" for r in rates)
            + f" (mean {100 * rates.mean():.1f} +- {100 * rates.std():.1f}); minutes per seed: pretrain "
            + f"{stage['pretrain_s']:.1f}, train-wm {stage['train_s']:.1f}{first_stage}, plan "
            + f"{stage['plan_s']:.1f}; replan "
            + f"{rows[-1]['ms_per_replan_batched'] / args.episodes:.1f} ms per episode ({args.episodes} batched), "
            + f"{np.mean([r['ms_per_replan_alone'] for r in mine]):.0f} ms for one episode alone"
        )  # fmt: skip
    title = (
        f"{args.env}: {len(seeds)} training seeds x {args.episodes} episodes (pair seed {args.pair_seed}, the same "
        "pairs for every row), 200 steps, success = final distance < 4.5 px, start/goal in opposite rooms"
    )
    print(format_table(rows + (baselines or []), title=title))
    print("\n".join(lines))
    print(f"collect: {collect_s:.0f} s")
    (out / "summary.json").write_text(json.dumps(
        {"runs": runs, "baselines": baselines, "collect_s": collect_s, "settings": vars(args)}, indent=1,
        default=str))  # fmt: skip


if __name__ == "__main__":
    main()
