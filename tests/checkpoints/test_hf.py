"""Hugging Face transformers folders: IJepaModel / VJEPA2Model in (both key-name sets, prefixes, shards), our exports
out (loaded by AutoModel with no missing / unexpected / mismatched keys), refusals and bad folders."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModel,
    IJepaConfig,
    IJepaForImageClassification,
    IJepaModel,
    ViTConfig,
    ViTModel,
    VJEPA2Config,
    VJEPA2ForVideoClassification,
    VJEPA2Model,
)

import jepa_world
from jepa_world import checkpoints
from jepa_world.checkpoints import CheckpointError
from jepa_world.cli import main as cli_main
from tests.conftest import tiny_overrides

WIDTH, IMG, PATCH = 32, 32, 8


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every tensor off its init (LayerNorm ones / zeros, zero mask tokens) so no test passes on init values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def ijepa_config(**kw) -> IJepaConfig:
    return IJepaConfig(
        hidden_size=WIDTH, num_hidden_layers=2, num_attention_heads=4, intermediate_size=80, image_size=IMG,
        patch_size=PATCH, **kw,
    )  # fmt: skip


def vjepa2_config(**kw) -> VJEPA2Config:
    base = dict(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=4, crop_size=IMG, patch_size=PATCH,
        frames_per_clip=4, pred_hidden_size=WIDTH, pred_num_hidden_layers=2, pred_num_attention_heads=4,
        pred_num_mask_tokens=3,
    )  # fmt: skip
    return VJEPA2Config(**{**base, **kw})


@pytest.fixture(scope="module")
def vjepa2_dir(tmp_path_factory):
    torch.manual_seed(1)
    model = _perturb(VJEPA2Model(vjepa2_config()), 1)
    path = tmp_path_factory.mktemp("vjepa2")
    model.save_pretrained(path)
    return path, model


# --------------------------------------------------------------------------------------------------------------------
# Reading transformers folders
# --------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [1e-12, 1e-6])
def test_ijepa_folder_matches_last_hidden_state(tmp_path, eps):
    torch.manual_seed(0)
    model = _perturb(IJepaModel(ijepa_config(layer_norm_eps=eps)), 0)
    model.save_pretrained(tmp_path)
    encoder = jepa_world.load_encoder(tmp_path)
    assert encoder.config["norm_eps"] == eps and not encoder.is_video
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        assert rel_err(encoder(x), model(pixel_values=x).last_hidden_state) < 1e-5


OLD_NAMES = [
    ("attention.q_proj", "attention.attention.query"),
    ("attention.k_proj", "attention.attention.key"),
    ("attention.v_proj", "attention.attention.value"),
    ("attention.o_proj", "attention.output.dense"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
]


def _ijepa_4x_names(state: dict) -> dict:
    """The key names transformers 4.x used (and 5.x still writes to disk): encoder.layer.{i}.attention.attention..."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"^layers\.(\d+)\.", r"encoder.layer.\1.", key)
        for new, old in OLD_NAMES:
            key = key.replace(new, old)
        out[key] = value
    return out


@pytest.mark.parametrize("names", ["transformers5", "transformers4"])
def test_ijepa_both_key_name_sets(tmp_path, names):
    torch.manual_seed(0)
    model = _perturb(IJepaModel(ijepa_config(layer_norm_eps=1e-6)), 3)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any(k.startswith("layers.0.attention.q_proj") for k in state)  # the names of the installed version
    state = _ijepa_4x_names(state) if names == "transformers4" else state
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model.config.to_json_file(tmp_path / "config.json")
    encoder = jepa_world.load_encoder(tmp_path)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        assert rel_err(encoder(x), model(pixel_values=x).last_hidden_state) < 1e-5


