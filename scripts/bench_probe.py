"""Evidence that pretraining helps: V-JEPA pretraining for a fixed CPU budget, then frozen probes of the pretrained
encoder and of its own random initialisation on the built-in motion task.

1. Calibrate: a short run measures the step time, and `train.max_steps` is set so that pretraining fits the budget
   (calibration, 20 steps, is not counted in the budget); `train.max_minutes` stops it at the budget if the machine
   slows down later (the steps done are reported).
2. Pretrain with `jepa_world.training.pretrain` (default recipe `configs/pretrain/vjepa_vcr_nano_cpu.yaml`: V-JEPA
   with variance-covariance regularisation of the context tokens, vit_nano patch 8, 8x64x64 bouncing-shapes clips,
   batch 16; `--config` picks another recipe, key=value overrides apply on top).
3. Probe with the same protocol (`jepa_world.eval.probe.probe`: linear and attentive sweeps, best head chosen on val,
   top-1 reported on test) the pretrained target encoder (loaded with `jepa_world.load_encoder` from the run) and
   the weights the run started from (the same config and seed, untrained). Probe data: `MovingShapeVideo` (the
   bouncing-shapes family of the pretraining data, with the labelled shape made unambiguous: the largest, in front,
   no bounce during the clip), label = its motion direction (8 classes, chance 12.5%; a single frame cannot tell
   it), on splits drawn with their own seeds (not the pretraining data). Every probe is repeated over
   `--probe-seeds` (head init and batch order; the same features), reported as mean +- std; the target compares the
   means.

    python scripts/bench_probe.py                      # 10 minutes of pretraining
    python scripts/bench_probe.py --minutes 2          # a smoke run
    python scripts/bench_probe.py --config configs/pretrain/vjepa_tiny_cpu.yaml   # plain V-JEPA (no regulariser)

Target (issue 5): pretrained beats random init by >= 15 points top-1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import time
from pathlib import Path

import torch

import jepa_world
from jepa_world.config import load_config
from jepa_world.data.labelled import builtin_datasets
from jepa_world.eval.probe import DEFAULT_LRS, DEFAULT_WDS, format_results, probe
from jepa_world.eval.probe_command import encoder_input_size, load_probe_encoder, stderr_log
from jepa_world.training import pretrain

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = ROOT / "configs" / "pretrain" / "vjepa_vcr_nano_cpu.yaml"


class InMemory(torch.utils.data.Dataset):
    """Render a dataset once; both encoders are probed on exactly the same tensors."""

    def __init__(self, dataset):
        self.items = [{"x": item["x"], "label": item["label"]} for item in (dataset[i] for i in range(len(dataset)))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> tuple[int, int]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}")
    return values


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} +- {statistics.stdev(values):.1f}"


def calibrate(config_files: list[str], overrides: list[str], run_dir: Path) -> float:
    """Seconds per optimizer step over steps 11-20 of a 20-step run (the first ten warm up).

    The window has the run's own ratio of logging steps (1 in 10; they add an SVD for the collapse diagnostics): a
    6-step calibration with a log every 3 steps overestimated the step time by ~20% and left 18% of the budget unused.
    """
    over = [*overrides, f"train.output_dir={run_dir}", "train.max_steps=20", "train.log_every=10"]
    cfg = load_config(config_files, over)
    pretrain(cfg)
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    return cfg.train.batch_size / last["samples_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="pretraining budget (default 10)")
    parser.add_argument("--output-dir", default="runs/bench_probe", help="run folder (replaced)")
    parser.add_argument(
        "--config", default=str(DEFAULT_RECIPE), help=f"pretraining recipe (default {DEFAULT_RECIPE.relative_to(ROOT)})"
    )
    parser.add_argument(
        "--probe-seeds",
        type=lambda text: [int(v) for v in text.split(",") if v.strip()],
        default=[0, 1, 2],
        help="comma-separated probe seeds (head init and batch order); results are mean +- std over them (0,1,2)",
    )
    parser.add_argument("--num-train", type=int, default=1000)
    parser.add_argument("--num-val", type=int, default=300)
    parser.add_argument("--num-test", type=int, default=700)
    # 100 epochs on 1,000 clips: the ~1,500 head updates of the `jepa-world probe` defaults (50 epochs on 2,000).
    parser.add_argument("--epochs", type=int, default=100, help="probe epochs (default 100)")
    parser.add_argument("--batch-size", type=int, default=64, help="probe batch size")
    parser.add_argument("--lrs", type=_floats, default=list(DEFAULT_LRS), help="comma-separated probe lrs")
    parser.add_argument("--wds", type=_floats, default=list(DEFAULT_WDS), help="comma-separated probe wds")
    parser.add_argument(
        "--num-distractors", type=_ints, default=(1, 3), help="LO,HI smaller shapes besides the labelled one (1,3)"
    )
    parser.add_argument("--kind", choices=("linear", "attentive", "both"), default="both")
    parser.add_argument("--component", choices=("target_encoder", "encoder"), default="target_encoder")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="torch intra-op threads (default: one per CPU; on a quiet 2-core machine 2 threads make 1.5x the steps "
        "of 1, but on a machine shared with other jobs 1 thread can be faster)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="pretraining config overrides")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    out = Path(args.output_dir)
    shutil.rmtree(out, ignore_errors=True)
    base = ["train.progress=false", "train.tensorboard=false", "train.log_every=10", *args.overrides]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; overrides: {args.overrides or 'none'}")
    load = {"start": os.getloadavg()[1]}  # 5-minute load average: other jobs on the machine slow every step
    print(f"{os.cpu_count()} CPUs, load average (5 min) {load['start']:.1f}", flush=True)

    files = [args.config]
    step_s = calibrate(files, base, out / "calibration")
    max_steps = max(1, math.floor(args.minutes * 60 / step_s))
    # max_steps sets the schedules; max_minutes holds the budget if the machine slows down after the calibration.
    cfg = load_config(files, [*base, f"train.output_dir={out / 'run'}", f"train.max_steps={max_steps}",
                              f"train.ckpt_every={max_steps}", f"train.max_minutes={args.minutes}"])  # fmt: skip
    print(f"recipe {args.config}: calibrated {step_s:.2f} s/step -> {max_steps} steps of batch "
          f"{cfg.train.batch_size} for {args.minutes:g} min", flush=True)  # fmt: skip
    tic = time.perf_counter()
    summary = pretrain(cfg)
    pretrain_s = time.perf_counter() - tic
    load["end_of_pretraining"] = os.getloadavg()[1]
    loss = summary["metrics"].get("loss", float("nan"))
    cut = f" of {max_steps} planned" if summary["stopped_by_time"] else ""  # the budget ran out first
    print(f"pretrained {summary['step']} steps{cut} in {pretrain_s / 60:.1f} min, final loss {loss:.4f}", flush=True)

    pretrained = jepa_world.load_encoder(out / "run", component=args.component)
    # The weights the run started from: same config, same seed.
    random_init, _ = load_probe_encoder("random", component=args.component, cfg=cfg, seed=cfg.seed)
    num_frames, image_size = encoder_input_size(pretrained)
    tic = time.perf_counter()
    train, val, test, num_classes, what = builtin_datasets(
        num_frames=num_frames,
        image_size=image_size,
        num_train=args.num_train,
        num_val=args.num_val,
        num_test=args.num_test,
        num_distractors=args.num_distractors,
    )
    train, val, test = InMemory(train), InMemory(val), InMemory(test)
    print(f"rendered {what} in {time.perf_counter() - tic:.0f} s", flush=True)

    results: dict[str, list[dict]] = {"pretrained": [], "random init": []}
    for probe_seed in args.probe_seeds:
        for name, encoder in (("pretrained", pretrained), ("random init", random_init)):
            tic = time.perf_counter()
            results[name].append(
                probe(
                    encoder,
                    train,
                    val,
                    test_set=test,
                    kind=args.kind,
                    lrs=args.lrs,
                    wds=args.wds,
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    num_classes=num_classes,
                    seed=probe_seed,
                    log=stderr_log,
                )
            )
            title = f"\n{name}, probe seed {probe_seed} ({time.perf_counter() - tic:.0f} s)"
            print(format_results(results[name][-1], title=title), flush=True)

    kinds = [k for k in ("linear", "attentive") if k in results["pretrained"][0]]
    top1 = {name: {k: [r[k]["best"]["top1"] for r in runs] for k in kinds} for name, runs in results.items()}
    chance = results["pretrained"][0]["chance"]
    seeds = len(args.probe_seeds)
    print(f"\n{what}; best head on val, top-1 % on test ({args.num_test} clips), mean +- std over {seeds} probe seeds")
    print("| encoder | " + " | ".join(f"{k} top-1" for k in kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    label = f"pretrained {args.component} ({summary['step']} steps{cut}, {pretrain_s / 60:.1f} min)"
    for name, shown in (("pretrained", label), ("random init", "random init (same architecture and seed)")):
        print(f"| {shown} | " + " | ".join(_mean_std(top1[name][k]) for k in kinds) + " |")
    print("| chance | " + " | ".join(f"{chance:.1f}" for _ in kinds) + " |")
    gaps = {k: statistics.fmean(top1["pretrained"][k]) - statistics.fmean(top1["random init"][k]) for k in kinds}
    print("| pretrained - random (means) | " + " | ".join(f"{gaps[k]:+.1f}" for k in kinds) + " |")
    met = {k: gaps[k] >= 15.0 for k in kinds}
    print("target (>= +15 points): " + ", ".join(f"{k} {'met' if m else 'NOT met'}" for k, m in met.items()))
    print(f"load average (5 min): {load['start']:.1f} at the start, {load['end_of_pretraining']:.1f} after pretraining")
    record = {"steps": summary["step"], "planned_steps": max_steps, "pretrain_s": pretrain_s, "step_s": step_s,
              "loss": loss, "config": args.config, "overrides": args.overrides, "data": what, "load_avg_5min": load,
              "probe_seeds": args.probe_seeds, "top1": top1, "gaps": gaps, "results": results}  # fmt: skip
    (out / "bench_probe.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
