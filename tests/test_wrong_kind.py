"""Checkpoints of the wrong kind for the command (issue 41): every door that reads a checkpoint, given each kind of
thing a user may pass (a pretraining / world-model / policy run, an exported folder, a transformers folder, an
official release file, an empty folder, a run folder whose checkpoint is half-written, a deleted folder), answers in
one line naming the path, what it is and what the command expects; a refused training run leaves its folder as it
was (no `.lock` left behind)."""

from __future__ import annotations

import shutil
import warnings

import pytest

pytest.importorskip("gymnasium")

from jepa_world.checkpoints import CheckpointError, export_checkpoint, list_checkpoints, load_encoder
from jepa_world.checkpoints.world_model import load_world_model
from jepa_world.cli import main
from jepa_world.config import load_config
from jepa_world.envs.collect import collect_episodes
from jepa_world.training import pretrain, train_policy, train_world_model
from tests.checkpoints.test_official import encoder_state, predictor_state, ref_sincos_2d, release_file, table
from tests.conftest import tiny_overrides

QUIET = ["train.progress=false", "train.tensorboard=false"]

# What each input is, as the messages say it.
IS = {
    "pretrain": "is a pretraining run (jepa-world pretrain",
    "world_model": "is a world-model run (jepa-world train-wm",
    "policy": "is a policy run (jepa-world train-policy",
    "export": "is an exported folder (jepa-world export",
    "hf": "is a transformers folder (ijepa",
    "official": "is an official I-JEPA / V-JEPA checkpoint",
    "empty": "is neither a pretrained folder (config.json + model.safetensors) nor a run folder",
    "half": "is not a readable checkpoint (corrupt, truncated, or not a PyTorch file)",
    "deleted": "checkpoint not found",
}
WORLD_MODEL = "expected a world-model run (jepa-world train-wm)"
ENCODER = "expected a pretraining run (jepa-world pretrain), an exported folder (jepa-world export), a transformers"
POLICY = "expected a policy run (jepa-world train-policy"
ALL = tuple(IS)
NOT_ENCODERS = ("world_model", "policy", "empty", "half", "deleted")

