"""Command line: parse arguments and call the library. No logic lives here.

jepa-world pretrain [--config FILE ...] [key=value ...]
jepa-world info
jepa-world index DIR --output index.csv
jepa-world export RUN --output DIR [--component target_encoder|encoder|predictor] [--format jepa_world|timm|hf]
jepa-world probe --checkpoint RUN_OR_CKPT|random [--config FILE ...] [probe.key=value ...]
jepa-world train-policy --checkpoint WM_RUN [--config FILE ...] [policy.key=value ...]
jepa-world plan --checkpoint RUN [--agent cem|mppi|policy|policy+cem|mcts] [--config FILE ...] [plan.key=value ...]

Every command that is configured (pretrain, train-wm, train-policy, probe, plan) reads the one typed schema of
`jepa_world.config`: `--config FILE` recipes, then `key=value` overrides. The older flags of `probe` and `plan`
(`--horizon 30`, ...) are aliases of their keys (`plan.horizon=30`); their defaults live in the schema only.
"""

from __future__ import annotations

import argparse
import os
import sys

from jepa_world.atomic import atomic_write_text, check_writable_target


def _pretrain_epilog() -> str:
    from jepa_world.config import defaults_table

    rows = "\n".join(f"  {k} = {v}" for k, v in defaults_table() if not k.startswith(("plan.", "probe.")))
    return (
        "Overrides are key=value pairs (OmegaConf dotlist), applied after the --config files.\n"
        "Main keys: train.output_dir, train.max_steps, train.batch_size, seed, model.name, data.index.\n\n"
        f"All keys and their defaults:\n{rows}\n\n"
        "Several processes / GPUs / nodes: accelerate launch -m jepa_world.cli pretrain ..."
    )


def _train(args: argparse.Namespace, command: str) -> int:
    from jepa_world.config import load_config
    from jepa_world.training import pretrain, train_policy, train_world_model

    values = {"policy.world_model": ("--checkpoint", args.checkpoint)} if command == "train-policy" else None
    cfg = load_config(args.config, args.overrides, command=command, values=values)
    train = {"pretrain": pretrain, "train-wm": train_world_model, "train-policy": train_policy}[command]
    summary = train(cfg)
    if summary["main_process"]:
        loss = summary["metrics"].get("loss")
        loss_text = f"loss {loss:.4f}" if isinstance(loss, float | int) else "no loss logged"
        again = " (already finished: nothing trained)" if summary.get("already_finished") else ""
        print(f"done: {summary['step']} steps, {loss_text}, run dir {summary['output_dir']}{again}")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    return _train(args, "pretrain")


def _cmd_train_wm(args: argparse.Namespace) -> int:
    return _train(args, "train-wm")


def _cmd_train_policy(args: argparse.Namespace) -> int:
    return _train(args, "train-policy")


def _cmd_collect(args: argparse.Namespace) -> int:
    from jepa_world.envs.collect import collect_episodes, policy_names
    from jepa_world.envs.field_envs import parse_key_values

    check_writable_target(args.output, what="--output")
    if args.policy is not None and args.policy not in policy_names(args.env):
        raise ValueError(f"--policy {args.policy}: not a policy for --env {args.env}; valid: "
                         f"{', '.join(policy_names(args.env))}")  # fmt: skip
    root = collect_episodes(env_name=args.env, num_episodes=args.episodes, steps=args.steps, output_dir=args.output,
                            policy=args.policy, seed=args.seed, image_size=args.image_size,
                            overwrite=args.overwrite, format=args.format, fps=args.fps,
                            env_kwargs=parse_key_values(args.env_kwargs, what="--env-kwargs"),
                            policy_kwargs=parse_key_values(args.policy_kwargs, what="--policy-kwargs"),
                            state_key=args.state_key)  # fmt: skip
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
    from jepa_world.data.index_writer import format_report, write_index

    report = write_index(
        args.dir,
        args.output,
        relative=args.relative,
        reader=args.reader,
        check_decode=not args.no_decode_check,
        num_workers=args.workers,
    )
    print(format_report(report))
    return 0 if report.num_videos else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from jepa_world.checkpoints import export_checkpoint

    overrides = {k: v for k, v in (("num_heads", args.num_heads), ("num_frames", args.num_frames)) if v is not None}
    check_writable_target(args.output, what="--output")
    out = export_checkpoint(args.run, args.output, component=args.component, format=args.format, **overrides)
    print(f"exported {args.component} of {args.run} to {out} ({args.format} format)")
    return 0


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


