"""Training: the one loop (`loop.py`, the only code that knows Accelerate and processes), the run folder's state
(`run_state.py`: resume, RNG, metrics, stop votes) and what is trained (`tasks.py`: pretraining, world models;
`policy_task.py`: policies learned inside a world model)."""

from jepa_world.training.loop import check_batch_split, fit, pretrain, train_policy, train_world_model
from jepa_world.training.policy_task import policy_task
from jepa_world.training.tasks import Task, param_groups, pretrain_task, world_model_task

__all__ = ["Task", "check_batch_split", "fit", "param_groups", "policy_task", "pretrain", "pretrain_task",
           "train_policy", "train_world_model", "world_model_task"]  # fmt: skip
