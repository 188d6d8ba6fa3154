"""Does a frozen encoder know where the agent is? Linear probes of the Two-Rooms position from frozen ViT tokens.

    python scripts/bench_state_probe.py --episodes runs/bench_planning/episodes \
        --encoder ijepa=runs/bench_planning/pretrain_seed0 --encoder vjepa=runs/bench_planning/pretrain_video_seed0

Frames of recorded episodes (their `states` are the agent's (x, y) position in px) are encoded by each frozen encoder
(the EMA target encoder of a pretraining run; a video encoder reads each frame as one repeated tubelet, as under
the world model) and by random-init ViTs of the same architecture (`--random-seeds`, built from
`configs/pretrain/two_rooms_ijepa.yaml` as `bench_planning.py --encoder random-vit` does). A ridge regression from
all tokens (flattened, standardised; the regularisation picked on a validation split) and one from the mean-pooled
token predict the position on frames of held-out episodes, fit on a few frames or on all (`--fit-frames`: how
much labelled data the features need). Prints, per encoder: RMSE in px and the share of frames whose position is
recovered within 4.5 px (the planning benchmark's success radius).

`--probe keypoints` fits, in place of the ridge regressions, the world model's keypoint readout
(`KeypointReadout`: one MLP shared by every token, a soft-argmax over the token grid) to the position,
`--keypoint-steps` AdamW steps on the same frames: translation-equivariant, it finds a dot on a textured floor where
a regression from the flattened tokens cannot (`two_rooms_clutter` episodes).

Results: docs/notes/jepa-world-model.md ("A world model on JEPA embeddings").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from jepa_world.checkpoints import load_encoder
from jepa_world.config import load_config
from jepa_world.envs.geometry import ARENA_SIZE
from jepa_world.eval.state_probe import encode_tokens, episode_frames, probe_state
from jepa_world.factory import build_jepa
from jepa_world.models.readout_keypoints import KeypointReadout
from jepa_world.training.readout_fit import fit_readout

PRETRAIN_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "two_rooms_ijepa.yaml"


def _keypoint_fit(encoder: torch.nn.Module, tokens: np.ndarray, s: np.ndarray, tests: list[np.ndarray], steps: int,
                  seed: int = 0) -> list[np.ndarray]:  # fmt: skip
    """Train a one-keypoint `KeypointReadout` on frozen tokens `[N, T, D]` to the positions `s [N, 2]` (px of the
    arena, which the frame covers): its predictions in px for each of `tests`."""
    torch.manual_seed(seed)
    readout = KeypointReadout(backbone=encoder, keypoints=1)
    target = torch.from_numpy(s / ARENA_SIZE * 2 - 1).float()
    fit_readout(readout, torch.from_numpy(tokens), target, steps=steps, seed=seed)
    with torch.no_grad():
        return [(readout(torch.from_numpy(t))[:, 0].numpy() + 1) / 2 * ARENA_SIZE for t in tests]


def _keypoint_probe(encoder: torch.nn.Module, steps: int):
    """`probe_state`'s fit for `--probe keypoints`: a keypoint readout on `encoder`'s tokens in place of the ridge."""
    return lambda f, y, test: _keypoint_fit(encoder, f, y, [test], steps)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", required=True, help="episode folder with states (jepa-world collect --env two_rooms)")
    p.add_argument("--encoder", action="append", default=[], metavar="NAME=RUN", help="a pretraining run (repeat)")
    p.add_argument("--random-seeds", default="0", help="random-init ViTs to probe beside them (default 0; '' none)")
    p.add_argument("--num-episodes", type=int, default=1000, help="episodes whose frames are probed (default 1000)")
    p.add_argument("--fit-frames", default="100,1000,0", help="probe training-set sizes (0: all; default 100,1000,0)")
    p.add_argument("--probe", choices=("linear", "keypoints"), default="linear", help="ridge (default) or keypoints")
    p.add_argument("--keypoint-steps", type=int, default=3000, help="training steps of the keypoint probe")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    encoders: dict[str, torch.nn.Module] = {}
    for seed in [int(s) for s in args.random_seeds.split(",") if s.strip()]:
        cfg = load_config([PRETRAIN_RECIPE], [f"seed={seed}", f"data.episodes={args.episodes}"])
        torch.manual_seed(seed)
        encoders[f"random-init ViT (seed {seed})"] = build_jepa(cfg).target_encoder
    for spec in args.encoder:
        name, sep, run = spec.partition("=")
        if not sep:
            p.error(f"--encoder {spec!r}: expected NAME=RUN")
        encoders[name] = load_encoder(run, component="target_encoder")
    if not encoders:
        p.error("nothing to probe: pass --encoder NAME=RUN or --random-seeds")

    first = next(iter(encoders.values()))
    image_size = first.input_size[-1]
    try:
        x, s, episode = episode_frames(args.episodes, args.num_episodes, image_size)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    sizes = tuple(int(n) for n in args.fit_frames.split(","))
    print(f"{len(x)} frames of {args.num_episodes} episodes, positions in px (x, y), {image_size} px frames")
    rows = []
    for name, encoder in encoders.items():
        tic = time.perf_counter()
        z = encode_tokens(encoder, x)  # [N, T, D]
        if args.probe == "keypoints":
            rows.append(
                (name, probe_state(z, s, episode, sizes, fit=_keypoint_probe(encoder, args.keypoint_steps)), None)
            )
        else:
            rows.append((name, probe_state(z, s, episode, sizes), probe_state(z.mean(axis=1), s, episode, (0,))[0]))
        print(f"{name}: {time.perf_counter() - tic:.0f} s", flush=True)
    res = rows[0][1]
    fits = " / ".join(str(res[n]["fit_frames"]) for n in sizes)
    kind = "Keypoint" if args.probe == "keypoints" else "Linear"
    print(f"\n{kind} probe of the position, fit on {fits} frames, tested on {res[sizes[0]]['test_frames']} frames of "
          "held-out episodes: RMSE in px (share within 4.5 px)\n")  # fmt: skip
    head = " | ".join(f"all tokens, {res[n]['fit_frames']} frames" for n in sizes)
    all_fit = res[0 if 0 in sizes else sizes[-1]]["fit_frames"]
    pooled_head = "" if args.probe == "keypoints" else f" mean token, {all_fit} frames |"
    print(f"| encoder (frozen) | {head} |{pooled_head}")
    print("|---|" + "---|" * (len(sizes) + (args.probe != "keypoints")))
    for name, full, pooled in rows:
        cells = " | ".join(f"{full[n]['rmse']:.2f} ({100 * full[n]['within']:.0f}%)" for n in sizes)
        tail = "" if pooled is None else f" {pooled['rmse']:.2f} ({100 * pooled['within']:.0f}%) |"
        print(f"| {name} | {cells} |{tail}")


if __name__ == "__main__":
    main()
