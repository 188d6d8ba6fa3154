"""The policy task: a goal-conditioned policy learned inside a trained world model (`jepa-world train-policy`).

The world model is loaded once and frozen; frames of its own training episodes are encoded once into a bank of
latents (`policy.num_latents`), and every training item is a start latent and a goal latent from that bank
(`data.latent_pairs.LatentPairs`). The simulator is never touched. `policy.method=actor_critic` trains Dreamer's
actor and critic by gradient (the loop's AdamW); `policy.method=evolution` runs one CMA-ES generation per step and
needs no gradients (`Task.uses_gradients=False`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from jepa_world.checkpoints.io import CheckpointError, list_checkpoints, load_checkpoint
from jepa_world.checkpoints.world_model import load_world_model_run
from jepa_world.data.episode_formats import open_episodes
from jepa_world.data.latent_pairs import LatentPairs
from jepa_world.models.world_model import WorldModel
from jepa_world.policies import EvolvedController, GoalActor, GoalCritic, ImaginedActorCritic, LinearController
from jepa_world.policies.provenance import DIGEST_KEY, check_world_model, world_model_digest
from jepa_world.training.tasks import Task, episode_keys, episodes_of, param_groups


@torch.no_grad()
def encode_frames(
    model: WorldModel,
    root: Path,
    *,
    num: int,
    seed: int,
    image_size: int,
    batch_size: int = 256,
    keys: dict | None = None,
) -> Tensor:
    """Latents `[M, HW, D]` of `num` frames drawn without replacement (seeded) from the episodes in `root` (either
    format; `keys`: the LeRobot feature arguments of `open_episodes`)."""
    frames = open_episodes(root=root, window=1, image_size=image_size, **(keys or {}))  # one item per frame
    rng = np.random.default_rng((seed, 11))
    rows = np.sort(rng.choice(len(frames), size=min(num, len(frames)), replace=False))
    out = []
    for i in range(0, len(rows), batch_size):
        x = torch.stack([frames[int(r)]["x"][0] for r in rows[i : i + batch_size]])  # [B, 3, H, W]
        out.append(model.encode(x)[:, 0])  # [B, HW, D]
    return torch.cat(out)


def _spec(module: torch.nn.Module) -> dict:
    return {"class": type(module).__name__, "kwargs": dict(module.config)}


def _resumed_meta(cfg: DictConfig) -> tuple[Path, dict] | None:
    """(checkpoint, meta) of the policy checkpoint this run will resume from, or None for a fresh run."""
    resume = str(cfg.train.resume)
    if resume == "never":
        return None
    if resume == "auto":
        candidates = list(reversed(list_checkpoints(Path(cfg.train.output_dir).expanduser() / "checkpoints")))
    else:
        candidates = [Path(resume).expanduser()]
    for path in candidates:  # the newest readable one, as the loop resumes
        try:
            state = load_checkpoint(path)
        except (CheckpointError, OSError):
            continue
        if state.get("task") == "policy" and isinstance(state.get("meta"), dict):
            return path, state["meta"]
        return None  # another task's checkpoint: the loop refuses it, naming the task
    return None


def _check_resumed_world_model(cfg: DictConfig, run: Any, digest: str) -> None:
    """A resumed policy run continues in the world model it was trained in, by content (not path and step)."""
    resumed = _resumed_meta(cfg)
    if resumed is not None:
        path, meta = resumed
        check_world_model(meta, run.model, policy=path, found=run.source, found_step=run.step, digest=digest,
                          what="resumed in")  # fmt: skip


def policy_task(cfg: DictConfig) -> Task:
    """Build the policy learner of `cfg.policy` on the world model `policy.world_model`."""
    po = cfg.policy
    if po.world_model is None:
        raise ValueError("train-policy needs a trained world model: --checkpoint WORLD_MODEL_RUN (policy.world_model)")
    try:
        run = load_world_model_run(po.world_model)
    except CheckpointError as err:  # a pretraining run, an export, a policy run...: name the key, the loader the file
        raise ValueError(f"policy.world_model={po.world_model!r}: {err}") from None
    model = run.model
    digest = world_model_digest(model)  # what the policy is trained in, by content (policies.provenance)
    _check_resumed_world_model(cfg, run, digest)
    root = episodes_of(run.config)
    if not root.is_dir():
        raise FileNotFoundError(f"the world model {run.source} trained on {root}, which no longer exists")
    latents = encode_frames(
        model,
        root,
        num=po.num_latents,
        seed=cfg.seed,
        image_size=run.config.data.image_size,
        keys=episode_keys(run.config),
    )
    latent_dim, action_dim = latents[0].numel(), model.predictor.action_dim
    meta = {
        "method": str(po.method),
        "world_model": str(run.source),
        "world_model_step": run.step,
        DIGEST_KEY: digest,
        "latent_shape": list(latents.shape[1:]),
        "action_dim": action_dim,
        "max_action": po.max_action,
        "discount": po.discount,  # the critic's: policy + CEM and MCTS discount the same rewards
    }
    if po.method == "actor_critic":
        actor = GoalActor(latent_dim=latent_dim, action_dim=action_dim, max_action=po.max_action,
                          hidden_dim=po.hidden_dim, depth=po.depth)  # fmt: skip
        critic = GoalCritic(latent_dim=latent_dim, hidden_dim=po.hidden_dim, depth=po.depth)
        learner = ImaginedActorCritic(world_model=model, actor=actor, critic=critic, horizon=po.horizon,
                                      discount=po.discount, lam=po.lam, entropy_weight=po.entropy_weight,
                                      critic_ema=po.critic_ema, return_floor=po.return_floor)  # fmt: skip
        meta.update(actor_config=_spec(actor), critic_config=_spec(critic))
        return Task(
            name="policy",
            model=learner,
            dataset=LatentPairs(latents),
            param_groups=param_groups([actor, critic]),
            components={
                "actor": actor,
                "critic": critic,
                "slow_critic": learner.slow_critic,
                "normalizer": learner.normalizer,
            },
            prepare=lambda item, micro_step, rows, global_batch: item,
            after_step=lambda step: learner.update_slow_critic(),
            meta=meta,
        )
    controller = LinearController(latent_dim=latent_dim, action_dim=action_dim, max_action=po.max_action)
    learner = EvolvedController(world_model=model, controller=controller, horizon=po.horizon, sigma=po.sigma,
                                population=po.population)  # fmt: skip
    meta.update(actor_config=_spec(controller), critic_config=None)
    return Task(
        name="policy",
        model=learner,
        dataset=LatentPairs(latents),
        param_groups=[{"params": []}],
        components={"controller": controller, "cma": learner.cma},
        prepare=lambda item, micro_step, rows, global_batch: item,
        meta=meta,
        uses_gradients=False,
    )
