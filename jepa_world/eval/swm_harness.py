"""Their harness, our model: a jepa_world world model evaluated by stable-worldmodel's own evaluation.

stable-worldmodel (PyPI ``stable-worldmodel``, MIT; the interface of its release 0.1.1) plans with a `WorldModelPolicy`
around a solver (`CEMSolver`: 300 samples x 30 iterations, top 30, in the papers) that asks the model for
``get_cost(info_dict, action_candidates) -> [B, S]``, and `World.evaluate` rolls the policy out in its own vectorised
envs and decides success by the env's own criterion (``terminated``). `SwmCostModel` is that cost model around a
`WorldModel`: it reads the current and goal frames of the info dict as `jepa_world.data.transforms` does (resized to
the encoder's input, ImageNet-normalised), encodes them, and scores candidates with the cost our own planners use
(`jepa_world.planning.costs.rollout_cost`: mean L1 latent distance of the rollout's last step to the goal, by default).

`evaluate_with_swm` runs their evaluation in its dataset mode (the field's protocol): each env starts at a dataset
row, its goal is the row ``goal_offset`` steps later of the same episode (pixels and the state the env's success check
compares), a budget of ``eval_budget`` env steps, success at any step. The rows come from an episode folder written by
``jepa-world collect --env swm/TwoRoom-v1`` (or Push-T) through `SwmEpisodes`, which gives them in the shape swm's
datasets give (``column_names``, ``load_chunk``), or from any swm dataset. stable-worldmodel is an optional dependency,
imported only here.

Shapes (swm's): ``info_dict`` values ``[B, S, T, ...]`` (B envs, S candidates, T history frames; pixels
``uint8 [..., H, W, 3]``), candidates ``[B, S, H, A * action_block]``, costs ``[B, S]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from jepa_world.data.episode_formats import open_episodes
from jepa_world.data.episodes import read_env_states, read_metadata
from jepa_world.data.transforms import frames_to_tensor
from jepa_world.models.readout import pixel_encoder
from jepa_world.models.world_model import WorldModel
from jepa_world.planning.costs import rollout_cost

__all__ = ["SOLVER_PAPERS", "SwmCostModel", "SwmEpisodes", "evaluate_with_swm", "state_callables"]

# The planner setting the papers report on stable-worldmodel's protocol (CEM; 5 blocks of 5 actions).
SOLVER_PAPERS = {"num_samples": 300, "n_steps": 30, "topk": 30, "horizon": 5, "receding_horizon": 5}


def _import_swm():
    try:
        import stable_worldmodel as swm
        from stable_worldmodel.policy import PlanConfig, WorldModelPolicy
        from stable_worldmodel.solver.cem import CEMSolver
    except ImportError as err:
        raise ImportError(
            f"evaluating with stable-worldmodel's harness needs it installed ({err}): pip install stable-worldmodel "
            "imageio pygame pymunk shapely opencv-python-headless"
        ) from err
    return swm, PlanConfig, WorldModelPolicy, CEMSolver


def _frames(x: Tensor | np.ndarray) -> np.ndarray:
    """The last history frame of each env, ``uint8 [B, H, W, 3]``, from swm's ``[B, S, T, H, W, 3]`` (or
    ``[B, T, H, W, 3]``, or channel-first) pixels; the S candidates of one env share their frames."""
    x = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)
    if x.ndim == 6:
        x = x[:, 0]
    if x.ndim != 5:
        raise ValueError(f"pixels must be [B, S, T, H, W, 3] or [B, T, H, W, 3], got shape {x.shape}")
    x = x[:, -1]
    if x.shape[-1] != 3 and x.shape[1] == 3:
        x = x.transpose(0, 2, 3, 1)
    if x.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8 frames as the env renders them, got {x.dtype}")
    return np.ascontiguousarray(x)


def _input_side(model: WorldModel) -> int:
    """The side of the frames the model's encoder reads (a pooled encoder's or a ViT's, through a readout)."""
    size = getattr(pixel_encoder(model.encoder), "input_size", None)  # (H, W) or an int
    size = size[-1] if isinstance(size, list | tuple) else size
    if not isinstance(size, int):
        raise ValueError(f"cannot tell the input size of encoder {type(model.encoder).__name__}")
    return size


