"""Policies learned in imagination: goal-conditioned controllers trained inside a frozen world model.

networks.py      GoalActor (tanh Gaussian), GoalCritic, LinearController (World Models), goal_features
imagination.py   imagined rollouts, the goal-distance reward, lambda-returns, DreamerV3 return normalisation
actor_critic.py  ImaginedActorCritic (Dreamer: dynamics backprop through the frozen world model, slow critic)
cmaes.py         CMAES (Hansen's (mu/mu_w, lambda)-CMA-ES, state in buffers)
evolution.py     EvolvedController (CMA-ES on imagined episodes)
"""

from jepa_world.policies.actor_critic import ImaginedActorCritic
from jepa_world.policies.cmaes import CMAES
from jepa_world.policies.evolution import EvolvedController
from jepa_world.policies.imagination import ReturnNormalizer, goal_rewards, imagine, lambda_returns
from jepa_world.policies.networks import GoalActor, GoalCritic, LinearController, bound_action, goal_features

__all__ = [
    "CMAES",
    "EvolvedController",
    "GoalActor",
    "GoalCritic",
    "ImaginedActorCritic",
    "LinearController",
    "ReturnNormalizer",
    "bound_action",
    "goal_features",
    "goal_rewards",
    "imagine",
    "lambda_returns",
]
