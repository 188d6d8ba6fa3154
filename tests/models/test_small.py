"""The small encoders (jepa_world/models/small.py): the pooled-pixel encoder and the token readouts."""

from __future__ import annotations

import pytest
import torch

from jepa_world.models.small import PooledEncoder
from tests.models.test_ac_predictor import D, _gen

torch.set_num_threads(1)


def _randomize_(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():  # the zero-initialised output layers would hide every input dependence
        for p in module.parameters():
            p.normal_(0.0, 0.2, generator=_gen(9))
    return module


def test_pooled_encoder_input_norm_removes_the_static_background():
    # A bright static background and a small moving dot: the dot must dominate what the encoder's MLP sees.
    g = _gen(3)
    background = torch.rand(3, 16, 16, generator=g) * 4
    x = background.expand(64, 3, 16, 16).clone()
    cols = torch.randint(0, 16, (64,), generator=g)
    x[torch.arange(64), :, 8, cols] += 1.0  # the only thing that changes between frames
    stds = {}
    for norm in (False, True):
        torch.manual_seed(0)
        enc = PooledEncoder(img_size=16, pool=1, hidden_dim=64, embed_dim=D, input_norm=norm)
        z = enc(x)[:, 0]  # [64, D] (train mode: batch statistics)
        stds[norm] = (z.std(0) / z.abs().mean(0)).mean().item()  # spread across frames relative to the offset
        if norm:
            enc.eval()  # running statistics after one batch, as a planner uses them
            assert torch.isfinite(enc(x[:2])).all()
    assert stds[True] > 3 * stds[False], stds  # measured: 0.82 vs 0.17
    assert PooledEncoder(img_size=16, pool=2, input_norm=False).input_norm is None


# --------------------------------------------------------------------------------------------------------------------
# The keypoint head of TokenReadout
# --------------------------------------------------------------------------------------------------------------------
class _Patches(torch.nn.Module):
    """A stand-in backbone: the raw pixels of each `patch` x `patch` cell as its token (what TokenReadout needs of a
    ViT: `grid_size`, `embed_dim`, `[B, C, H, W] -> [B, N, D]` in row-major order)."""

    def __init__(self, img_size: int, patch: int):
        super().__init__()
        self.patch, self.grid_size, self.embed_dim = patch, (img_size // patch,) * 2, 3 * patch * patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.unfold(x, self.patch, stride=self.patch).transpose(1, 2)  # [B, N, 3 p p]


def test_token_centres_are_row_major_cell_centres_in_unit_coordinates():
    from jepa_world.models.readout_keypoints import token_centres

    c = token_centres((2, 4))
    assert c.shape == (8, 2)
    torch.testing.assert_close(c[0], torch.tensor([-0.75, -0.5]))  # top-left: (x, y)
    torch.testing.assert_close(c[1], torch.tensor([-0.25, -0.5]))  # next column
    torch.testing.assert_close(c[4], torch.tensor([-0.75, 0.5]))  # next row
    torch.testing.assert_close(c[-1], torch.tensor([0.75, 0.5]))


def test_soft_argmax_keypoints_matches_an_explicit_weighted_mean():
    from jepa_world.models.readout_keypoints import soft_argmax_keypoints, token_centres

    centres, half = token_centres((3, 3)), torch.tensor([1 / 3, 1 / 3])
    scores = torch.randn(2, 9, 3 * 2, generator=_gen(1)) * 3  # B=2, N=9, K=2
    out = soft_argmax_keypoints(scores, centres, half)
    assert out.shape == (2, 2, 2)
    for b in range(2):
        for k in range(2):
            w = scores[b, :, k].softmax(0)
            off = torch.tanh(scores[b, :, 2 + 2 * k : 4 + 2 * k]) * half
            torch.testing.assert_close(out[b, k], (w[:, None] * (centres + off)).sum(0))
    hot = torch.full((1, 9, 3), -1e4)
    hot[0, 5, 0], hot[0, :, 1:] = 0.0, 50.0  # all weight on token 5, offsets saturated at +half a cell
    torch.testing.assert_close(soft_argmax_keypoints(hot, centres, half)[0, 0], centres[5] + half)


def test_keypoint_readout_shapes_cache_path_and_errors():
    from jepa_world.models.readout_keypoints import KeypointReadout
    from jepa_world.models.vit import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=D, depth=1, num_heads=2)
    readout = KeypointReadout(backbone=vit, keypoints=3, hidden_dim=16).eval()
    x = torch.rand(5, 3, 32, 32)
    z = readout(x)
    assert readout.num_keypoints == 3 and z.shape == (5, 1, 6)
    assert z.abs().max() <= 1.0  # inside the image, in [-1, 1] units
    torch.testing.assert_close(readout(readout.frozen_features(x)), z)  # cached tokens = pixels
    assert readout.config["keypoints"] == 3
    with pytest.raises(ValueError, match="keypoints=0: a keypoint readout needs an int >= 1"):
        KeypointReadout(backbone=vit, keypoints=0)


def test_lifted_readout_freezes_the_readout_trains_the_lift_and_reads_cached_outputs():
    from jepa_world.models.readout import LiftedReadout
    from jepa_world.models.readout_keypoints import KeypointReadout
    from jepa_world.models.vit import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=D, depth=1, num_heads=2)
    readout = KeypointReadout(backbone=vit, keypoints=1, hidden_dim=16)
    lifted = LiftedReadout(readout=readout, embed_dim=12, hidden_dim=16).train()
    assert lifted.embed_dim == 12 and not readout.training  # the readout's BatchNorm keeps its fit's statistics
    x = torch.rand(5, 3, 32, 32)
    z = lifted(x)
    assert z.shape == (5, 1, 12)
    torch.testing.assert_close(lifted(lifted.frozen_features(x)), z)  # cached readout outputs = pixels
    z.square().sum().backward()
    grads = {n for n, p in lifted.named_parameters() if p.grad is not None}
    assert grads and all(n.startswith("lift.") for n in grads)  # only the lift trains
    assert LiftedReadout(readout=readout, embed_dim=0).embed_dim == 2  # no lift: the coordinates themselves
    torch.testing.assert_close(LiftedReadout(readout=readout, embed_dim=0)(x), readout(x))
    with pytest.raises(ValueError, match=rf"outputs \[B, 1, 2\], got \(5, 16, {D}\)"):
        lifted(vit(x))  # backbone tokens are not the readout's outputs
    with pytest.raises(ValueError, match="freeze_backbone=True"):
        LiftedReadout(readout=KeypointReadout(backbone=vit, keypoints=1, freeze_backbone=False))