def test_classification_models_prefixes_and_heads(tmp_path, vjepa2_dir):
    torch.manual_seed(0)
    clf = _perturb(IJepaForImageClassification(ijepa_config(num_labels=5)), 4)
    clf.save_pretrained(tmp_path / "ijepa")
    keys = load_file(tmp_path / "ijepa" / "model.safetensors")
    assert any(k.startswith("ijepa.") for k in keys) and "classifier.weight" in keys
    encoder = jepa_world.load_encoder(tmp_path / "ijepa")
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        assert rel_err(encoder(x), clf.ijepa(pixel_values=x).last_hidden_state) < 1e-5

    vclf = _perturb(VJEPA2ForVideoClassification(vjepa2_config(num_labels=3)), 5)
    vclf.save_pretrained(tmp_path / "vjepa2")
    encoder = jepa_world.load_encoder(tmp_path / "vjepa2")
    clip = torch.randn(1, 4, 3, IMG, IMG)  # transformers: [B, T, C, H, W]
    with torch.no_grad():
        ref = vclf.vjepa2(pixel_values_videos=clip, skip_predictor=True).last_hidden_state
        assert rel_err(encoder(clip.permute(0, 2, 1, 3, 4)), ref) < 1e-5


def _masks(n_tokens: int, batch: int, n_ctx: int, n_tgt: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(n_tokens, generator=gen) for _ in range(batch)]
    return torch.stack([p[:n_ctx] for p in perms]), torch.stack([p[n_ctx : n_ctx + n_tgt] for p in perms])


def test_vjepa2_encoder_and_predictor_match(vjepa2_dir):
    path, model = vjepa2_dir
    encoder, predictor = jepa_world.load_encoder(path), jepa_world.load_predictor(path)
    assert encoder.pos_embed_kind == "rope" and encoder.config["num_frames"] == 4
    assert len(predictor.mask_tokens) == 3 and predictor.grid_size == (2, IMG // PATCH, IMG // PATCH)
    clip = torch.randn(2, 4, 3, IMG, IMG)
    ctx, tgt = _masks(32, 2, 12, 7, seed=0)
    with torch.no_grad():
        out = model(pixel_values_videos=clip, context_mask=[ctx], target_mask=[tgt])
        z = encoder(clip.permute(0, 2, 1, 3, 4))  # ours: [B, C, T, H, W]
        assert rel_err(z, out.last_hidden_state) < 1e-5
        z_ctx = torch.gather(z, 1, ctx[..., None].expand(-1, -1, z.shape[-1]))
        # transformers' predictor uses mask token 1 (mask_index=1 % pred_num_mask_tokens), ours picks it by argument.
        pred = predictor(z_ctx, ctx, tgt, mask_index=1)
        assert rel_err(pred, out.predictor_output.last_hidden_state) < 1e-5
        assert rel_err(predictor(z_ctx, ctx, tgt, mask_index=0), out.predictor_output.last_hidden_state) > 1e-3


def test_sharded_and_torch_bin_folders(tmp_path, vjepa2_dir):
    path, model = vjepa2_dir
    model.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    ref = jepa_world.load_encoder(path).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in jepa_world.load_encoder(tmp_path / "sharded").state_dict().items())

    (tmp_path / "bin").mkdir()
    torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    model.config.to_json_file(tmp_path / "bin" / "config.json")
    assert all(torch.equal(v, ref[k]) for k, v in jepa_world.load_encoder(tmp_path / "bin").state_dict().items())

    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[-1]
    (tmp_path / "sharded" / shard).unlink()
    with pytest.raises(CheckpointError, match=rf"names shard '{re.escape(shard)}'.*missing"):
        jepa_world.load_encoder(tmp_path / "sharded")


