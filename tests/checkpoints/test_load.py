"""Loading and export: our pretrained format, export of real training runs, timm, torch.hub, features, bad input."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import timm
import torch

import jepa_world
from jepa_world import checkpoints
from jepa_world.checkpoints import CheckpointError
from jepa_world.cli import main as cli_main
from jepa_world.features import encode_long_video, intermediate_layers, pooled_features, window_starts
from tests.conftest import ROOT, tiny_overrides


def _randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every trainable tensor so that no test passes on init values (LayerNorm ones and zeros)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return module.eval()


def _same_state(a: torch.nn.Module | dict, b: torch.nn.Module | dict) -> bool:
    a = a.state_dict() if isinstance(a, torch.nn.Module) else a
    b = b.state_dict() if isinstance(b, torch.nn.Module) else b
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real 2-step video pretraining run (checkpoint at step 2)."""
    from jepa_world.config import load_config
    from jepa_world.training import pretrain

    tmp = tmp_path_factory.mktemp("hub")
    pretrain(load_config([], tiny_overrides(tmp, **{"train.max_steps": 2, "train.ckpt_every": 2})))
    return tmp / "run"


# --------------------------------------------------------------------------------------------------------------------
# Our format
# --------------------------------------------------------------------------------------------------------------------
ENCODERS = {
    "image_ijepa": dict(img_size=32, patch_size=8, depth=2, sincos_layout="ijepa"),
    "video_uniform": dict(img_size=32, patch_size=8, depth=2, num_frames=4, uniform_power=True),
    "video_rope": dict(img_size=(32, 48), patch_size=8, depth=2, num_frames=4, pos_embed="rope"),
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoder_roundtrip_is_bit_exact(name, tmp_path):
    torch.manual_seed(0)
    enc = _randomized(jepa_world.create_model("vit_nano", **ENCODERS[name]), seed=1)
    checkpoints.save_pretrained(enc, tmp_path / name)
    assert {p.name for p in (tmp_path / name).iterdir()} == {"config.json", "model.safetensors"}
    again = jepa_world.load_encoder(tmp_path / name)
    assert _same_state(enc, again) and not again.training
    assert checkpoints.module_config(again) == checkpoints.module_config(enc)
    assert again.pos_embed is None or not again.pos_embed.requires_grad  # the fixed table stays frozen
    side = ENCODERS[name]["img_size"]
    assert again.input_size == (side if isinstance(side, tuple) else (side, side))  # (H, W) in pixels
    assert again.num_frames == ENCODERS[name].get("num_frames", 1)
    shape = (2, 3, 4, 32, 48) if name == "video_rope" else (2, 3, 4, 32, 32) if enc.is_video else (2, 3, 32, 32)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(enc(x), again(x))


def test_predictor_roundtrip_and_overrides(tmp_path):
    torch.manual_seed(0)
    pred = _randomized(
        jepa_world.create_model("predictor_nano", grid_size=(2, 4, 4), embed_dim=128, num_mask_tokens=2, depth=2), 3
    )
    checkpoints.save_pretrained(pred, tmp_path / "p")
    again = jepa_world.load_predictor(tmp_path / "p")
    assert _same_state(pred, again)
    assert again.act_checkpoint is False
    assert jepa_world.load_predictor(tmp_path / "p", act_checkpoint=True).act_checkpoint is True
    # An override that changes shapes fails the strict load with the key and both shapes named.
    with pytest.raises(CheckpointError, match=r"predictor_embed\.weight: checkpoint \(96, 128\) vs model \(96, 64\)"):
        jepa_world.load_predictor(tmp_path / "p", embed_dim=64)
    with pytest.raises(CheckpointError, match="holds a MaskPredictor, not an encoder"):
        jepa_world.load_encoder(tmp_path / "p")


def test_loading_draws_nothing_from_the_global_rng(tmp_path):
    checkpoints.save_pretrained(jepa_world.create_model("vit_nano", img_size=32, patch_size=8, depth=1), tmp_path / "e")
    before = torch.get_rng_state()
    jepa_world.load_encoder(tmp_path / "e")
    assert torch.equal(before, torch.get_rng_state())


# --------------------------------------------------------------------------------------------------------------------
# Export of a real training run
# --------------------------------------------------------------------------------------------------------------------
def test_export_training_run_bit_exact(run_dir, tmp_path):
    ckpt_file = checkpoints.list_checkpoints(run_dir / "checkpoints")[-1]
    state = checkpoints.load_checkpoint(ckpt_file)
    assert not _same_state(state["encoder"], state["target_encoder"])  # so picking the component matters
    for component in ("target_encoder", "encoder", "predictor"):
        out = checkpoints.export_checkpoint(run_dir, tmp_path / component, component=component)
        loader = jepa_world.load_predictor if component == "predictor" else jepa_world.load_encoder
        assert _same_state(loader(out), state[component])
    direct = jepa_world.load_encoder(run_dir, component="encoder")  # a run folder loads without export
    assert _same_state(direct, state["encoder"])
    assert _same_state(jepa_world.load_encoder(ckpt_file), state["target_encoder"])
    x = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(jepa_world.load_encoder(tmp_path / "encoder")(x), direct(x))
    config = json.loads((tmp_path / "encoder" / "config.json").read_text())
    assert config["class"] == "VisionTransformer" and "name" not in config["kwargs"]  # registry-free


def test_cli_export(run_dir, tmp_path, capsys):
    assert cli_main(["export", str(run_dir), "--output", str(tmp_path / "p"), "--component", "predictor"]) == 0
    assert isinstance(jepa_world.load_predictor(tmp_path / "p"), torch.nn.Module)
    assert cli_main(["export", str(tmp_path / "missing"), "--output", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err
    # A video encoder has no timm counterpart: a clear error, not a traceback.
    assert cli_main(["export", str(run_dir), "-o", str(tmp_path / "t"), "--format", "timm"]) == 2
    assert "tubelet" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------------
# timm
# --------------------------------------------------------------------------------------------------------------------
def test_timm_loads_export_strictly_with_same_features(tmp_path):
    torch.manual_seed(0)
    enc = _randomized(jepa_world.create_model("vit_nano", img_size=32, patch_size=8, depth=2), seed=4)
    model = timm.create_model("vit_small_patch16_224", pretrained=False, **checkpoints.timm_model_kwargs(enc))
    model.load_state_dict(checkpoints.export_timm_state_dict(enc), strict=True)
    model.eval()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), enc(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x), pooled_features(enc, x), atol=1e-5, rtol=0)  # head = mean of tokens

    # Through a folder: export_checkpoint reads our export and timm's local-dir loader reads its output.
    checkpoints.save_pretrained(enc, tmp_path / "ours")
    checkpoints.export_checkpoint(tmp_path / "ours", tmp_path / "timm", format="timm")
    loaded = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x), enc(x), atol=1e-5, rtol=0)
    with pytest.raises(CheckpointError, match="timm export"):
        jepa_world.load_encoder(tmp_path / "timm")


