"""Costs built from a world model (jepa_world/planning/costs.py): the compiled rollout."""

from __future__ import annotations

import pytest
import torch

from jepa_world.models import create_model
from jepa_world.models.small import PooledEncoder
from jepa_world.models.world_model import WorldModel
from jepa_world.planning import compile_rollout, rollout_cost

torch.set_num_threads(1)


def _mlp_world_model() -> WorldModel:
    torch.manual_seed(0)
    predictor = create_model("dynamics_mlp", embed_dim=8, action_dim=2, hidden_dim=16)
    with torch.no_grad():  # the zero-initialised output layers would make every rollout "nothing moves"
        for p in predictor.parameters():
            p.normal_(0.0, 0.3)
    encoder = PooledEncoder(img_size=16, hidden_dim=16, embed_dim=8)
    return WorldModel(encoder=encoder, predictor=predictor, pool=True, freeze_encoder=True).eval()


def test_compiled_rollout_gives_the_eager_rollout_and_cost():
    wm = _mlp_world_model()
    compiled = compile_rollout(wm)
    z0 = torch.nn.functional.layer_norm(torch.randn(2, 1, 1, 8), (8,))  # [E, 1, HW, D]
    z_goal = torch.nn.functional.layer_norm(torch.randn(2, 1, 8), (8,))
    a = torch.randn(2, 5, 3, 2)  # [E, S, H, A]
    with torch.no_grad():
        ref, got = wm.rollout(z0[:, None], a), compiled.rollout(z0[:, None], a)
        assert (ref[:, :, 1:] - ref[:, :, :1]).abs().max() > 1e-2  # the rollout moves: the comparison can fail
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
        cost = rollout_cost(compiled, z0, z_goal, reduce="last+mean")(a)
        torch.testing.assert_close(cost, rollout_cost(wm, z0, z_goal, reduce="last+mean")(a), atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:dynamo_pgo force disabled")
def test_a_compile_failure_names_plan_compile_and_the_way_out():
    wm = _mlp_world_model()
    z0 = torch.nn.functional.layer_norm(torch.randn(1, 1, 1, 8), (8,))
    no_compiler = torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",), "force_disable_caches": True})
    expected = r"plan.compile: .*C\+\+ compiler.*plan without plan.compile"
    torch._dynamo.reset()
    try:
        with no_compiler, pytest.raises(RuntimeError, match=expected):
            compile_rollout(wm).rollout(z0[:, None], torch.randn(1, 3, 2, 2))
    finally:
        torch._dynamo.reset()