def test_bad_transformers_folders(tmp_path):
    ViTModel(ViTConfig(hidden_size=WIDTH, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                       image_size=IMG, patch_size=PATCH)).save_pretrained(tmp_path / "vit")  # fmt: skip
    with pytest.raises(CheckpointError, match=r"model_type 'vit'.*\['ijepa', 'vjepa2'\]"):
        jepa_world.load_encoder(tmp_path / "vit")

    (tmp_path / "empty").mkdir()
    ijepa_config().to_json_file(tmp_path / "empty" / "config.json")
    with pytest.raises(CheckpointError, match=r"no weights: expected model.safetensors"):
        jepa_world.load_encoder(tmp_path / "empty")

    IJepaModel(ijepa_config()).save_pretrained(tmp_path / "ijepa")
    with pytest.raises(CheckpointError, match=r"IJepaModel holds no predictor"):
        jepa_world.load_predictor(tmp_path / "ijepa")


# --------------------------------------------------------------------------------------------------------------------
# Writing folders transformers loads
# --------------------------------------------------------------------------------------------------------------------
def _load_info_clean(path) -> torch.nn.Module:
    model, info = AutoModel.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return model.eval()


def test_export_image_encoder_loads_in_transformers(tmp_path):
    torch.manual_seed(0)
    encoder = _perturb(jepa_world.create_model("vit_nano", img_size=IMG, patch_size=PATCH, depth=2), 6)
    checkpoints.save_pretrained(encoder, tmp_path / "ours")
    checkpoints.export_checkpoint(tmp_path / "ours", tmp_path / "hf", format="hf")
    model = _load_info_clean(tmp_path / "hf")
    assert isinstance(model, IJepaModel)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        assert rel_err(model(pixel_values=x).last_hidden_state, encoder(x)) < 1e-5
    # ... and reads back into ours, bit-exactly.
    back = jepa_world.load_encoder(tmp_path / "hf").state_dict()
    assert all(torch.equal(v, back[k]) for k, v in encoder.state_dict().items())


def test_export_vjepa2_run_with_predictor_via_cli(tmp_path):
    from jepa_world.config import load_config
    from jepa_world.training import pretrain

    overrides = {"train.max_steps": 2, "model.pos_embed": "rope", "model.patch_size": PATCH}
    pretrain(load_config([], tiny_overrides(tmp_path, **overrides)))
    assert cli_main(["export", str(tmp_path / "run"), "--output", str(tmp_path / "hf"), "--format", "hf"]) == 0
    model = _load_info_clean(tmp_path / "hf")
    assert isinstance(model, VJEPA2Model)
    encoder, predictor = jepa_world.load_encoder(tmp_path / "run"), jepa_world.load_predictor(tmp_path / "run")
    clip = torch.randn(2, 4, 3, IMG, IMG)
    n_tokens = 2 * (IMG // PATCH) ** 2
    ctx, tgt = _masks(n_tokens, 2, 10, 6, seed=1)
    with torch.no_grad():
        out = model(pixel_values_videos=clip, context_mask=[ctx], target_mask=[tgt])
        z = encoder(clip.permute(0, 2, 1, 3, 4))
        assert rel_err(out.last_hidden_state, z) < 1e-5
        z_ctx = torch.gather(z, 1, ctx[..., None].expand(-1, -1, z.shape[-1]))
        mask_index = 1 % len(predictor.mask_tokens)
        assert rel_err(out.predictor_output.last_hidden_state, predictor(z_ctx, ctx, tgt, mask_index=mask_index)) < 1e-5


def test_export_refuses_what_transformers_cannot_represent(tmp_path):
    def export(module, name):
        checkpoints.save_pretrained(module, tmp_path / name)
        return checkpoints.export_checkpoint(tmp_path / name, tmp_path / f"{name}_hf", format="hf")

    base = dict(img_size=IMG, patch_size=PATCH, depth=1)
    with pytest.raises(ValueError, match=r"sin-cos position table.*RoPE only"):
        export(jepa_world.create_model("vit_nano", num_frames=4, **base), "sincos_video")
    with pytest.raises(ValueError, match=r"image encoder with RoPE"):
        export(jepa_world.create_model("vit_nano", pos_embed="rope", **base), "rope_image")
    with pytest.raises(ValueError, match=r"4x6: .*square"):
        export(jepa_world.create_model("vit_nano", **{**base, "img_size": (32, 48)}), "wide")
    with pytest.raises(ValueError, match=r"encoder and its predictor in one model"):
        export(jepa_world.create_model("vit_nano", num_frames=4, pos_embed="rope", **base), "rope_video_alone")
    assert not (tmp_path / "wide_hf").exists()


# --------------------------------------------------------------------------------------------------------------------
# Inconsistent folders (issue 41): the file and the key are named, the folder is left as it was
# --------------------------------------------------------------------------------------------------------------------
def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"hidden_size": 64}, r"config.json: hidden_size=64 disagrees with the weights \(the patch embedding's width"),
        ({"num_hidden_layers": 3}, r"config.json: num_hidden_layers=3 disagrees with the weights \(blocks in the "),
        ({"intermediate_size": 64}, r"config.json: intermediate_size=64 disagrees with the weights \(the MLP width"),
        ({"patch_size": 16}, r"config.json: patch_size=16 disagrees with the weights \(the patch embedding's kernel"),
        ({"num_attention_heads": 0}, r"config.json: num_attention_heads=0; expected an integer >= 1"),
        ({"hidden_size": "abc"}, r"config.json: hidden_size='abc'; expected an integer >= 1"),
        ({"hidden_size": None}, r"config.json: hidden_size=None; expected an integer >= 1"),
        ({"model_type": "vitt"}, r"config.json is a transformers folder of model_type 'vitt'"),
    ],
)
def test_an_inconsistent_config_json_names_the_file_and_key(tmp_path, change, match):
    folder = tmp_path / "ijepa"
    IJepaModel(ijepa_config()).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    before = _files(folder)
    with pytest.raises(CheckpointError, match=match):
        jepa_world.load_encoder(folder)
    assert _files(folder) == before