def test_timm_export_of_a_wide_encoder_keeps_height_and_width(tmp_path):
    enc = _randomized(jepa_world.create_model("vit_nano", img_size=(32, 48), patch_size=8, depth=1), seed=6)
    assert checkpoints.timm_model_kwargs(enc)["img_size"] == (32, 48)
    checkpoints.save_pretrained(enc, tmp_path / "ours")
    checkpoints.export_checkpoint(tmp_path / "ours", tmp_path / "timm", format="timm")
    loaded = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    assert tuple(loaded.pretrained_cfg["input_size"]) == (3, 32, 48)
    x = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x), enc(x), atol=1e-5, rtol=0)


def test_timm_refuses_video_and_rope_encoders():
    video = jepa_world.create_model("vit_nano", img_size=32, patch_size=8, depth=1, num_frames=4)
    with pytest.raises(ValueError, match="tubelet"):
        checkpoints.export_timm_state_dict(video)
    rope = jepa_world.create_model("vit_nano", img_size=32, patch_size=8, depth=1, pos_embed="rope")
    with pytest.raises(ValueError, match="RoPE"):
        checkpoints.timm_model_kwargs(rope)
    with pytest.raises(ValueError, match="encoders only"):
        checkpoints.export_checkpoint("anything", "out", component="predictor", format="timm")


# --------------------------------------------------------------------------------------------------------------------
# torch.hub
# --------------------------------------------------------------------------------------------------------------------
def test_hubconf_has_one_entry_per_encoder_preset():
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert hubconf.dependencies == ["torch", "timm"]
    entries = {
        n for n in dir(hubconf) if not n.startswith("_") and n.startswith("vit_") and callable(getattr(hubconf, n))
    }
    assert entries == set(jepa_world.list_models("vit_*"))
    for name in entries:
        with torch.device("meta"):  # architecture only: no memory for the big presets
            built, reference = getattr(hubconf, name)(patch_size=16), jepa_world.create_model(name, patch_size=16)
        assert checkpoints.module_config(built) == checkpoints.module_config(reference)
        with pytest.raises(ValueError, match="hosts no weights"):
            getattr(hubconf, name)(pretrained=True)
    local = torch.hub.load(str(ROOT), "vit_nano", source="local", img_size=32, patch_size=8)
    assert local.grid_size == (4, 4)


# --------------------------------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------------------------------
def test_pooled_and_intermediate_features():
    torch.manual_seed(0)
    enc = _randomized(jepa_world.create_model("vit_nano", img_size=32, patch_size=8, depth=3), seed=6)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        tokens = enc(x)
        assert torch.equal(pooled_features(enc, x), tokens.mean(1))
        # Independent: run the blocks by hand from the patch embedding.
        z = enc.patch_embed(x) + enc.pos_embed
        by_hand = []
        for blk in enc.blocks:
            z = blk(z)
            by_hand.append(z)
        first, last = intermediate_layers(enc, x, [0, -1], norm=False)
        torch.testing.assert_close(first, by_hand[0], atol=0, rtol=0)
        torch.testing.assert_close(last, by_hand[2], atol=0, rtol=0)
        normed = intermediate_layers(enc, x, 2)
        assert len(normed) == 2 and torch.equal(normed[1], tokens)
        torch.testing.assert_close(normed[0], enc.norm(by_hand[1]), atol=0, rtol=0)
    with pytest.raises(ValueError, match="outside"):
        intermediate_layers(enc, x, [3])


