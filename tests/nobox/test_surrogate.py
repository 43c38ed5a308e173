"""Surrogate architecture, transformations and training."""

import pytest
import torch
from torch import nn

from dnnkit.nobox import NoBoxSurrogate, SurrogateConfig, train_surrogate
from dnnkit.nobox.surrogate import (
    _separate_decoder,
    fused_from_separate,
    jigsaw_shuffle,
    prototype_pairs,
    random_rotation,
)
from tests.nobox.helpers import tiny_cfg, tiny_data


def test_fused_decoders_equal_separate_decoders():
    torch.manual_seed(0)
    k, c_h, mid = 5, 6, 3
    decs = [_separate_decoder(c_h, mid, 2) for _ in range(k)]
    for d in decs:                        # non-trivial BatchNorm statistics and affine terms
        with torch.no_grad():
            d[1].running_mean.uniform_(-1, 1)
            d[1].running_var.uniform_(0.5, 2)
            d[1].weight.uniform_(0.5, 1.5)
            d[1].bias.uniform_(-0.5, 0.5)
        d.eval()
    fused = fused_from_separate(decs).eval()
    h = torch.randn(3, c_h, 5, 7)
    out = fused(h)
    assert out.shape == (3, k, 2, 5, 7)
    for i, d in enumerate(decs):
        torch.testing.assert_close(out[:, i], d(h), atol=1e-6, rtol=1e-5)
    # training mode: per-channel batch statistics are per decoder too
    fused.train()
    for d in decs:
        d.train()
    out = fused(h)
    for i, d in enumerate(decs):
        torch.testing.assert_close(out[:, i], d(h), atol=1e-5, rtol=1e-5)


def test_fused_stack_has_k_times_fewer_modules_than_separate():
    k = 10
    fused = fused_from_separate([_separate_decoder(8, 4, 1) for _ in range(k)])
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 and convs[1].groups == k


@pytest.mark.parametrize("mode", ["prototypical", "rotation", "jigsaw", "naive"])
def test_shapes_and_output_range(mode):
    x, y = tiny_data()
    sur = train_surrogate(x, y, tiny_cfg(mode), seed=0)
    out = sur(x)
    k = 4 if mode == "prototypical" else 1
    assert out.shape == (8, k, 1, 8, 8)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert sur.encode(x).shape == (8, 8, 8, 8)
    assert not sur.training and not any(p.requires_grad for p in sur.parameters())


def test_downsampling_encoder_and_decoder_sizes():
    x, y = tiny_data(size=16, channels=3)
    cfg = tiny_cfg("prototypical", n_stages=2, downsample=True, n_res_blocks=1)
    sur = train_surrogate(x, y, cfg, seed=0, normalize=([0.5] * 3, [0.25] * 3))
    assert sur.encode(x).shape == (8, 16, 4, 4)
    assert sur(x).shape == (8, 4, 3, 4, 4)
    assert sur.prototypes.shape == (4, 2, 3, 4, 4)
    rec = train_surrogate(x, None, tiny_cfg("naive", n_stages=2, downsample=True), seed=0)
    assert rec(x).shape == (8, 1, 3, 16, 16)


def test_training_is_seeded_and_leaves_global_rng_alone():
    x, y = tiny_data()
    state = torch.random.get_rng_state()
    a = train_surrogate(x, y, tiny_cfg(), seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = train_surrogate(x, y, tiny_cfg(), seed=1)
    c = train_surrogate(x, y, tiny_cfg(), seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_training_reduces_reconstruction_loss():
    x, y = tiny_data()
    cfg0 = tiny_cfg(iters=0)
    cfg1 = tiny_cfg(iters=150)
    s0, s1 = train_surrogate(x, y, cfg0, seed=0), train_surrogate(x, y, cfg1, seed=0)
    cls = (y == 7).long()

    def err(s):
        tgt = s.prototypes[:, cls].transpose(0, 1)
        return float(((s(x) - tgt) ** 2).mean())

    assert err(s1) < 0.7 * err(s0)


def test_prototype_pairs_follow_the_official_rule():
    g = torch.Generator().manual_seed(0)
    pairs = prototype_pairs(4, 4, 10, g)
    assert pairs[:4] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert len(set(pairs)) == 10 and all(i != j for i, j in pairs[4:])
    assert len(prototype_pairs(3, 3, 9, g)) == 9
    with pytest.raises(ValueError, match="n_decoders"):
        prototype_pairs(3, 3, 10, g)


def test_rotation_is_a_multiple_of_90_degrees():
    x = torch.rand(16, 2, 6, 6)
    r = random_rotation(x, torch.Generator().manual_seed(0))
    for i in range(16):
        assert any(torch.equal(r[i], torch.rot90(x[i], k, dims=(-2, -1))) for k in range(4))
    assert not torch.equal(r, x)
    assert torch.equal(x, x.clone())          # input untouched (no in-place accumulation)


@pytest.mark.parametrize("kind,grid", [("halves", 2), ("shuffle", 2), ("shuffle", 4)])
def test_jigsaw_permutes_patches(kind, grid):
    x = torch.rand(6, 1, 8, 8)
    x0 = x.clone()
    s = jigsaw_shuffle(x, torch.Generator().manual_seed(3), grid=grid, kind=kind)
    assert torch.equal(x, x0)
    p = 8 // grid
    for i in range(6):
        orig = {tuple(x[i, :, a * p:(a + 1) * p, b * p:(b + 1) * p].flatten().tolist())
                for a in range(grid) for b in range(grid)}
        new = {tuple(s[i, :, a * p:(a + 1) * p, b * p:(b + 1) * p].flatten().tolist())
               for a in range(grid) for b in range(grid)}
        assert orig == new


def test_halves_has_exactly_four_arrangements():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1)
    s = jigsaw_shuffle(x, torch.Generator().manual_seed(0), grid=2, kind="halves")
    assert len({tuple(t.flatten().tolist()) for t in s}) == 4


def test_bad_inputs():
    x, y = tiny_data()
    with pytest.raises(ValueError, match="ndim"):
        train_surrogate(x[0], y, tiny_cfg())
    with pytest.raises(ValueError, match="values in"):
        train_surrogate(x * 2, y, tiny_cfg())
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        train_surrogate(bad, y, tiny_cfg())
    with pytest.raises(ValueError, match="exactly two classes"):
        train_surrogate(x, torch.arange(8) % 3, tiny_cfg())
    with pytest.raises(ValueError, match="same number"):
        train_surrogate(x, torch.tensor([0, 0, 0, 0, 0, 1, 1, 1]), tiny_cfg())
    with pytest.raises(ValueError, match="at least 2 images per class"):
        train_surrogate(x[3:5], y[3:5], tiny_cfg(n_decoders=1))
    with pytest.raises(ValueError, match="n_decoders.*16"):
        train_surrogate(x, y, tiny_cfg(n_decoders=17))
    with pytest.raises(ValueError, match="jigsaw_grid"):
        train_surrogate(x, y, tiny_cfg("jigsaw", jigsaw="shuffle", jigsaw_grid=3))
    with pytest.raises(ValueError, match="labels"):
        train_surrogate(x, None, tiny_cfg())
    with pytest.raises(ValueError, match="'mode'.*Did you mean 'rotation'"):
        SurrogateConfig(mode="rotaton")
    with pytest.raises(TypeError, match="cfg"):
        NoBoxSurrogate(1, {"mode": "naive"})
