"""What does a world model's latent encode: the agent, or the scene around it? (cluttered Two-Rooms)

    python scripts/bench_latent_split.py --world-model "random-init ViT=runs/clutter/random-vit_seed0/wm" \
        --world-model "V-JEPA=runs/clutter/jepa-video_seed0/wm"

Renders every pair of `--scenes` scenes of `--env` (`two_rooms_clutter`: a textured floor per episode and three dots
that move on their own, each scene from its own generator) and `--positions` agent positions, encodes the frames with
each world model's encoder (`WorldModel.encode`, the latent the planner compares with the goal's), and splits the
latent's variance over the grid as in a two-way ANOVA: the share explained by the agent's position (the mean over
scenes varies with it), by the scene (the mean over positions varies with it), and the rest (interaction). A latent
the planner can use has most of its variance in the position column; on the plain arena the scene column is 0.
Then what the planner's cost sees inside one episode: the mean L1 latent distance (as `goal_distance`) between two
frames of the same scene whose agents are at two of the positions, against two frames whose agent is at the same
position while the distractors have moved `--distractor-steps` steps: the signal and the noise of the cost.

Results: docs/notes/cluttered-two-rooms.md ("A cluttered Two-Rooms").
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from jepa_world.checkpoints.world_model import load_world_model
from jepa_world.envs import make_env
from jepa_world.eval.agents import encode_pixels, render_batch
from jepa_world.eval.learned_agents import model_image_size


def variance_split(z: np.ndarray) -> tuple[float, float]:
    """Shares of the total variance of ``z [S, P, F]`` (scenes x positions x features) explained by the position
    (the per-position means over scenes) and by the scene (the per-scene means over positions)."""
    mean = z.mean(axis=(0, 1))
    total = ((z - mean) ** 2).sum(-1).mean()
    by_position = ((z.mean(axis=0) - mean) ** 2).sum(-1).mean()
    by_scene = ((z.mean(axis=1) - mean) ** 2).sum(-1).mean()
    return float(by_position / total), float(by_scene / total)


@torch.no_grad()
def _latents(model, env, positions: np.ndarray, scenes: list) -> np.ndarray:
    """Flattened latents ``[S, P, F]`` of the agent at each position in each scene."""
    return np.stack([encode_pixels(model, render_batch(env, positions, [s] * len(positions))).flatten(1).numpy()
                     for s in scenes])  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world-model", action="append", default=[], metavar="NAME=RUN", help="a train-wm run (repeat)")
    p.add_argument("--env", default="two_rooms_clutter", help="two_rooms_clutter (default) or two_rooms")
    p.add_argument("--scenes", type=int, default=16)
    p.add_argument("--positions", type=int, default=16)
    p.add_argument("--distractor-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if not args.world_model:
        p.error("nothing to measure: pass --world-model NAME=RUN")
    torch.set_num_threads(args.threads)
    rows = []
    for spec in args.world_model:
        name, sep, run = spec.partition("=")
        if not sep:
            p.error(f"--world-model {spec!r}: expected NAME=RUN")
        model = load_world_model(run).eval()
        env = make_env(args.env, image_size=model_image_size(model))
        rng = np.random.default_rng(args.seed)
        scenes = [env.sample_scene(np.random.default_rng((args.seed, i))) for i in range(args.scenes)]
        positions = np.stack([env.sample_position(rng) for _ in range(args.positions)])  # [P, 2]
        later = []
        for i, scene in enumerate(scenes):
            move = np.random.default_rng((args.seed, i, 1))
            for _ in range(args.distractor_steps):
                scene = env.advance_scene(scene, move)
            later.append(scene)
        z, z_later = _latents(model, env, positions, scenes), _latents(model, env, positions, later)  # [S, P, F]
        agent = np.abs(z[:, :, None] - z[:, None]).mean(-1)  # [S, P, P]
        agent = agent[:, ~np.eye(len(positions), dtype=bool)].mean()
        distractors = np.abs(z_later - z).mean()
        rows.append((name, *variance_split(z), agent, distractors))
    print(f"\n{args.env}: {args.scenes} scenes x {args.positions} agent positions; share of the latent's variance, "
          f"and the mean L1 latent distance when the agent moves vs when the distractors move {args.distractor_steps} "
          "steps\n")  # fmt: skip
    print("| world model | agent position | scene | interaction | L1: agent moves | L1: distractors move | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, pos, scene, agent, distractors in rows:
        print(
            f"| {name} | {100 * pos:.1f}% | {100 * scene:.1f}% | {100 * (1 - pos - scene):.1f}% | {agent:.4f} | "
            f"{distractors:.4f} | {agent / max(distractors, 1e-12):.2f} |"
        )


if __name__ == "__main__":
    main()