def test_encode_long_video_sliding_windows():
    torch.manual_seed(0)
    enc = _randomized(jepa_world.create_model("vit_nano", img_size=32, patch_size=8, depth=1, num_frames=4), seed=8)
    video = torch.randn(3, 10, 32, 32, generator=torch.Generator().manual_seed(9))
    assert window_starts(10, 4, 4) == [0, 4, 6]  # a last window covers the tail
    feats = encode_long_video(enc, video, window=4, stride=4, batch_size=2)
    with torch.no_grad():
        expected = torch.cat([pooled_features(enc, video[None, :, s : s + 4]) for s in (0, 4, 6)])
    assert feats.shape == (3, 128)
    torch.testing.assert_close(feats, expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="tubelet"):
        encode_long_video(enc, video, window=3, stride=1)
    with pytest.raises(ValueError, match="longer than the video"):
        encode_long_video(enc, video, window=12, stride=1)
    image = jepa_world.create_model("vit_nano", img_size=32, patch_size=8, depth=1)
    with pytest.raises(ValueError, match="video encoder"):
        encode_long_video(image, video, window=4, stride=4)


# --------------------------------------------------------------------------------------------------------------------
# Safety and bad input
# --------------------------------------------------------------------------------------------------------------------
class _Payload:
    """Pickles as a call to os.system: loading it with plain pickle runs a shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth.tar"
    torch.save({"encoder": _Payload(f"touch {marker}"), "epoch": 1}, path)
    for load in (checkpoints.load_checkpoint, jepa_world.load_encoder):
        with pytest.raises(CheckpointError, match="arbitrary pickle code") as err:
            load(path)
        assert "weights_only=False" in str(err.value)  # says how to convert a trusted file
        assert not marker.exists()
    # The payload is live: an unsafe load does run it (so the assertion above could fail).
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_paths_that_are_not_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        jepa_world.load_encoder(tmp_path / "nope.pt")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        jepa_world.load_encoder(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="neither a pretrained folder"):
        jepa_world.load_encoder(tmp_path / "empty")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list"):
        jepa_world.load_encoder(tmp_path / "list.pt")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(
        json.dumps({"format": checkpoints.PRETRAINED_FORMAT, "class": "os.system"})
    )
    with pytest.raises(CheckpointError, match="names class 'os.system'"):
        jepa_world.load_encoder(tmp_path / "bad")
    with pytest.raises(ValueError, match="component='predictor'"):
        jepa_world.load_encoder(tmp_path / "bad", component="predictor")


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(ValueError, match="did you mean 'vit_small'"):
        jepa_world.create_model("vit_smal")


def test_checkpoints_saved_before_a_config_key_existed_still_load(run_dir, tmp_path):
    """A run saved by an earlier version lacks today's newer keys (predictor.single_pass, optim.fused): it rebuilds
    with their defaults, i.e. as it trained. A key the schema no longer knows is named."""
    import yaml

    from jepa_world.config import ConfigError, saved_config

    state = checkpoints.load_checkpoint(checkpoints.list_checkpoints(run_dir / "checkpoints")[-1])
    config = yaml.safe_load(state["config"])  # saved as the resolved YAML text
    del config["predictor"]["single_pass"], config["optim"]["fused"]
    state["config"] = yaml.safe_dump(config)
    old = tmp_path / "old.pt"
    torch.save(state, old)
    encoder = jepa_world.load_encoder(old)
    assert _same_state(encoder, jepa_world.load_encoder(run_dir))
    assert saved_config(state["config"]).predictor.single_pass is False
    config["predictor"]["retired_key"] = 1
    with pytest.raises(ConfigError, match="retired_key"):
        saved_config(config, source="old.pt")


def test_a_world_model_checkpoint_without_its_meta_is_refused_by_name(tmp_path):
    path = tmp_path / "step_00000001.pt"
    checkpoints.save_checkpoint(path, {"format": "jepa_world/train/1", "task": "world_model", "config": "seed: 0\n",
                                       "predictor": {"w": torch.zeros(1)}})  # fmt: skip
    with pytest.raises(checkpoints.CheckpointError, match=r"needs \['meta'\] to be rebuilt; it holds \[config"):
        checkpoints.load_predictor(path)
    with pytest.raises(checkpoints.CheckpointError, match="not a world-model checkpoint"):
        checkpoints.load_world_model(path)


def test_an_empty_folder_is_named_as_one(tmp_path):
    from jepa_world.checkpoints.io import CheckpointError
    from jepa_world.checkpoints.load import load_encoder

    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="it is an empty folder"):
        load_encoder(tmp_path / "empty")
