"""Planning: sampling planners over action sequences and model-predictive control, on cost callables only.

planners.py  CEM and MPPI behind one interface (`Planner.plan(cost_fn, ...)`), their shared settings
mpc.py       MPCAgent: replan every few steps with a warm start
search.py    MCTS: batched MuZero-style tree search over discrete actions in a latent model; `discrete_headings`
costs.py     goal costs: latent distances, and `rollout_cost` (the one place a world model becomes a cost)
settings.py  `make_planner` from the config's `PlannerSettings`
"""

from jepa_world.planning.costs import REDUCE_MODES, compile_rollout, goal_distance, latent_distance, rollout_cost
from jepa_world.planning.mpc import MPCAgent
from jepa_world.planning.planners import (
    CEMPlanner,
    CostFn,
    MPPIPlanner,
    Planner,
    PlanResult,
    SamplingPlanner,
    shift_plan,
)
from jepa_world.planning.search import MCTS, SearchResult, discrete_headings
from jepa_world.planning.settings import make_planner

__all__ = [
    "MCTS",
    "REDUCE_MODES",
    "CEMPlanner",
    "CostFn",
    "MPCAgent",
    "MPPIPlanner",
    "PlanResult",
    "Planner",
    "SamplingPlanner",
    "SearchResult",
    "compile_rollout",
    "discrete_headings",
    "goal_distance",
    "latent_distance",
    "make_planner",
    "rollout_cost",
    "shift_plan",
]