# Flag aliases of config keys: (flag, key, type, help). The defaults are the schema's (shown by --help).
_PROBE_ALIASES = [
    ("--component", "probe.component", str, "target_encoder or encoder"),
    ("--data", "probe.data", str, "builtin, or a video index / a folder with one subfolder per class"),
    ("--val-data", "probe.val_data", str, "validation split for --data PATH (else PATH is split)"),
    ("--test-data", "probe.test_data", str, "test split for --data PATH"),
    ("--kind", "probe.kind", str, "linear, attentive or both"),
    ("--epochs", "probe.epochs", int, "probe epochs"),
    ("--batch-size", "probe.batch_size", int, "probe batch size"),
    ("--lrs", "probe.lrs", _floats, "learning rates, comma-separated"),
    ("--wds", "probe.wds", _floats, "weight decays, comma-separated"),
    ("--num-train", "probe.num_train", int, "built-in train clips"),
    ("--num-val", "probe.num_val", int, "built-in val clips"),
    ("--num-test", "probe.num_test", int, "built-in test clips"),
    ("--seed", "seed", int, "probe init, batch order, data split, random encoders"),
    ("--workers", "probe.num_workers", int, "DataLoader workers"),
    ("--output", "probe.output", str, "also write the results as JSON"),
]
_PROBE_SWITCHES = [
    ("--random-init", "probe.random_init", True, "same architecture as --checkpoint, random weights"),
    ("--no-cache", "probe.cache", False, "re-encode every epoch instead of caching features"),
]
_PLAN_ALIASES = [
    (
        "--env",
        "plan.env",
        str,
        "two_rooms, point_arena, two_rooms_clutter, two_rooms_discrete (--agent mcts) or a "
        "gymnasium id (swm/PushT-v1, swm/TwoRoom-v1, module:EnvId); default: the env of the model's episodes",
    ),
    (
        "--protocol",
        "plan.protocol",
        str,
        "ours (our envs), swm (the papers') or strict; default: ours on our envs, swm on the others",
    ),
    (
        "--episodes-dir",
        "plan.episodes_dir",
        str,
        "swm / strict: the episodes the pairs come from (default: the model's own; for strict its held-out ones)",
    ),
    ("--episodes", "plan.episodes", int, "ours: episodes per agent"),
    ("--agent", "plan.agent", str, "cem, mppi, policy, policy+cem or mcts"),
    ("--planner", "plan.agent", str, "cem or mppi (the older name of --agent)"),
    ("--samples", "plan.samples", int, "samples per iteration"),
    ("--elites", "plan.elites", int, "elites"),
    ("--iterations", "plan.iterations", int, "planner iterations per replan"),
    ("--horizon", "plan.horizon", int, "planning horizon in steps"),
    ("--replan-every", "plan.replan_every", int, "steps between replans"),
    ("--temperature", "plan.temperature", float, "MPPI temperature in cost units"),
    ("--init-std", "plan.init_std", float, "initial sampling std"),
    ("--reduce", "plan.reduce", str, "last, sum or last+mean"),
    ("--stop-radius", "plan.stop_radius", float, "stop rule radius in px"),
    ("--max-steps", "plan.max_steps", int, "ours: steps per episode"),
    ("--seed", "seed", int, "seed of the start/goal pairs and the planners"),
    ("--gif-episodes", "plan.gif_episodes", int, "episodes shown in the GIF"),
    ("--threads", "plan.threads", int, "torch threads while planning (0: leave)"),
    ("--output", "plan.output", str, "write results.json, episodes.gif, landscape.png here"),
]
_PLAN_SWITCHES = [
    ("--no-stop", "plan.stop_radius", None, "disable the stop rule"),
    ("--no-ceiling", "plan.ceiling", False, "skip the CEM-on-true-simulator row"),
    ("--ceiling", "plan.ceiling", True, "add the CEM-on-true-simulator row (off by default on the field's envs)"),
]


def _add_aliases(parser: argparse.ArgumentParser, aliases: list, switches: list) -> None:
    for flag, key, kind, text in aliases:
        parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=f"{text} (= {key}=...)")
    for flag, key, value, text in switches:
        parser.add_argument(flag, action="store_const", const=value, default=argparse.SUPPRESS,
                            dest=flag.lstrip("-").replace("-", "_"), help=f"{text} (= {key}={value})")  # fmt: skip


def _alias_values(args: argparse.Namespace, aliases: list, switches: list) -> dict:
    """{config key: (flag, value)} for the alias flags given on the command line."""
    values = {}
    for flag, key, *_ in [*aliases, *switches]:
        dest = flag.lstrip("-").replace("-", "_")
        if hasattr(args, dest):
            values[key] = (f"flag {flag}", getattr(args, dest))
    return values


def _section_epilog(section: str) -> str:
    from jepa_world.config import defaults_table

    rows = "\n".join(f"  {k} = {v}" for k, v in defaults_table(section))
    return (
        f"Keys of the {section}.* section and their defaults (set them as key=value, in a --config FILE, or with\n"
        f"the flag aliases above):\n{rows}\n  seed = 0"
    )


