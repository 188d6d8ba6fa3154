"""A policy is tied to its world model by content (issue 41): the digest of the world model's weights is recorded
when the policy trains; planning with it or resuming it in a world model retrained into the same folder (another
seed, the same step) is refused naming both; an old policy run without a digest is planned with a warning, once."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch

pytest.importorskip("gymnasium")

from jepa_world.checkpoints import load_checkpoint
from jepa_world.checkpoints.io import list_checkpoints
from jepa_world.checkpoints.policy import load_policy
from jepa_world.checkpoints.world_model import load_world_model
from jepa_world.cli import main
from jepa_world.config import load_config
from jepa_world.eval.plan_benchmark import plan_from_config
from jepa_world.eval.policy_agents import LearnedPolicyAgent
from jepa_world.policies.provenance import DIGEST_KEY, world_model_digest
from jepa_world.training import train_policy, train_world_model

QUIET = ["train.progress=false", "train.tensorboard=false"]


def _wm(out, seed: int):
    over = {"train.output_dir": out, "train.max_steps": 3, "train.batch_size": 8, "train.log_every": 1,
            "train.ckpt_every": 3, "wm.collect.episodes": 8, "wm.collect.steps": 6, "wm.window": 4,
            "data.image_size": 32, "wm.encoder.embed_dim": 16, "seed": seed}  # fmt: skip
    train_world_model(load_config([], [f"{k}={v}" for k, v in over.items()] + QUIET, command="train-wm"))
    return out


def _policy_args(wm, out, steps: int = 2) -> list[str]:
    return [f"policy.world_model={wm}", f"train.output_dir={out}", f"train.max_steps={steps}", "train.batch_size=8",
            "train.log_every=1", "train.ckpt_every=2", "policy.num_latents=16", "policy.hidden_dim=16",
            "policy.horizon=2", *QUIET]  # fmt: skip


def _plan_cfg():
    return load_config([], ["plan.agent=policy", "plan.episodes=1", "plan.max_steps=2", "plan.baselines=false",
                            "plan.ceiling=false", "plan.stop_radius=null"], command="plan")  # fmt: skip


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    """A policy trained in world model `wm` (seed 0), then `wm` deleted and retrained with seed 1: same path, step."""
    tmp = tmp_path_factory.mktemp("provenance")
    wm = _wm(tmp / "wm", seed=0)
    train_policy(load_config([], _policy_args(wm, tmp / "pol"), command="train-policy"))
    first = world_model_digest(load_world_model(wm))
    shutil.rmtree(wm)
    _wm(wm, seed=1)
    return tmp, wm, first


def test_the_policy_records_the_digest_of_its_world_model(retrained):
    tmp, wm, first = retrained
    meta = load_policy(tmp / "pol").meta
    assert meta[DIGEST_KEY] == first and len(first) == 64
    again = world_model_digest(load_world_model(wm))
    assert again != first  # another seed, same path and step: other weights, another digest
    assert again == world_model_digest(load_world_model(wm))  # a pure function of the weights


def test_planning_with_a_retrained_world_model_is_refused_naming_both(retrained):
    tmp, wm, first = retrained
    now = world_model_digest(load_world_model(wm))
    with pytest.raises(ValueError) as info:
        plan_from_config(tmp / "pol", _plan_cfg(), log=None)
    message = str(info.value)
    assert f"was trained in the world model {wm}" in message and "step_00000003.pt (step 3" in message, message
    assert f"digest {first[:12]}" in message and f"digest {now[:12]}" in message, message
    assert "Train the policy again in this world model" in message


def test_resuming_train_policy_in_a_retrained_world_model_is_refused_and_changes_nothing(retrained, capsys):
    tmp, wm, first = retrained
    before = _files(tmp / "pol")
    args = ["train-policy", "--checkpoint", str(wm), *_policy_args(wm, tmp / "pol", steps=4)[1:]]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error: policy " in err and "it would be resumed in" in err, err
    assert f"digest {first[:12]}" in err, err
    after = _files(tmp / "pol")
    assert {k: v for k, v in after.items() if k != ".lock"} == {k: v for k, v in before.items() if k != ".lock"}


def test_an_old_policy_without_a_digest_is_planned_with_one_warning(retrained, tmp_path):
    tmp, wm, _ = retrained
    old = tmp_path / "old"
    shutil.copytree(tmp / "pol", old)
    ckpt = list_checkpoints(old / "checkpoints")[-1]
    state = load_checkpoint(ckpt)
    del state["meta"][DIGEST_KEY]
    torch.save(state, ckpt)
    policy, model = load_policy(old), load_world_model(wm)
    with pytest.warns(UserWarning, match=r"records no digest of its world model .* cannot be checked") as caught:
        LearnedPolicyAgent(policy=policy, model=model)
        LearnedPolicyAgent(policy=policy, model=model)
    assert len([w for w in caught if "records no digest" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan_from_config(old, _plan_cfg(), log=None)  # it plans (nothing to check)


def test_the_world_model_the_policy_was_trained_in_is_accepted(tmp_path):
    wm = _wm(tmp_path / "wm", seed=0)
    train_policy(load_config([], _policy_args(wm, tmp_path / "pol"), command="train-policy"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "cannot be checked" for a run with a digest
        LearnedPolicyAgent(policy=load_policy(tmp_path / "pol"), model=load_world_model(wm))
    assert (
        train_policy(load_config([], _policy_args(wm, tmp_path / "pol", steps=4), command="train-policy"))["step"] == 4
    )
