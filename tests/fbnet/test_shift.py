"""shift2d against its one-hot depthwise-conv equivalent and a torch.roll formulation."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from dnnkit.fbnet import Shift2d, ShiftConvBlock, shift2d
from dnnkit.fbnet.shift import shift_as_depthwise_weight, shift_offsets

CASES = [(k, d, c, a) for k in (3, 5) for d in (1, 2) for c in (1, 8, 9, 10, 27, 30)
         for a in ("modulo", "grouped")]


def _conv_shift(x, k, d, a):
    w = shift_as_depthwise_weight(x.shape[1], k, a, dtype=x.dtype)
    return F.conv2d(x, w, padding=(k // 2) * d, dilation=d, groups=x.shape[1])


def _roll_shift(x, k, d, a):
    """Second formulation: torch.roll each channel by (-d*dy, -d*dx), zero the wrapped band."""
    off = shift_offsets(x.shape[1], k, a)
    h, w = x.shape[-2:]
    out = torch.empty_like(x)
    rows, cols = torch.arange(h).view(-1, 1), torch.arange(w).view(1, -1)
    for c in range(x.shape[1]):
        sy, sx = int(off[c, 0]) * d, int(off[c, 1]) * d
        r = torch.roll(x[:, c], shifts=(-sy, -sx), dims=(-2, -1))
        ok = (rows + sy >= 0) & (rows + sy < h) & (cols + sx >= 0) & (cols + sx < w)
        out[:, c] = r * ok
    return out


@pytest.mark.parametrize("k,d,c,a", CASES)
def test_shift_equals_one_hot_depthwise_conv_and_roll(k, d, c, a):
    g = torch.Generator().manual_seed(k * 100 + d * 10 + c)
    x = torch.randn(2, c, 7, 6, generator=g, dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = shift2d(x, k, d, a)
    ref = _conv_shift(x, k, d, a)
    assert torch.equal(y, ref)                                  # atol 0
    assert torch.equal(y.detach(), _roll_shift(x.detach(), k, d, a))
    gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (g1,) = torch.autograd.grad(y, x, gy)
    (g2,) = torch.autograd.grad(ref, x, gy)
    torch.testing.assert_close(g1, g2, atol=1e-6, rtol=0)


def test_backward_is_opposite_shift():
    x = torch.randn(1, 9, 5, 5, requires_grad=True)
    gy = torch.randn(1, 9, 5, 5)
    (gx,) = torch.autograd.grad(shift2d(x), x, gy)
    # <shift(x), gy> = <x, shift^T(gy)>: the adjoint is a one-hot conv with the flipped kernel
    w = shift_as_depthwise_weight(9, 3).flip(-1, -2)
    assert torch.equal(gx, F.conv2d(gy, w, padding=1, groups=9))


def test_offsets_modulo_and_grouped_are_a_permutation():
    om, og = shift_offsets(20, 3, "modulo"), shift_offsets(20, 3, "grouped")
    assert sorted(map(tuple, om.tolist())) == sorted(map(tuple, og.tolist()))
    assert om[:9].tolist() == [[dy, dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert (om[18:] == 0).all()
    assert og[:2].tolist() == [[-1, -1], [-1, -1]]


def test_shift_keeps_dtype_device_and_zero_params():
    x = torch.randn(2, 18, 4, 4, dtype=torch.float16)
    assert shift2d(x).dtype == torch.float16
    assert sum(p.numel() for p in Shift2d(5, 2).parameters()) == 0
    assert "kernel_size=5" in repr(Shift2d(5, 2))


def test_few_channels_warns():
    with pytest.warns(UserWarning, match="no channel is shifted"):
        y = shift2d(torch.ones(1, 4, 3, 3))
    assert torch.equal(y, torch.ones(1, 4, 3, 3))


@pytest.mark.parametrize("bad,err,param", [
    ({"kernel_size": 2}, ValueError, "kernel_size"), ({"kernel_size": 0}, ValueError, "kernel_size"),
    ({"dilation": 0}, ValueError, "dilation"), ({"assignment": "modul"}, ValueError, "assignment"),
    ({"kernel_size": 3.0}, TypeError, "kernel_size")])
def test_shift_bad_input(bad, err, param):
    with pytest.raises(err, match=param):
        shift2d(torch.ones(1, 9, 3, 3), **bad)


def test_shift_refuses_non_4d():
    with pytest.raises(ValueError, match="'x'"):
        shift2d(torch.ones(9, 3, 3))


def test_csc_block_shapes_residual_and_params():
    b = ShiftConvBlock(16, 16, 1, expansion=3.0)
    assert b.use_residual
    x = torch.randn(2, 16, 8, 8)
    assert b(x).shape == (2, 16, 8, 8)
    b2 = ShiftConvBlock(16, 24, 2, expansion=1.0)
    assert not b2.use_residual and b2(x).shape == (2, 24, 4, 4)
    convs = 16 * 48 + 48 * 16
    bns = 2 * (48 + 16)
    assert sum(p.numel() for p in b.parameters()) == convs + bns
