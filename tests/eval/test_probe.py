"""Frozen probes: head maths against the usual formulation, the parallel sweep, learning, freezing, determinism, CLI."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from jepa_world.cli import main
from jepa_world.config import load_config
from jepa_world.data.labelled import builtin_datasets, user_datasets
from jepa_world.eval.probe import probe
from jepa_world.eval.probe_command import random_encoder_like
from jepa_world.eval.probe_heads import AttentiveProbe, LinearProbe, ProbeSweep, probe_inputs, sweep_loss, train_sweeps
from jepa_world.models.vit import VisionTransformer
from jepa_world.training import pretrain
from tests.conftest import tiny_overrides


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny ops: a second intra-op thread only adds synchronisation, which is very costly on a loaded 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TokensAsInput(nn.Module):
    """A stand-in "encoder" whose inputs already are tokens `[B, N, D]`."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def clusters(n: int, *, num_classes: int = 4, tokens: int = 6, dim: int = 16, seed: int = 0, random_labels=False):
    """Items whose tokens are noisy copies of a class centre (well separated), or the same with shuffled labels."""
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(123))
    labels = torch.randint(num_classes, (n,), generator=g)
    x = centres[labels][:, None] + torch.randn(n, tokens, dim, generator=g)  # [n, N, D]
    if random_labels:
        labels = torch.randint(num_classes, (n,), generator=g)
    return [{"x": x[i], "label": int(labels[i])} for i in range(n)]


def naive_attentive(head: AttentiveProbe, tokens: torch.Tensor) -> torch.Tensor:
    """The textbook form: project every normalised token to keys and values, softmax(q k^T / sqrt(dh)) v."""
    B, N, D = tokens.shape
    H = head.num_heads
    Dh = D // H
    x = F.layer_norm(tokens, (D,), head.norm1.weight, head.norm1.bias, eps=1e-6)
    q = head.xattn["q"](head.query_tokens).view(-1, H, Dh).transpose(0, 1)  # [H, Q, Dh]
    kv = x @ head.xattn["kv"].weight.T + head.xattn["kv"].bias  # [B, N, 2D]
    k = kv[..., :D].view(B, N, H, Dh).transpose(1, 2)  # [B, H, N, Dh]
    v = kv[..., D:].view(B, N, H, Dh).transpose(1, 2)
    a = torch.softmax(q @ k.transpose(-1, -2) / Dh**0.5, dim=-1)  # [B, H, Q, N]
    o = (a @ v).transpose(1, 2).reshape(B, -1, D)  # [B, Q, D]
    z = head.query_tokens + head.xattn["proj"](o)
    z = z + head.mlp(F.layer_norm(z, (D,), head.norm2.weight, head.norm2.bias, eps=1e-6))
    return head.linear(z.mean(1))


def randomise_(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g) + (1.0 if p.ndim == 1 else 0.0))


# --------------------------------------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------------------------------------
def test_linear_probe_pools_tokens_and_normalises_without_affine():
    head = LinearProbe(embed_dim=8, num_classes=3)
    tokens = torch.randn(5, 4, 8)
    out = head(tokens)
    assert out.shape == (5, 3)
    assert not any(p.requires_grad for p in head.norm.parameters())  # BatchNorm without affine
    out.square().sum().backward()
    assert head.linear.weight.grad.abs().sum() > 0 and head.linear.bias.grad.abs().sum() > 0
    head.eval()
    pooled = tokens.mean(1)
    expected = head.linear((pooled - head.norm.running_mean) / (head.norm.running_var + 1e-6).sqrt())
    torch.testing.assert_close(head(tokens), expected)
    torch.testing.assert_close(head(pooled), expected)
    with pytest.raises(ValueError, match="LinearProbe expects"):
        head(torch.randn(2, 3, 4, 8))


@pytest.mark.parametrize("num_queries", [1, 3])
def test_attentive_probe_equals_textbook_cross_attention(num_queries):
    head = AttentiveProbe(embed_dim=24, num_classes=5, num_heads=3, num_queries=num_queries)
    randomise_(head)  # away from init so the LayerNorm affine and every bias matter
    head.double()  # float64: the two forms agree to rounding, so any real difference shows
    tokens = 2.0 * torch.randn(4, 7, 24, dtype=torch.float64) + 1.0
    out = head(tokens)
    ref = naive_attentive(head, tokens)
    assert out.shape == (4, 5)
    torch.testing.assert_close(out, ref)
    # Same gradients too: the cheap form is the same function of the parameters.
    g_out = torch.autograd.grad(out.square().sum(), list(head.parameters()), allow_unused=True)
    g_ref = torch.autograd.grad(ref.square().sum(), list(head.parameters()), allow_unused=True)
    for (name, _), a, b in zip(head.named_parameters(), g_out, g_ref):
        if name == "xattn.kv.bias":
            # The key half adds the same score to every token: it cancels in the softmax, zero gradient in both.
            assert a[:24].abs().max() == 0 and b[:24].abs().max() < 1e-9 * b[24:].abs().max()
            a, b = a[24:], b[24:]
        torch.testing.assert_close(a, b, msg=name)