# command -> (the inputs it refuses, what it expects)
COMMANDS = {
    "plan": ([k for k in ALL if k != "world_model"], WORLD_MODEL),
    "plan --agent policy": ([k for k in ALL if k != "policy"], POLICY),
    "train-policy": ([k for k in ALL if k != "world_model"], WORLD_MODEL),
    "train-wm wm.encoder.checkpoint": (NOT_ENCODERS, ENCODER),
    "train-wm wm.init_from": ([k for k in ALL if k != "world_model"], WORLD_MODEL),
    "load_encoder": (NOT_ENCODERS, ENCODER),
    "load_world_model": ([k for k in ALL if k != "world_model"], WORLD_MODEL),
    "export": (NOT_ENCODERS, ENCODER),
}
CASES = [(command, kind) for command, (kinds, _) in COMMANDS.items() for kind in kinds]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One of each kind, built once: tiny runs of a few steps, exports of the pretraining run, a release-format file."""
    tmp = tmp_path_factory.mktemp("wrong_kind")
    pre = tmp / "pretrain"
    pretrain(load_config([], tiny_overrides(tmp, **{"train.output_dir": pre, "data.num_frames": 1,
                                                    "train.max_steps": 1, "train.ckpt_every": 1})))  # fmt: skip
    episodes = collect_episodes(env_name="two_rooms", num_episodes=8, steps=6, output_dir=tmp / "episodes",
                                image_size=32, progress=False)  # fmt: skip
    wm = tmp / "world_model"
    over = {"train.output_dir": wm, "train.max_steps": 2, "train.batch_size": 8, "train.log_every": 1,
            "train.ckpt_every": 2, "wm.episodes": episodes, "wm.window": 4, "data.image_size": 32,
            "wm.encoder.embed_dim": 16}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the health check of a 2-step world model
        train_world_model(load_config([], [f"{k}={v}" for k, v in over.items()] + QUIET, command="train-wm"))
    train_policy(load_config([], [f"policy.world_model={wm}", f"train.output_dir={tmp / 'policy'}",
                                  "train.max_steps=2", "train.batch_size=8", "train.ckpt_every=2",
                                  "policy.num_latents=16", "policy.hidden_dim=16", "policy.horizon=2", *QUIET],
                             command="train-policy"))  # fmt: skip
    export_checkpoint(pre, tmp / "export")
    export_checkpoint(pre, tmp / "hf", format="hf")
    pos = table(ref_sincos_2d(4, 4, 192, first="col"))  # an I-JEPA release's layout: module.-prefixed, 32 px / 8
    encoder = encoder_state(0, width=192, depth=1, kernel=(8, 8), pos=pos)
    predictor = predictor_state(1, enc_width=192, width=96, depth=1, mask_keys=["mask_token"], pos=pos[..., :96])
    release_file(tmp / "official.pth.tar", "module.", encoder, encoder, predictor)
    (tmp / "empty").mkdir()
    shutil.copytree(pre, tmp / "half")  # a run whose only checkpoint was cut half-way (a copy, a disk)
    ckpt = list_checkpoints(tmp / "half" / "checkpoints")[-1]
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    paths = {"pretrain": pre, "world_model": wm, "policy": tmp / "policy", "export": tmp / "export", "hf": tmp / "hf",
             "official": tmp / "official.pth.tar", "empty": tmp / "empty", "half": tmp / "half",
             "deleted": tmp / "deleted"}  # fmt: skip
    return paths, episodes


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refusal(command: str, x: str, out, episodes, capsys) -> str:
    """Run `command` on `x`; the one line it refuses with (CLI: exit status 2; library: CheckpointError)."""
    library = {"load_encoder": load_encoder, "load_world_model": load_world_model}
    if command in library:
        with pytest.raises(CheckpointError) as info:
            library[command](x)
        return str(info.value)
    plan = ["plan.episodes=1", "plan.max_steps=2", "plan.baselines=false", "plan.ceiling=false"]
    train = [f"train.output_dir={out}", "train.max_steps=1", "train.batch_size=8", *QUIET]
    wm = [f"wm.episodes={episodes}", "data.image_size=32", "wm.window=4", "wm.encoder.embed_dim=16"]
    args = {
        "plan": ["plan", "--checkpoint", x, *plan],
        "plan --agent policy": ["plan", "--checkpoint", x, "--agent", "policy", *plan],
        "train-policy": ["train-policy", "--checkpoint", x, *train],
        "train-wm wm.encoder.checkpoint": ["train-wm", f"wm.encoder.checkpoint={x}", *wm, *train],
        "train-wm wm.init_from": ["train-wm", f"wm.init_from={x}", *wm, *train],
        "export": ["export", x, "--output", str(out / "export")],
    }[command]
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    prefix = f"jepa-world {args[0]}: error: "
    assert captured.err.startswith(prefix), captured.err
    return captured.err[len(prefix) :]


@pytest.mark.parametrize(("command", "kind"), CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_a_checkpoint_of_the_wrong_kind_is_named_with_what_the_command_expects(corpus, command, kind, tmp_path,
                                                                               capsys):  # fmt: skip
    paths, episodes = corpus
    x = str(paths[kind])
    out = tmp_path / "out"
    out.mkdir()  # an empty run folder the refused command must leave empty (no .lock, no config.yaml)
    before = _files(paths[kind]) if paths[kind].exists() else None
    message = _refusal(command, x, out, episodes, capsys)
    assert len(message.strip().splitlines()) == 1, message
    assert x in message, message
    assert IS[kind] in message, message
    assert COMMANDS[command][1] in message, message
    assert list(out.iterdir()) == []
    assert (_files(paths[kind]) if paths[kind].exists() else None) == before  # the input is untouched


@pytest.mark.parametrize(
    ("command", "kind"),
    [("plan", "world_model"), ("plan --agent policy", "policy"), ("load_encoder", "pretrain"),
     ("load_encoder", "hf"), ("load_encoder", "official"), ("load_world_model", "world_model")],
)  # fmt: skip
def test_the_right_kind_is_read(corpus, command, kind):
    """The corpus is what it says: each door reads its own kind (so the refusals above are about the kind)."""
    paths, _ = corpus
    if command == "load_encoder":
        assert load_encoder(paths[kind]) is not None
    elif command == "load_world_model":
        assert load_world_model(paths[kind]) is not None
    else:
        agent = ["--agent", "policy"] if "policy" in command else []
        args = ["plan", "--checkpoint", str(paths[kind]), *agent, "plan.episodes=1", "plan.max_steps=2",
                "plan.baselines=false", "plan.ceiling=false", "--quiet"]  # fmt: skip
        assert main(args) == 0


@pytest.mark.parametrize("command", ["train-policy", "train-wm wm.init_from"])
def test_a_refused_training_run_creates_no_run_folder(corpus, command, tmp_path, capsys):
    paths, episodes = corpus
    out = tmp_path / "new" / "run"
    message = _refusal(command, str(paths["pretrain"]), out, episodes, capsys)
    assert IS["pretrain"] in message, message
    assert not (tmp_path / "new").exists()  # nor its parent


def test_a_pretrain_refused_for_its_data_leaves_the_run_folder_byte_identical(tmp_path, capsys):
    out, empty = tmp_path / "run", tmp_path / "images"
    out.mkdir()
    empty.mkdir()
    (out / "notes.txt").write_text("a folder the user made, without a .lock\n")
    before = _files(out)
    args = ["pretrain", *tiny_overrides(tmp_path, **{"train.output_dir": out, "data.index": empty})]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no images found under" in err and "Traceback" not in err, err
    assert _files(out) == before and sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # no .lock
