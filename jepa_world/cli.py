"""Command line: parse arguments and call the library. No logic lives here.

jepa-world pretrain [--config FILE ...] [key=value ...]
jepa-world info
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
