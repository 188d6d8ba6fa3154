"""Command line: parse arguments and call the library. No logic lives here.

jepa-world pretrain [--config FILE ...] [key=value ...]
jepa-world info
jepa-world index DIR --output index.csv
jepa-world export RUN --output DIR [--component target_encoder|encoder|predictor] [--format jepa_world|timm]
jepa-world probe --checkpoint RUN_OR_CKPT|random [--data builtin|PATH] [--kind linear|attentive|both] [--epochs N]
jepa-world plan --env two_rooms --checkpoint RUN [--episodes 50] [--planner cem|mppi] [--output DIR]
"""

from __future__ import annotations

import argparse
import sys


def _pretrain_epilog() -> str:
    from jepa_world.config import defaults_table

    rows = "\n".join(f"  {k} = {v}" for k, v in defaults_table())
    return (
        "Overrides are key=value pairs (OmegaConf dotlist), applied after the --config files.\n"
        "Main keys: train.output_dir, train.max_steps, train.batch_size, seed, model.name, data.index.\n\n"
        f"All keys and their defaults:\n{rows}\n\n"
        "Several processes / GPUs / nodes: accelerate launch -m jepa_world.cli pretrain ..."
    )


def _train(args: argparse.Namespace, command: str) -> int:
    from jepa_world.config import load_config
    from jepa_world.train import pretrain, train_world_model

    cfg = load_config(args.config, args.overrides, command=command)
    summary = (pretrain if command == "pretrain" else train_world_model)(cfg)
    if summary["main_process"]:
        loss = summary["metrics"].get("loss", float("nan"))
        print(f"done: {summary['step']} steps, loss {loss:.4f}, run dir {summary['output_dir']}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    return _train(args, "pretrain")


def _cmd_train_wm(args: argparse.Namespace) -> int:
    return _train(args, "train-wm")


def _cmd_collect(args: argparse.Namespace) -> int:
    from jepa_world.data.episodes import collect_episodes

    root = collect_episodes(env_name=args.env, num_episodes=args.episodes, steps=args.steps, output_dir=args.output,
                            policy=args.policy, seed=args.seed, image_size=args.image_size,
                            overwrite=args.overwrite)  # fmt: skip
    print(f"wrote {args.episodes} episodes of {args.steps} steps to {root}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import accelerate
    import timm
    import torch
    import torchvision

    import jepa_world

    device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    print(f"jepa_world {jepa_world.__version__}")
    print(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"timm {timm.__version__}, accelerate {accelerate.__version__}"
    )
    print(f"device: {device} ({torch.cuda.device_count()} CUDA devices), CPU threads: {torch.get_num_threads()}")
    print("models: " + ", ".join(jepa_world.list_models()))
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from jepa_world.data.index import format_report, write_index

    try:
        report = write_index(
            args.dir,
            args.output,
            relative=args.relative,
            reader=args.reader,
            check_decode=not args.no_decode_check,
            num_workers=args.workers,
        )
    except (ValueError, ImportError) as err:  # no videos under DIR, bad --workers, no reader installed
        print(f"jepa-world index: error: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report.num_videos else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from jepa_world.hub import CheckpointError, export_checkpoint

    overrides = {k: v for k, v in (("num_heads", args.num_heads), ("num_frames", args.num_frames)) if v is not None}
    try:
        out = export_checkpoint(args.run, args.output, component=args.component, format=args.format, **overrides)
    except (CheckpointError, ValueError, TypeError) as err:
        print(f"jepa-world export: error: {err}", file=sys.stderr)
        return 2
    print(f"exported {args.component} of {args.run} to {out} ({args.format} format)")
    return 0


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _cmd_probe(args: argparse.Namespace) -> int:
    import json

    from jepa_world.hub import CheckpointError
    from jepa_world.probe import format_results, probe_checkpoint, stderr_log

    grid = {k: v for k, v in (("lrs", args.lrs), ("wds", args.wds)) if v is not None}
    try:
        results, title = probe_checkpoint(
            args.checkpoint,
            component=args.component,
            random_init=args.random_init,
            config_files=args.config,
            overrides=args.overrides,
            data=args.data,
            val_data=args.val_data,
            test_data=args.test_data,
            num_train=args.num_train,
            num_val=args.num_val,
            num_test=args.num_test,
            seed=args.seed,
            log=None if args.quiet else stderr_log,
            kind=args.kind,
            epochs=args.epochs,
            batch_size=args.batch_size,
            cache=False if args.no_cache else "auto",
            num_workers=args.workers,
            **grid,
        )
    except (CheckpointError, ValueError, TypeError) as err:
        print(f"jepa-world probe: error: {err}", file=sys.stderr)
        return 2
    print(format_results(results, title=title))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from jepa_world.control import PlannerSettings, run_plan_benchmark
    from jepa_world.hub import CheckpointError

    settings = PlannerSettings(planner=args.planner)
    for key in ("samples", "elites", "iterations", "horizon", "replan_every", "temperature", "init_std"):
        if getattr(args, key) is not None:
            setattr(settings, key, getattr(args, key))
    try:
        result = run_plan_benchmark(
            args.checkpoint,
            env_name=args.env,
            episodes=args.episodes,
            settings=settings,
            max_steps=args.max_steps,
            seed=args.seed,
            output=args.output,
            stop_radius=None if args.no_stop else args.stop_radius,
            reduce=args.reduce,
            simulator_ceiling=not args.no_ceiling,
            gif_episodes=args.gif_episodes,
            num_threads=args.threads or None,
            log=None if args.quiet else lambda msg: print(msg, file=sys.stderr),
        )
    except (CheckpointError, ValueError) as err:
        print(f"jepa-world plan: error: {err}", file=sys.stderr)
        return 2
    print(result["table"])
    if result["files"]:
        print("wrote " + ", ".join(result["files"].values()))
    return 0


def _add_config_args(parser: argparse.ArgumentParser, *, purpose: str = "") -> None:
    parser.add_argument(
        "--config", action="append", default=[], metavar="FILE", help=f"YAML recipe{purpose} (repeatable)"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"config overrides{purpose}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jepa-world", description="JEPA pretraining, world models and planning.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "pretrain",
        help="I-JEPA / V-JEPA self-supervised pretraining",
        epilog=_pretrain_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_args(p)
    p.set_defaults(func=_cmd_pretrain)

    w = sub.add_parser(
        "train-wm",
        help="train an action-conditioned world model (latent dynamics) on offline episodes",
        epilog="World-model keys live under wm.* (see `jepa-world pretrain --help` for every key). Without "
        "wm.episodes, Two-Rooms episodes are collected into <train.output_dir>/episodes first. "
        "wm.encoder_checkpoint=RUN uses a pretrained (frozen) encoder.",
    )
    _add_config_args(w)
    w.set_defaults(func=_cmd_train_wm)

    c = sub.add_parser("collect", help="collect offline episodes from a pixel environment (random-walk policy)")
    c.add_argument("--env", default="two_rooms", help="two_rooms, point_arena or a gymnasium id (default two_rooms)")
    c.add_argument("--episodes", type=int, default=1000, help="number of episodes (default 1000)")
    c.add_argument("--steps", type=int, default=16, help="actions per episode (default 16)")
    c.add_argument("--output", required=True, metavar="DIR", help="output directory")
    c.add_argument("--policy", default="von_mises", help="behaviour policy: von_mises (default), random, ...")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--image-size", type=int, default=64)
    c.add_argument("--overwrite", action="store_true", help="replace episodes already in DIR")
    c.set_defaults(func=_cmd_collect)

    i = sub.add_parser("info", help="versions, registered models and the device")
    i.set_defaults(func=_cmd_info)

    x = sub.add_parser(
        "index",
        help="write a V-JEPA index CSV (path label) of the videos under DIR, plus a metadata sidecar",
        description="Scan DIR recursively for videos, open each one, write `path label` lines (V-JEPA format, "
        "labels = top-level subfolders) and <output stem>.meta.csv (frames, fps, duration, size, codec); files "
        "that cannot be opened are left out and listed. Exit status 1 if no video could be read.",
    )
    x.add_argument("dir", metavar="DIR", help="folder of videos (scanned recursively)")
    x.add_argument("--output", "-o", required=True, metavar="CSV", help="index file to write")
    x.add_argument("--relative", action="store_true", help="write paths relative to the index file's folder")
    x.add_argument("--reader", choices=("auto", "decord", "pyav"), default="auto", help="video reader (default auto)")
    x.add_argument("--workers", type=int, default=0, metavar="N", help="threads opening files (default 0)")
    x.add_argument("--no-decode-check", action="store_true", help="only open files (faster; misses truncated files)")
    x.set_defaults(func=_cmd_index)

    e = sub.add_parser(
        "export",
        help="turn a run or checkpoint (ours or an official I-JEPA / V-JEPA / V-JEPA 2 one) into config.json + "
        "model.safetensors",
        description="Load one component of RUN (a run folder: its newest checkpoints/step_*.pt; a checkpoint file; "
        "or an export folder) strictly and write it to DIR: format jepa_world for jepa_world.load_encoder / "
        "load_predictor, format timm for timm.create_model('local-dir:DIR', pretrained=True) (image encoders with "
        "a position table only). See docs/hub.md.",
    )
    e.add_argument("run", metavar="RUN", help="run folder, checkpoint file or export folder")
    e.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write")
    e.add_argument(
        "--component",
        choices=("target_encoder", "encoder", "predictor"),
        default="target_encoder",
        help="which network (default target_encoder, the EMA encoder the releases evaluate)",
    )
    e.add_argument("--format", choices=("jepa_world", "timm"), default="jepa_world", help="default jepa_world")
    e.add_argument("--num-heads", type=int, metavar="N", help="heads, for official checkpoints of unlisted widths")
    e.add_argument("--num-frames", type=int, metavar="T", help="clip length of an official video checkpoint (16)")
    e.set_defaults(func=_cmd_export)

    r = sub.add_parser(
        "probe",
        help="frozen evaluation: linear and attentive probes (a sweep of lr x wd heads) on an encoder's features",
        description="Train probes on the frozen features of an encoder and print top-1 accuracy: the best head is "
        "chosen on val and reported on test. Built-in data: bouncing-shapes clips at the encoder's input size "
        "labelled with the motion direction of the largest shape (8 classes; images: the kind of the largest shape, "
        "3 classes). A PATH is a video index (`path label` lines) or a folder with one subfolder per class.",
    )
    r.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN_OR_CKPT",
        help="run folder, checkpoint, export folder or official checkpoint; 'random': a random encoder built from "
        "--config / key=value (the weights a pretraining run with that config and --seed starts from)",
    )
    r.add_argument(
        "--component", choices=("target_encoder", "encoder"), default="target_encoder", help="default target_encoder"
    )
    r.add_argument("--random-init", action="store_true", help="same architecture as --checkpoint, random weights")
    _add_config_args(r, purpose=" for --checkpoint random")
    r.add_argument("--data", default="builtin", metavar="builtin|PATH", help="labelled data (default builtin)")
    r.add_argument("--val-data", metavar="PATH", help="validation split for --data PATH (else PATH is split)")
    r.add_argument("--test-data", metavar="PATH", help="test split for --data PATH")
    r.add_argument("--kind", choices=("linear", "attentive", "both"), default="both", help="default both")
    r.add_argument("--epochs", type=int, default=50, help="probe epochs (default 50)")
    r.add_argument("--batch-size", type=int, default=64, help="probe batch size (default 64)")
    r.add_argument("--lrs", type=_floats, metavar="LR,LR,...", help="learning rates (default 1e-3,3e-3,1e-2)")
    r.add_argument("--wds", type=_floats, metavar="WD,WD,...", help="weight decays (default 0.001,0.05)")
    r.add_argument("--num-train", type=int, default=2000, help="built-in train clips (default 2000)")
    r.add_argument("--num-val", type=int, default=500, help="built-in val clips (default 500)")
    r.add_argument("--num-test", type=int, default=1000, help="built-in test clips (default 1000)")
    r.add_argument("--seed", type=int, default=0, help="probe init, batch order, data split, random encoders")
    r.add_argument("--no-cache", action="store_true", help="re-encode every epoch instead of caching features")
    r.add_argument("--workers", type=int, default=0, metavar="N", help="DataLoader workers (default 0)")
    r.add_argument("--output", "-o", metavar="JSON", help="also write the results as JSON")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    r.set_defaults(func=_cmd_probe)

    pl = sub.add_parser(
        "plan",
        help="goal reaching with a trained world model + CEM/MPPI against baselines under the strict protocol",
        description="Evaluate `train-wm` checkpoint RUN on start/goal pairs in opposite rooms: the learned model + "
        "planner (pixels of the observation and the goal image only), random actions, no-op, straight line to "
        "the goal and the planner on the true simulator (ceiling), all on the same pairs. Success = final distance "
        "< 4.5 px after --max-steps steps. Prints one table; with --output writes results.json, episodes.gif "
        "and landscape.png (latent distance to a goal over dot positions).",
    )
    pl.add_argument("--env", default="two_rooms", choices=("two_rooms", "point_arena"), help="default two_rooms")
    pl.add_argument("--checkpoint", required=True, metavar="RUN", help="train-wm run folder or checkpoint file")
    pl.add_argument("--episodes", type=int, default=50, help="episodes per agent (default 50)")
    pl.add_argument("--planner", choices=("cem", "mppi"), default="cem", help="default cem")
    pl.add_argument("--samples", type=int, help="samples per iteration (default 100)")
    pl.add_argument("--elites", type=int, help="elites (default 10)")
    pl.add_argument("--iterations", type=int, help="planner iterations per replan (default 4)")
    pl.add_argument("--horizon", type=int, help="planning horizon in steps (default 40)")
    pl.add_argument("--replan-every", type=int, help="steps between replans (default 4)")
    pl.add_argument("--temperature", type=float, help="MPPI temperature in cost units (default 0.05)")
    pl.add_argument("--init-std", type=float, help="initial sampling std (default 1.5)")
    pl.add_argument("--reduce", choices=("last", "sum", "last+mean"), default="last+mean", help="default last+mean")
    pl.add_argument("--stop-radius", type=float, default=2.5, help="stop rule radius in px (default 2.5)")
    pl.add_argument("--no-stop", action="store_true", help="disable the stop rule")
    pl.add_argument("--no-ceiling", action="store_true", help="skip the CEM-on-true-simulator row")
    pl.add_argument("--max-steps", type=int, default=200, help="steps per episode (default 200)")
    pl.add_argument("--seed", type=int, default=0, help="seed of the start/goal pairs and the planners")
    pl.add_argument("--gif-episodes", type=int, default=4, help="episodes shown in the GIF (default 4)")
    pl.add_argument("--threads", type=int, default=1, help="torch threads while planning (default 1; 0: leave)")
    pl.add_argument("--output", "-o", metavar="DIR", help="write results.json, episodes.gif, landscape.png here")
    pl.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    pl.set_defaults(func=_cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    from jepa_world.config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, PermissionError) as err:
        print(f"jepa-world: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
