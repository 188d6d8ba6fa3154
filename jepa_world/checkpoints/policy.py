"""Policy checkpoints (`jepa-world train-policy` runs): the learned policy, its critic, and its world model's name.

A policy run's checkpoints hold the networks (`actor`, `critic`, ... or `controller`, `cma`) and in `meta` their
constructor configs, the method, and the world model they were trained in (the checkpoint file and its step, the
latent shape and action width). `load_policy` rebuilds the networks from that meta and loads them strictly;
`check_policy_fits` names both sizes when a policy meets a world model it does not fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from jepa_world.checkpoints.io import CheckpointError, load_checkpoint
from jepa_world.checkpoints.paths import resolve_checkpoint
from jepa_world.checkpoints.pretrained import decode_kwargs
from jepa_world.checkpoints.state_dict import abbrev, load_state_dict_strict
from jepa_world.checkpoints.world_model import checkpoint_kind, expecting
from jepa_world.models.world_model import WorldModel
from jepa_world.policies.networks import GoalActor, GoalCritic, LinearController

EXPECTED_POLICY = (
    "expected a policy run (jepa-world train-policy --checkpoint WORLD_MODEL_RUN): its folder or one of its "
    "checkpoints/step_*.pt"
)
POLICY_CLASSES = {cls.__name__: cls for cls in (GoalActor, GoalCritic, LinearController)}


@dataclass
class PolicyRun:
    """A trained policy: `actor(z, z_goal)` (a `GoalActor` or a `LinearController`), the critic when trained.

    Attributes:
        method: "actor_critic" or "evolution".
        actor: the policy network (eval mode).
        critic: `GoalCritic` (actor-critic runs), else None.
        world_model: the world-model checkpoint the policy was trained in.
        meta: the checkpoint's meta (latent shape, action dim, max action, world-model step).
        source: the policy checkpoint file.
    """

    method: str
    actor: nn.Module
    critic: nn.Module | None
    world_model: str
    meta: dict
    source: Path


def _build(spec: dict, source: Path, name: str) -> nn.Module:
    cls = POLICY_CLASSES.get(spec.get("class"))
    if cls is None:
        raise CheckpointError(f"{source}: unknown {name} class {spec.get('class')!r} in meta")
    return cls(**decode_kwargs(spec["kwargs"]))


def load_policy(path_or_run: str | Path) -> PolicyRun:
    """Load a `train-policy` run folder (its newest checkpoint) or checkpoint file.

    Raises:
        CheckpointError: not a policy checkpoint (a world-model or pretraining run is named as such), or weights that
            do not fit (keys and shapes named).
    """
    with expecting(EXPECTED_POLICY):
        source = resolve_checkpoint(path_or_run)
        state = None if source.is_dir() else load_checkpoint(source)
    if state is None or state.get("task") != "policy":
        task = f" (task={state['task']!r})" if state is not None and "task" in state else ""
        raise CheckpointError(
            f"{source} is not a policy checkpoint{task}: it is {checkpoint_kind(state, source)}; {EXPECTED_POLICY}"
        )
    if "meta" not in state:
        raise CheckpointError(
            f"{source}: a policy checkpoint needs its meta; it holds {abbrev(sorted(map(str, state)))}"
        )
    meta = state["meta"]
    method = meta["method"]
    actor = _build(meta["actor_config"], source, "actor")
    critic = _build(meta["critic_config"], source, "critic") if meta.get("critic_config") else None
    modules = {"actor" if method == "actor_critic" else "controller": actor}
    if critic is not None:
        modules["critic"] = critic
    for name, module in modules.items():
        if name not in state:
            raise CheckpointError(f"{source} has no {name!r}; it holds {abbrev(sorted(map(str, state)))}")
        load_state_dict_strict(module, state[name], what=f"{source} [{name}]")
    return PolicyRun(method=method, actor=actor.eval(), critic=None if critic is None else critic.eval(),
                     world_model=str(meta["world_model"]), meta=meta, source=source)  # fmt: skip


def check_policy_fits(policy: PolicyRun, model: WorldModel, *, latent_shape: tuple[int, ...]) -> None:
    """A policy acts on one world model's latents and actions: refuse another's, naming both sizes."""
    want_latent, want_action = tuple(policy.meta["latent_shape"]), int(policy.meta["action_dim"])
    action_dim = model.predictor.action_dim
    if tuple(latent_shape) != want_latent or action_dim != want_action:
        raise ValueError(
            f"policy {policy.source} was trained in a world model with latents {list(want_latent)} and {want_action}-d "
            f"actions; this world model has latents {list(latent_shape)} and {action_dim}-d actions (trained in "
            f"{policy.world_model})"
        )