class SwmCostModel(nn.Module):
    """A `WorldModel` as stable-worldmodel's solvers see a world model: ``get_cost(info_dict, candidates)``.

    Args:
        model: A loaded world model (`jepa_world.checkpoints.load_world_model`).
        p: 1 (mean L1, the package's planners) or 2 (mean squared) latent distance.
        reduce: Over the horizon: ``"last"``, ``"sum"``, ``"mean"`` or ``"last+mean"`` (`latent_distance`).
        normalize: ImageNet-normalise pixels, as the model's training data was (the dataset default).
        action_bounds: ``(low, high)`` per env action: candidates are clipped to them before the rollout (what the
            env will apply; swm's CEM samples unbounded Gaussians). None: as given.
    """

    def __init__(
        self,
        model: WorldModel,
        *,
        p: int = 1,
        reduce: str = "last",
        normalize: bool = True,
        action_bounds: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        self.p, self.reduce, self.normalize = p, reduce, normalize
        self.image_size = _input_side(model)
        self.action_bounds = action_bounds
        self.calls = 0  # get_cost calls: one per solver iteration

    @torch.no_grad()
    def encode(self, pixels: Tensor | np.ndarray) -> Tensor:
        """Latents ``[B, 1, HW, D]`` of the last history frame of swm pixels (see `_frames`)."""
        x = frames_to_tensor(_frames(pixels), normalize=self.normalize, image_size=self.image_size)
        return self.model.encode(x.to(next(self.model.parameters()).device))

    def _clip(self, a: Tensor) -> Tensor:
        if self.action_bounds is None:
            return a
        low, high = (torch.as_tensor(np.asarray(b, dtype=np.float32), device=a.device) for b in self.action_bounds)
        block = a.shape[-1] // low.numel()
        return a.clamp(low.reshape(-1).repeat(block), high.reshape(-1).repeat(block))

    @torch.no_grad()
    def get_cost(self, info_dict: dict, action_candidates: Tensor) -> Tensor:
        """Costs ``[B, S]`` of candidates ``[B, S, H, A * block]`` from the frames ``pixels`` to the frames ``goal``.

        The two latents are cached in `info_dict` (the solver passes the same dict at every iteration).
        """
        if "goal" not in info_dict:
            raise KeyError("info_dict has no 'goal' pixels: run swm's evaluation with a goal (its dataset mode)")
        if "_jepa_world_z0" not in info_dict:
            info_dict["_jepa_world_z0"] = self.encode(info_dict["pixels"])
            info_dict["_jepa_world_goal"] = self.encode(info_dict["goal"])
        self.calls += 1
        z0, z_goal = info_dict["_jepa_world_z0"], info_dict["_jepa_world_goal"]
        states = None
        if self.model.predictor.state_dim:
            s = torch.as_tensor(info_dict["state"])
            s = s[:, 0] if s.ndim == 4 else s  # [B, T, S_dim]
            states = s[:, -1:].to(z0.device, z0.dtype)  # [B, 1, S_dim]
        cost_fn = rollout_cost(self.model, z0, z_goal, states=states, p=self.p, reduce=self.reduce)
        a = self._clip(action_candidates.to(z0.device, z0.dtype))
        return cost_fn(a).to(action_candidates.device)


class SwmEpisodes:
    """A jepa_world episode folder as swm's evaluation reads a dataset: ``column_names`` and ``load_chunk``.

    Columns: ``pixels`` (``uint8 [T, 3, H, W]``, at the size the episodes were recorded at) and ``state`` (what the
    env's ``_set_state`` / ``_set_goal_state`` take: the first ``goal_dims`` entries of the recorded ``env_states``
    when the folder has them, else the recorded ``states``).

    Args:
        root: An episode folder with states (``jepa-world collect --env swm/...``).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.windows = open_episodes(root=self.root, window=1)
        if self.windows.state_dim is None:
            raise ValueError(
                f"{str(self.root)!r}: the episodes have no states; swm's evaluation sets the env from them"
            )
        spec = (read_metadata(self.root) or {}).get("env_state") or {}
        self.goal_dims = spec.get("goal_dims")

    @property
    def column_names(self) -> list[str]:
        return ["pixels", "state"]

    @property
    def lengths(self) -> np.ndarray:
        """Frames per episode."""
        return np.array([ep.num_frames for ep in self.windows.episodes])

    def _state(self, episode: int) -> np.ndarray:
        env_states = read_env_states(self.windows.episodes[episode].path) if self.goal_dims else None
        if env_states is not None:
            return env_states[:, : self.goal_dims].astype(np.float32)
        return self.windows.episode_states(episode)

    def load_chunk(self, episodes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[dict[str, Tensor]]:
        """Rows ``starts[i] .. ends[i] - 1`` of episode ``episodes[i]``, one dict of columns per i."""
        out = []
        for e, start, end in zip(np.asarray(episodes), np.asarray(starts), np.asarray(ends), strict=True):
            rows = np.arange(int(start), int(end))
            frames = self.windows.episode_frames(int(e))[rows]  # [T, H, W, 3]
            out.append({"pixels": torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))),
                        "state": torch.from_numpy(self._state(int(e))[rows])})  # fmt: skip
        return out


def state_callables() -> list[dict]:
    """swm's per-env setup calls that put each env in its start row's state with its goal row's goal (TwoRoom and
    Push-T both expose ``_set_state`` and ``_set_goal_state``)."""
    state = {"state": {"value": "state", "in_dataset": True}}
    goal = {"goal_state": {"value": "goal_state", "in_dataset": True}}  # the goal row's `state` column
    return [{"method": "_set_state", "args": state}, {"method": "_set_goal_state", "args": goal}]


def evaluate_with_swm(
    model: WorldModel,
    *,
    env_id: str,
    dataset: Any,
    episodes_idx: Sequence[int],
    start_steps: Sequence[int],
    goal_offset: int = 25,
    eval_budget: int = 50,
    image_size: int | None = None,
    solver: dict | None = None,
    p: int = 1,
    reduce: str = "last",
    seed: int = 1234,
    device: str | torch.device = "cpu",
) -> dict:
    """Evaluate `model` with stable-worldmodel's `World.evaluate`, `WorldModelPolicy` and `CEMSolver`.

    Args:
        model: The world model (its action width is the env's times the action block it was trained on).
        env_id: A stable-worldmodel env id, e.g. ``"swm/TwoRoom-v1"`` or ``"swm/PushT-v1"``.
        dataset: Where the start and goal rows come from: an swm dataset or `SwmEpisodes`.
        episodes_idx: Dataset episode of each evaluated pair (one env per pair).
        start_steps: Start row of each pair; its goal is the row ``goal_offset`` later.
        goal_offset: Steps from start to goal (the field: 25).
        eval_budget: Env steps per pair (the field: 50).
        image_size: Side the env renders its pixels at (default: the dataset's frames').
        solver: CEM and plan settings (``num_samples``, ``n_steps``, ``topk``, ``var_scale``, ``horizon``,
            ``receding_horizon``); default `SOLVER_PAPERS`.
        p, reduce: The latent cost (`SwmCostModel`).
        seed: The solver's seed.
        device: Where the solver samples candidates (the model's device).

    Returns:
        ``{"success_rate": in [0, 1], "successes": bool [N], "cost_calls": the model's get_cost calls, "swm": swm's
        own result dict}``.
    """
    swm, PlanConfig, WorldModelPolicy, CEMSolver = _import_swm()
    settings = {**SOLVER_PAPERS, "var_scale": 1.0, **(solver or {})}
    if len(episodes_idx) != len(start_steps):
        raise ValueError(f"{len(episodes_idx)} episodes_idx but {len(start_steps)} start_steps")
    if image_size is None:
        first = dataset.load_chunk(np.array([episodes_idx[0]]), np.array([0]), np.array([1]))[0]["pixels"]
        image_size = int(first.shape[-1])
    world = swm.World(env_id, num_envs=len(episodes_idx), image_shape=(image_size, image_size),
                      max_episode_steps=eval_budget + 1)  # fmt: skip
    try:
        space = world.envs.single_action_space
        env_dim = int(np.prod(space.shape))
        block, rest = divmod(model.predictor.action_dim, env_dim)
        if rest or block < 1:
            raise ValueError(f"the model's action width {model.predictor.action_dim} is not a multiple of {env_id}'s "
                             f"action width {env_dim}")  # fmt: skip
        cost = SwmCostModel(model, p=p, reduce=reduce, action_bounds=(space.low, space.high))
        config = PlanConfig(horizon=settings["horizon"], receding_horizon=settings["receding_horizon"],
                            action_block=block)  # fmt: skip
        cem = CEMSolver(cost, num_samples=settings["num_samples"], n_steps=settings["n_steps"],
                        topk=settings["topk"], var_scale=settings["var_scale"], device=device, seed=seed)  # fmt: skip
        world.set_policy(WorldModelPolicy(solver=cem, config=config))
        result = world.evaluate(dataset=dataset, episodes_idx=list(episodes_idx), start_steps=list(start_steps),
                                goal_offset=goal_offset, eval_budget=eval_budget,
                                callables=state_callables())  # fmt: skip
    finally:
        world.close()
    successes = np.asarray(result["episode_successes"], dtype=bool)
    return {"success_rate": float(result["success_rate"]) / 100.0, "successes": successes, "cost_calls": cost.calls,
            "swm": result}  # fmt: skip