def test_keypoint_readout_learns_where_a_dot_is_on_floors_it_has_not_seen():
    """Supervised on the dot's position, the shared per-token head generalises to new textured floors; the
    per-position MLP head does not (10.8 px against 1.6 px RMSE on this data when the test was written)."""
    from jepa_world.models.readout_keypoints import KeypointReadout

    size, patch = 32, 4

    def frames(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        floor = torch.rand(n, 3, 4, 4, generator=g) * 0.6
        x = torch.nn.functional.interpolate(floor, size=size, mode="bilinear", align_corners=False)
        x = x + 0.05 * torch.randn(n, 3, size, size, generator=g)
        xy = torch.rand(n, 2, generator=g) * (size - 6) + 3  # px
        yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
        blob = torch.exp(-((xx - xy[:, 0, None, None]) ** 2 + (yy - xy[:, 1, None, None]) ** 2) / 2.0)  # [n, H, W]
        x[:, 0] = torch.maximum(x[:, 0], blob)  # a red dot
        return x, xy / size * 2 - 1  # positions in the readout's [-1, 1] units

    torch.manual_seed(0)
    readout = KeypointReadout(backbone=_Patches(size, patch), keypoints=1, hidden_dim=64)
    opt = torch.optim.Adam(readout.parameters(), lr=3e-3)
    g = _gen(0)
    for _ in range(300):
        x, target = frames(64, g)
        loss = (readout(x)[:, 0] - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, target = frames(256, _gen(123))  # floors never seen
    with torch.no_grad():
        err_px = (readout.eval()(x)[:, 0] - target).norm(dim=-1) * size / 2
    assert err_px.pow(2).mean().sqrt() < 3.0, f"RMSE {err_px.pow(2).mean().sqrt():.2f} px"