def _cmd_probe(args: argparse.Namespace) -> int:
    import json

    from jepa_world.config import load_config
    from jepa_world.eval.probe import format_results
    from jepa_world.eval.probe_command import probe_checkpoint, stderr_log

    values = _alias_values(args, _PROBE_ALIASES, _PROBE_SWITCHES)
    cfg = load_config(args.config, args.overrides, command="probe", values=values)
    if cfg.probe.output:
        check_writable_target(cfg.probe.output, what="probe.output")
    results, title = probe_checkpoint(args.checkpoint, cfg, log=None if args.quiet else stderr_log)
    print(format_results(results, title=title))
    if cfg.probe.output:
        atomic_write_text(cfg.probe.output, json.dumps(results, indent=1))
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from jepa_world.config import load_config
    from jepa_world.eval.plan_benchmark import plan_from_config

    values = _alias_values(args, _PLAN_ALIASES, _PLAN_SWITCHES)
    cfg = load_config(args.config, args.overrides, command="plan", values=values)
    if cfg.plan.output:
        check_writable_target(cfg.plan.output, what="plan.output")
    result = plan_from_config(args.checkpoint, cfg, log=None if args.quiet else lambda msg: print(msg, file=sys.stderr))
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
        "wm.episodes, Two-Rooms episodes are collected into <train.output_dir>/episodes first; wm.episodes=DIR reads "
        "our episode format or a LeRobot v3 dataset (wm.lerobot.camera / _action_key / _state_key pick its "
        "features). wm.encoder.checkpoint=RUN uses a pretrained (frozen) encoder.",
    )
    _add_config_args(w)
    w.set_defaults(func=_cmd_train_wm)

    tp = sub.add_parser(
        "train-policy",
        help="learn a goal-conditioned policy inside a trained world model (no simulator)",
        epilog="Policy keys live under policy.*: policy.method=actor_critic (Dreamer) or evolution (CMA-ES, World "
        "Models). Starts and goals are frames of the world model's own episodes; the run records which world model "
        "it was trained in. Act with `jepa-world plan --checkpoint POLICY_RUN --agent policy` (or policy+cem, mcts).",
    )
    tp.add_argument("--checkpoint", required=True, metavar="WM_RUN", help="train-wm run folder or checkpoint file")
    _add_config_args(tp)
    tp.set_defaults(func=_cmd_train_policy)

    c = sub.add_parser(
        "collect",
        help="collect offline episodes from a pixel environment (any gymnasium env) with a behaviour policy",
        epilog="Examples: --env swm/PushT-v1 (policy pusht_weak), --env swm/TwoRoom-v1 (policy tworoom_expert; "
        'both need pip install "jepa_world[field]"), --env mypackage.envs:MyEnv-v0 (imports mypackage.envs first). '
        "Values of --env-kwargs / --policy-kwargs are YAML scalars (3, 0.5, true, null, [1, 2], text).",
    )
    c.add_argument(
        "--env",
        default="two_rooms",
        help="two_rooms, point_arena, two_rooms_clutter or any gymnasium id (swm/... imports stable-worldmodel; "
        "module:EnvId imports module first)",
    )
    c.add_argument("--episodes", type=int, default=1000, help="number of episodes (default 1000)")
    c.add_argument("--steps", type=int, default=16, help="actions per episode (default 16)")
    c.add_argument("--output", required=True, metavar="DIR", help="output directory")
    c.add_argument(
        "--policy",
        default=None,
        help="behaviour policy; default per env: von_mises (Two-Rooms), tworoom_expert (swm/TwoRoom-v1), pusht_weak "
        "(swm/PushT-v1), random (others). Two-Rooms: von_mises, random, noop, straight_line, door_waypoint; other "
        "envs: random, tworoom_expert, pusht_weak",
    )
    c.add_argument("--env-kwargs", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="env constructor arguments (repeatable), e.g. --env-kwargs resolution=96")  # fmt: skip
    c.add_argument("--policy-kwargs", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="behaviour policy arguments, e.g. --policy-kwargs action_noise=1.0 repeat_prob=0")  # fmt: skip
    c.add_argument("--state-key", default=None, metavar="KEY",
                   help="key of a dict observation stored as states (default: state when present, else none; '' "
                   "for none)")  # fmt: skip
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--image-size", type=int, default=64)
    c.add_argument("--overwrite", action="store_true", help="replace episodes (or a dataset) already in DIR")
    c.add_argument(
        "--format",
        choices=("episodes", "lerobot"),
        default="episodes",
        help="episodes: our .npz episodes (default); lerobot: a LeRobot v3 dataset (mp4 + parquet)",
    )
    c.add_argument("--fps", type=int, default=10, help="frame rate recorded in a LeRobot dataset (default 10)")
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
        "a position table only), format hf for transformers' AutoModel.from_pretrained(DIR) (IJepaModel for image "
        "encoders with a table, VJEPA2Model for RoPE video encoders with their predictor). See docs/hub.md.",
    )
    e.add_argument("run", metavar="RUN", help="run folder, checkpoint file or export folder")
    e.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write")
    e.add_argument(
        "--component",
        choices=("target_encoder", "encoder", "predictor"),
        default="target_encoder",
        help="which network (default target_encoder, the EMA encoder the releases evaluate)",
    )
    e.add_argument("--format", choices=("jepa_world", "timm", "hf"), default="jepa_world", help="default jepa_world")
    e.add_argument("--num-heads", type=int, metavar="N", help="heads, for official checkpoints of unlisted widths")
    e.add_argument("--num-frames", type=int, metavar="T", help="clip length of an official video checkpoint (16)")
    e.set_defaults(func=_cmd_export)

    r = sub.add_parser(
        "probe",
        help="frozen evaluation: linear and attentive probes (a sweep of lr x wd heads) on an encoder's features",
        description="Train probes on the frozen features of an encoder and print top-1 accuracy: the best head is "
        "chosen on val and reported on test. Built-in data: bouncing-shapes clips at the encoder's input size "
        "labelled with the motion direction of the largest shape (8 classes; images: the kind of the largest shape, "
        "3 classes). probe.data=PATH is a video index (`path label` lines) or a folder with one subfolder per class. "
        "With --checkpoint random, the other config keys (model.*, data.*, ...) describe the random encoder.",
        epilog=_section_epilog("probe"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument(
        "--checkpoint",
        required=True,
        metavar="RUN_OR_CKPT",
        help="run folder, checkpoint, export folder or official checkpoint; 'random': a random encoder built from "
        "the config (the weights a pretraining run with that config and seed starts from)",
    )
    _add_config_args(r)
    _add_aliases(r, _PROBE_ALIASES, _PROBE_SWITCHES)
    r.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    r.set_defaults(func=_cmd_probe)

    pl = sub.add_parser(
        "plan",
        help="goal reaching with a trained world model + CEM/MPPI against floors and a ceiling, on one protocol",
        description="Evaluate `train-wm` checkpoint RUN (or a `train-policy` run for --agent policy, policy+cem, "
        "mcts) on one protocol (plan.protocol). ours, on our envs: start/goal pairs in opposite rooms; the learned "
        "agent (pixels of the observation and the goal image only: CEM / MPPI on the world model, the policy alone, "
        "the policy inside CEM, or MCTS over the discrete actions of --env two_rooms_discrete), random actions, "
        "no-op, straight line to the goal and the planner on the true simulator (ceiling), all on the same pairs; "
        "success = final distance < 4.5 px after plan.max_steps steps; with plan.output=DIR writes results.json, "
        "episodes.gif and landscape.png. swm (the papers') and strict, on an env whose state a stored row restores "
        "(--env swm/PushT-v1, swm/TwoRoom-v1): pairs drawn from the episodes (goal = row + plan.offset), "
        "plan.budget env steps, success by the env's own check (swm: at any step; strict: held-out episodes, pairs "
        "solved at the start dropped, at the final step); floors no-op, random and replay of the dataset's actions; "
        "with plan.output=DIR writes results.json and pairs.json. A wm.frameskip=k model plans in blocks of k "
        "actions (the planner setting of the papers: --config configs/plan/swm_cem.yaml). Prints one table.",
        epilog=_section_epilog("plan"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pl.add_argument("--checkpoint", required=True, metavar="RUN",
                    help="train-wm run (a train-policy run for the policy agents): folder or checkpoint")  # fmt: skip
    _add_config_args(pl)
    _add_aliases(pl, _PLAN_ALIASES, _PLAN_SWITCHES)
    pl.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    pl.set_defaults(func=_cmd_plan)
    return parser


# What a user can cause (bad values, files, disks, data, divergence): one line, no traceback. A bug is none of these.
_EXPECTED = (ValueError, TypeError, KeyError, RuntimeError, OSError, FloatingPointError, ImportError)


def main(argv: list[str] | None = None) -> int:
    """Run one command; every expected error prints `jepa-world <command>: error: <message>` and returns 2.

    `JEPA_WORLD_DEBUG=1` re-raises instead, for the traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"jepa-world {args.command}: interrupted", file=sys.stderr)
        return 130
    except _EXPECTED as err:
        if os.environ.get("JEPA_WORLD_DEBUG", "") not in ("", "0"):
            raise
        message = str(err) if not isinstance(err, KeyError) else str(err.args[0] if err.args else err)
        if isinstance(err, OSError) and err.filename and str(err.filename) not in message:
            message = f"{err.filename}: {err.strerror or message}"
        print(f"jepa-world {args.command}: error: {message or type(err).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