def test_a_missing_or_unreadable_config_json_is_named(tmp_path):
    folder = tmp_path / "ijepa"
    IJepaModel(ijepa_config()).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["hidden_size"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config.json: 'hidden_size' is missing \(a transformers ijepa config"):
        jepa_world.load_encoder(folder)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError):  # a list is no transformers config: not read as one
        jepa_world.load_encoder(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config.json is missing: a transformers folder needs its config.json"):
        checkpoints.hf.read_hf_config(folder)


def test_a_predictor_config_that_disagrees_with_its_weights_is_named(tmp_path, vjepa2_dir):
    _, model = vjepa2_dir
    folder = tmp_path / "vjepa2"
    model.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "pred_num_mask_tokens": 5}))
    with pytest.raises(CheckpointError, match=r"config.json: pred_num_mask_tokens=5 disagrees with the weights \(mask"):
        jepa_world.load_predictor(folder)
    (folder / "config.json").write_text(json.dumps({**config, "pred_hidden_size": 64}))
    with pytest.raises(CheckpointError, match=r"config.json: pred_hidden_size=64 disagrees with the weights"):
        jepa_world.load_predictor(folder)


def test_a_shard_index_naming_a_missing_shard_names_the_index_the_shard_and_keys(tmp_path, vjepa2_dir):
    _, model = vjepa2_dir
    folder = tmp_path / "sharded"
    model.save_pretrained(folder, max_shard_size="40KB")
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    key = sorted(index["weight_map"])[0]
    index["weight_map"][key] = "model-99-of-99.safetensors"
    index_path.write_text(json.dumps(index))
    before = _files(folder)
    with pytest.raises(CheckpointError, match=rf"index.json names shard 'model-99-of-99.safetensors' \(for .*{key}"):
        jepa_world.load_encoder(folder)
    index_path.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match=r"index.json is not a shard index with a 'weight_map'"):
        jepa_world.load_encoder(folder)
    assert set(_files(folder)) == set(before)