def test_attentive_probe_gradients_reach_every_trained_parameter():
    head = AttentiveProbe(embed_dim=16, num_classes=4, num_heads=4)
    F.cross_entropy(head(torch.randn(6, 5, 16)), torch.arange(6) % 4).backward()
    for name, p in head.named_parameters():
        if name == "xattn.kv.bias":
            continue  # only its value half matters; the key half cancels in the softmax
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    with pytest.raises(ValueError, match="num_heads"):
        AttentiveProbe(embed_dim=16, num_classes=4, num_heads=3)


# --------------------------------------------------------------------------------------------------------------------
# The parallel sweep
# --------------------------------------------------------------------------------------------------------------------
def _fit(sweep: ProbeSweep, data: list[dict], steps: int = 8) -> None:
    x = torch.stack([d["x"] for d in data])
    y = torch.tensor([d["label"] for d in data])
    inputs = probe_inputs(x)
    batches = [(inputs, y)] * steps
    train_sweeps({"s": sweep}, lambda epoch: batches, epochs=1, steps_per_epoch=steps, warmup_epochs=0)


@pytest.mark.parametrize("make", [lambda: LinearProbe(embed_dim=16, num_classes=4),
                                  lambda: AttentiveProbe(embed_dim=16, num_classes=4, num_heads=2)])  # fmt: skip
def test_sweep_heads_are_independent_runs(make):
    data = clusters(32)
    sweep = ProbeSweep(make_head=make, lrs=(1e-3, 1e-3, 1e-2), wds=(0.0,), seed=3)
    start = [copy.deepcopy(h.state_dict()) for h in sweep.heads]
    for k in (1, 2):  # one init for every head: differences come from the hyper-parameters only
        for name, t in start[0].items():
            torch.testing.assert_close(start[k][name], t, rtol=0, atol=0)
    _fit(sweep, data)
    w = [torch.cat([p.detach().flatten() for p in h.parameters()]) for h in sweep.heads]
    assert torch.equal(w[0], w[1])  # same lr: identical, so heads never leak into each other
    assert not torch.allclose(w[0], w[2])  # 10x the lr: different weights
    # Head 2 trained alongside the others equals the same head trained alone.
    alone = ProbeSweep(make_head=make, lrs=(1e-2,), wds=(0.0,), seed=3)
    _fit(alone, data)
    w_alone = torch.cat([p.detach().flatten() for p in alone.heads[0].parameters()])
    torch.testing.assert_close(w[2], w_alone, atol=1e-5, rtol=1e-5)


def test_sweep_loss_is_the_sum_of_per_head_losses():
    logits, y = torch.randn(3, 5, 4), torch.randint(4, (5,))
    expected = sum(F.cross_entropy(logits[k], y) for k in range(3))
    torch.testing.assert_close(sweep_loss(logits, y), expected)


def test_sweep_rejects_bad_grids():
    make = lambda: LinearProbe(embed_dim=4, num_classes=2)  # noqa: E731
    with pytest.raises(ValueError, match="lrs"):
        ProbeSweep(make_head=make, lrs=(), wds=(0.0,))
    with pytest.raises(ValueError, match="wds"):
        ProbeSweep(make_head=make, lrs=(1e-3,), wds=(-1.0,))


# --------------------------------------------------------------------------------------------------------------------
# probe()
# --------------------------------------------------------------------------------------------------------------------
def test_probe_separates_clusters_and_stays_at_chance_on_random_labels():
    kw = dict(kind="both", lrs=(3e-3, 1e-2), wds=(0.0,), epochs=15, batch_size=32, seed=0)
    enc = TokensAsInput()
    res = probe(enc, clusters(256, seed=1), clusters(128, seed=2), test_set=clusters(256, seed=3), **kw)
    assert res["num_classes"] == 4 and res["reported_on"] == "test"
    assert res["linear"]["best"]["top1"] >= 97.0
    assert res["attentive"]["best"]["top1"] >= 97.0
    rnd = [clusters(n, seed=s, random_labels=True) for n, s in ((256, 4), (128, 5), (400, 6))]
    res = probe(enc, rnd[0], rnd[1], test_set=rnd[2], **kw)
    for kind in ("linear", "attentive"):
        assert 12.0 <= res[kind]["best"]["top1"] <= 38.0, (kind, res[kind]["best"])  # chance 25%


