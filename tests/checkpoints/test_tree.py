"""A train-wm checkpoint is the tree of the world model's parts: rebuilt without the training schema, compared on
resume; checkpoints written before trees (tests/fixtures/legacy_wm, the format of 83f7de7) still load, giving what
they gave then."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jepa_world import checkpoints
from jepa_world.checkpoints.io import CheckpointError
from jepa_world.checkpoints.tree import build_part_tree, diff_trees, part_tree
from jepa_world.checkpoints.world_model import world_model_from_state
from jepa_world.models.mlp_dynamics import ResidualMlpDynamics
from jepa_world.models.readout import LiftedReadout
from jepa_world.models.readout_keypoints import KeypointReadout
from jepa_world.models.vit import VisionTransformer
from jepa_world.models.world_model import WorldModel
from jepa_world.objectives.losses import InverseDynamicsTerm, VarianceTerm

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_wm"


def _model() -> WorldModel:
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    encoder = LiftedReadout(readout=KeypointReadout(backbone=vit, keypoints=2, hidden_dim=8), embed_dim=6, hidden_dim=8)
    predictor = ResidualMlpDynamics(embed_dim=6, action_dim=2, hidden_dim=8)
    terms = [VarianceTerm(weight=2.0), InverseDynamicsTerm(embed_dim=6, action_dim=2, hidden_dim=8)]
    return WorldModel(encoder=encoder, predictor=predictor, pool=True, freeze_encoder=False, latent_norm=False,
                      terms=terms)  # fmt: skip


def test_a_tree_rebuilds_the_same_model_without_any_config():
    model = _model().eval()
    tree = part_tree(model)
    assert tree["class"] == "WorldModel" and tree["children"]["encoder"]["class"] == "LiftedReadout"
    assert tree["children"]["encoder"]["children"]["readout"]["kwargs"]["keypoints"] == 2
    assert [t["class"] for t in tree["children"]["terms"]] == ["VarianceTerm", "InverseDynamicsTerm"]
    rebuilt = build_part_tree(tree)
    rebuilt.load_state_dict(model.state_dict())  # the same parameters, strictly
    rebuilt.eval()
    x, a = torch.rand(2, 3, 3, 32, 32), torch.rand(2, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(
            rebuilt.rollout(rebuilt.encode(x)[:, :1], a), model.rollout(model.encode(x)[:, :1], a)
        )
    assert part_tree(rebuilt) == tree and diff_trees(tree, part_tree(rebuilt)) == []


def test_a_tree_names_what_differs_and_refuses_unknown_classes():
    tree = part_tree(_model())
    other = part_tree(_model())
    other["children"]["encoder"]["children"]["readout"]["kwargs"]["keypoints"] = 3
    other["children"]["terms"] = other["children"]["terms"][:1]
    diffs = diff_trees(tree, other)
    assert "encoder.readout.keypoints: 2 -> 3" in diffs
    assert any(d.startswith("terms: ['VarianceTerm', 'InverseDynamicsTerm'] -> ['VarianceTerm']") for d in diffs)
    bad = {**tree, "children": {**tree["children"], "predictor": {"class": "os.system", "kwargs": {}}}}
    with pytest.raises(CheckpointError, match="unknown part class 'os.system' at predictor"):
        build_part_tree(bad)
    with pytest.raises(CheckpointError, match="cannot build the ResidualMlpDynamics at predictor"):
        build_part_tree({**tree, "children": {**tree["children"], "predictor": {
            "class": "ResidualMlpDynamics", "kwargs": {"embed_dim": 6}}}})  # fmt: skip


@pytest.mark.parametrize("name", ["joint_pooled", "vit_mlp_readout", "vit_keypoint_actions_lift"])
def test_a_checkpoint_from_before_trees_loads_and_gives_what_it_gave(name):
    state = torch.load(LEGACY / f"{name}.pt", weights_only=True)
    assert "tree" not in state["meta"] and "readout_dim:" in state["config"]  # the old, flat format (YAML text)
    model = world_model_from_state(state, LEGACY / f"{name}.pt")
    probe = state["probe"]
    with torch.no_grad():
        z = model.encode(probe["frames"])
        torch.testing.assert_close(z, probe["encode"], rtol=0, atol=0)
        torch.testing.assert_close(model.rollout(z[:, :1], probe["actions"]), probe["rollout"], rtol=0, atol=0)
    rebuilt = build_part_tree(part_tree(model))  # and today's tree of it rebuilds it
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval().encode(probe["frames"]), probe["encode"], rtol=0, atol=0)


def test_a_saved_legacy_config_is_upgraded_to_todays_keys():
    from jepa_world.config import saved_config

    state = torch.load(LEGACY / "vit_keypoint_actions_lift.pt", weights_only=True)
    cfg = saved_config(state["config"])
    assert cfg.wm.readout == {"type": "keypoints", "keypoints": 1, "fit": {"type": "actions", "steps": 5}, "lift": 8}
    assert cfg.wm.encoder.checkpoint is not None and cfg.wm.predictor.name == "dynamics_mlp"
    assert cfg.wm.predictor.kwargs == {"hidden_dim": 16}
    joint = saved_config(torch.load(LEGACY / "joint_pooled.pt", weights_only=True)["config"])
    assert joint.wm.terms.smooth == 1.0 and joint.wm.encoder.kwargs == {"pool": 4, "hidden_dim": 16}
    assert joint.wm.readout == {"type": "none"}


def test_train_wm_saves_the_tree_and_resume_refuses_a_changed_one(tmp_path):
    from jepa_world.config import load_config
    from jepa_world.training import train_world_model
    from tests.training.test_world_model_task import _over

    over = _over(tmp_path, **{"train.max_steps": 2, "wm.encoder.embed_dim": 8, "wm.predictor.name": "dynamics_mlp"})
    train_world_model(load_config([], over, command="train-wm"))
    state = checkpoints.load_checkpoint(checkpoints.list_checkpoints(tmp_path / "run" / "checkpoints")[-1])
    assert state["meta"]["tree"]["children"]["encoder"]["class"] == "PooledEncoder"
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"}
    changed = [*over[:-1], "train.max_steps=4", "wm.encoder.kwargs={hidden_dim: 32}"]
    with pytest.raises(RuntimeError, match=r"cannot resume .*model encoder.hidden_dim: 256 -> 32"):
        train_world_model(load_config([], changed, command="train-wm"))
    after = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before  # the refusal leaves the run folder as it was
