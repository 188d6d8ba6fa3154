"""Command line: parse arguments and call the library. No logic lives here.

jepa-world pretrain [--config FILE ...] [key=value ...]
jepa-world info
jepa-world index DIR --output index.csv
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


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from jepa_world.config import load_config
    from jepa_world.train import pretrain

    cfg = load_config(args.config, args.overrides)
    summary = pretrain(cfg)
    metrics = summary["metrics"]
    if summary["main_process"]:
        loss = metrics.get("loss", float("nan"))
        print(f"done: {summary['step']} steps, loss {loss:.4f}, run dir {summary['output_dir']}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jepa-world", description="JEPA pretraining, world models and planning.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "pretrain",
        help="I-JEPA / V-JEPA self-supervised pretraining",
        epilog=_pretrain_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML recipe (repeatable)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=_cmd_pretrain)

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
    x.add_argument("--workers", type=int, default=0, metavar="N", help="processes opening files (default 0)")
    x.add_argument("--no-decode-check", action="store_true", help="only open files (faster; misses truncated files)")
    x.set_defaults(func=_cmd_index)
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