def test_probe_without_test_split_reports_best_of_sweep_on_val():
    res = probe(TokensAsInput(), clusters(64, seed=1), clusters(32, seed=2), kind="linear", lrs=(1e-3, 1e-2),
                wds=(0.0,), epochs=2)  # fmt: skip
    assert res["reported_on"] == "val" and res["num_test"] == 0
    best = res["linear"]["best"]
    assert best["top1"] == max(h["val_top1"] for h in res["linear"]["heads"])
    assert "test_top1" not in best


def test_cached_and_streamed_features_give_the_same_probe():
    kw = dict(kind="both", lrs=(1e-3, 1e-2), wds=(0.0, 0.1), epochs=3, batch_size=16, num_classes=4, seed=5)
    sets = clusters(80, seed=1), clusters(40, seed=2), clusters(40, seed=3)
    a = probe(TokensAsInput(), *sets[:2], test_set=sets[2], cache=True, **kw)
    b = probe(TokensAsInput(), *sets[:2], test_set=sets[2], cache=False, **kw)
    assert a["cached"] and not b["cached"]
    for kind in ("linear", "attentive"):
        assert [h["test_top1"] for h in a[kind]["heads"]] == [h["test_top1"] for h in b[kind]["heads"]]


def test_probe_is_deterministic_and_leaves_the_encoder_frozen():
    enc = VisionTransformer(img_size=16, patch_size=8, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    enc.train()
    before = copy.deepcopy(enc.state_dict())
    train, val, test, c, _ = builtin_datasets(num_frames=4, image_size=16, num_train=24, num_val=12, num_test=12)
    kw = dict(test_set=test, num_classes=c, lrs=(1e-3, 1e-2), wds=(0.0,), epochs=2, batch_size=8, seed=7)
    global_state = torch.random.get_rng_state()
    a = probe(enc, train, val, **kw)
    assert torch.equal(torch.random.get_rng_state(), global_state)  # all randomness from the seed
    for name, t in enc.state_dict().items():
        assert torch.equal(t, before[name]), name
    assert all(p.grad is None for p in enc.parameters())
    assert enc.training  # mode restored
    b = probe(enc, train, val, **kw)
    a.pop("seconds"), b.pop("seconds")
    assert a == b


def test_probe_rejects_bad_arguments():
    sets = clusters(16, seed=1), clusters(8, seed=2)
    with pytest.raises(ValueError, match="kind="):
        probe(TokensAsInput(), *sets, kind="knn")
    with pytest.raises(ValueError, match="outside num_classes"):
        probe(TokensAsInput(), *sets, num_classes=2, epochs=1)
    with pytest.raises(ValueError, match="num_classes is required"):
        probe(TokensAsInput(), *sets, cache=False, epochs=1)
    with pytest.raises(TypeError, match="label"):
        probe(TokensAsInput(), [{"x": torch.zeros(2, 16)}], sets[1], epochs=1)


def test_builtin_video_task_is_the_motion_probe_data_on_its_own_seeds():
    from jepa_world.data.synthetic import MovingShapeVideo, ShapesImages

    train, val, test, c, what = builtin_datasets(
        num_frames=6, image_size=32, num_train=8, num_val=4, num_test=4, num_distractors=(0, 2)
    )
    assert c == 8 and "MovingShapeVideo" in what
    assert all(isinstance(ds, MovingShapeVideo) and ds.num_distractors == (0, 2) for ds in (train, val, test))
    assert len({ds.seed for ds in (train, val, test)}) == 3
    assert train[0]["x"].shape == (3, 6, 32, 32)
    for i in range(len(train)):
        scene = train.scene(i)
        dx, dy = scene.center[-1, -1] - scene.center[-1, 0]  # the labelled shape's displacement over the clip
        assert train[i]["label"] == round(math.atan2(dy, dx) / (math.pi / 4)) % 8
    images = builtin_datasets(num_frames=1, image_size=32, num_train=2, num_val=2, num_test=2)
    assert isinstance(images[0], ShapesImages) and images[3] == 3


def test_random_encoder_like_keeps_architecture_and_changes_weights():
    enc = VisionTransformer(img_size=16, patch_size=8, num_frames=4, embed_dim=32, depth=2, num_heads=2)
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(1.0)
    a, b = random_encoder_like(enc, seed=1), random_encoder_like(enc, seed=1)
    assert torch.equal(a.blocks[0].attn.qkv.weight, b.blocks[0].attn.qkv.weight)
    assert not torch.equal(a.blocks[0].attn.qkv.weight, enc.blocks[0].attn.qkv.weight)
    assert torch.equal(a.pos_embed, enc.pos_embed)  # fixed table, not a weight
    assert a.blocks[0].attn.qkv.weight.std() < 0.05  # the release init (std 0.02)


def test_image_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    for c, colour in enumerate(((230, 30, 30), (30, 30, 230))):
        folder = tmp_path / f"class_{c}"
        folder.mkdir()
        for i in range(10):
            noise = torch.randint(0, 40, (16, 16, 3), generator=torch.Generator().manual_seed(10 * c + i))
            pixels = (torch.tensor(colour) + noise).clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{i}.png")
    train, val, test, num_classes, _ = user_datasets(tmp_path, num_frames=1, image_size=16, seed=0)
    assert num_classes == 2 and len(train) + len(val) + len(test) == 20
    assert {val[i]["label"] for i in range(len(val))} <= {0, 1}
    enc = VisionTransformer(img_size=16, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    res = probe(enc, train, val, test_set=test, kind="linear", lrs=(1e-2,), wds=(0.0,), epochs=10, batch_size=4)
    assert res["linear"]["best"]["top1"] == 100.0  # colour is trivially separable


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------
def test_cli_probe_end_to_end(tmp_path, capsys):
    over = tiny_overrides(tmp_path)
    pretrain(load_config([], over))
    common = ["--num-train", "24", "--num-val", "8", "--num-test", "8", "--epochs", "2", "--batch-size", "8",
              "--lrs", "1e-3,1e-2", "--wds", "0", "--quiet"]  # fmt: skip
    out_json = tmp_path / "probe.json"
    assert main(["probe", "--checkpoint", str(tmp_path / "run"), *common, "--output", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "[target_encoder]" in printed and "chance 12.5%" in printed
    rows = [line.split() for line in printed.splitlines() if line.split()[:1] in (["linear"], ["attentive"])]
    assert len(rows) == 2 + 2 * 2  # best per kind, then every head (2 lrs x 1 wd)
    assert out_json.is_file()

    assert main(["probe", "--checkpoint", "random", *common, *over]) == 0
    assert "random init" in capsys.readouterr().out

    assert main(["probe", "--checkpoint", str(tmp_path / "nothing_here"), *common]) == 2
    assert "jepa-world probe: error" in capsys.readouterr().err


def test_video_index_with_labels(tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    def write(path, grey: int) -> None:
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            for i in range(8):
                frame = np.full((32, 32, 3), grey + i, np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    lines = {"train": [], "val": []}
    for split, n in (("train", 6), ("val", 4)):
        for i in range(n):
            label = ("dark", "bright")[i % 2]
            write(tmp_path / f"{split}_{i}.mp4", 40 if label == "dark" else 200)
            lines[split].append(f"{split}_{i}.mp4 {label}")
    for split, rows in lines.items():
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
    train, val, test, num_classes, _ = user_datasets(
        tmp_path / "train.csv", num_frames=4, image_size=16, val_data=tmp_path / "val.csv"
    )
    assert test is None and num_classes == 2 and train.classes == ["bright", "dark"]
    assert [val[i]["label"] for i in range(4)] == [1, 0, 1, 0]
    assert val[0]["x"].shape == (3, 4, 16, 16)
    enc = VisionTransformer(img_size=16, patch_size=8, num_frames=4, embed_dim=32, depth=1, num_heads=2)
    res = probe(enc, train, val, kind="linear", lrs=(1e-2,), wds=(0.0,), epochs=10, batch_size=4)
    assert res["reported_on"] == "val" and res["linear"]["best"]["top1"] == 100.0


def test_probe_cli_takes_config_files_and_checked_key_value(tmp_path, capsys):
    over = tiny_overrides(tmp_path)
    recipe = tmp_path / "probe.yaml"
    recipe.write_text(
        "probe:\n  kind: linear\n  epochs: 2\n  batch_size: 8\n  num_train: 24\n  num_val: 8\n  num_test: 8\n"
        "  lrs: [0.01]\n  wds: [0.0]\n"
    )
    out_json = tmp_path / "probe.json"
    assert (
        main(["probe", "--checkpoint", "random", "--config", str(recipe), *over, f"probe.output={out_json}", "-q"]) == 0
    )
    printed = capsys.readouterr().out
    assert "random init (vit_nano" in printed and "attentive" not in printed  # probe.kind=linear from the file
    results = __import__("json").loads(out_json.read_text())
    assert results["num_train"] == 24 and [h["lr"] for h in results["linear"]["heads"]] == [0.01]
    assert main(["probe", "--checkpoint", "random", "probe.epoch=3"]) == 2
    assert "did you mean 'probe.epochs'" in capsys.readouterr().err
    # Pretraining keys describe a random encoder only: with a checkpoint they would be ignored, so they are refused.
    pretrain(load_config([], over))
    assert main(["probe", "--checkpoint", str(tmp_path / "run"), "--config", str(recipe), "model.depth=3", "-q"]) == 2
    assert "only describe a random encoder" in capsys.readouterr().err
