"""Quantizer properties: grid, saturation, unbiased stochastic rounding, STE, dtype/device."""

from __future__ import annotations

import pytest
import torch

from dnnkit.adapt import FixedPointFormat, quantize_fixed
from dnnkit.adapt.fixed_point import quantize_fixed_ste


def test_format_properties_and_fl_above_wl():
    f = FixedPointFormat(4, 6)               # range below 1: [-0.125, 0.109375]
    assert f.eps == 2 ** -6 and f.min_value == -8 * 2 ** -6 and f.max_value == 7 * 2 ** -6
    assert FixedPointFormat(8, 4, symmetric=True).min_value == -FixedPointFormat(8, 4).max_value


@pytest.mark.parametrize("wl,fl", [(8, 4), (5, 7), (16, 12)])
def test_stochastic_on_grid_between_neighbours_and_saturating(wl, fl):
    fmt = FixedPointFormat(wl, fl)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(10_000, generator=g) * 2 - 1) * 1.3 * fmt.max_value
    q = quantize_fixed(x, fmt, "stochastic", generator=g)
    k = q / fmt.eps
    assert torch.equal(k, k.round())                                  # on the grid
    assert float(q.min()) >= fmt.min_value and float(q.max()) <= fmt.max_value
    inside = (x > fmt.min_value) & (x < fmt.max_value)
    lo = torch.floor(x / fmt.eps) * fmt.eps
    hi = torch.ceil(x / fmt.eps) * fmt.eps
    assert bool(((q == lo) | (q == hi))[inside].all())               # a neighbour
    assert torch.equal(q[x >= fmt.max_value + fmt.eps],
                       torch.full_like(q[x >= fmt.max_value + fmt.eps], fmt.max_value))


def test_stochastic_is_unbiased():
    fmt = FixedPointFormat(8, 3)
    g = torch.Generator().manual_seed(1)
    x = torch.tensor([0.01, 0.3, -1.77, 2.0626])
    n = 200_000
    q = quantize_fixed(x.repeat(n, 1), fmt, "stochastic", generator=g)
    mean = q.double().mean(0)
    # Bernoulli variance <= eps^2/4: 5 sigma bound on the mean
    bound = 5 * fmt.eps / 2 / n ** 0.5
    assert torch.allclose(mean, x.double(), atol=bound)


def test_seeded_stochastic_is_reproducible():
    x = torch.randn(100)
    a = quantize_fixed(x, FixedPointFormat(6, 3), "stochastic",
                       generator=torch.Generator().manual_seed(5))
    b = quantize_fixed(x, FixedPointFormat(6, 3), "stochastic",
                       generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_ste_gradient_is_identity():
    x = torch.linspace(-20, 20, 11, requires_grad=True)
    y = quantize_fixed_ste(x, FixedPointFormat(6, 2), "nearest")
    (y * torch.arange(11.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(11.0))
    assert torch.equal(y.detach(), quantize_fixed(x.detach(), FixedPointFormat(6, 2)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_follows_dtype(dtype):
    x = torch.randn(50).to(dtype)
    q = quantize_fixed(x, FixedPointFormat(8, 4))
    assert q.dtype == dtype and q.shape == x.shape
    ref = quantize_fixed(x.float(), FixedPointFormat(8, 4)).to(dtype)
    assert torch.equal(q, ref)


def test_bad_inputs():
    with pytest.raises(ValueError, match="'wl'"):
        FixedPointFormat(0, 4)
    with pytest.raises(ValueError, match="'wl'"):
        FixedPointFormat(33, 4)
    with pytest.raises(ValueError, match="'fl'"):
        FixedPointFormat(8, 33)
    with pytest.raises(TypeError, match="'fl'"):
        FixedPointFormat(8, 4.0)
    with pytest.raises(TypeError, match="'x'"):
        quantize_fixed(torch.arange(4), FixedPointFormat(8, 4))
    with pytest.raises(TypeError, match="'x'"):
        quantize_fixed(torch.ones(3, dtype=torch.complex64), FixedPointFormat(8, 4))
    with pytest.raises(ValueError, match="'rounding'"):
        quantize_fixed(torch.ones(3), FixedPointFormat(8, 4), "nearst")
    with pytest.raises(ValueError, match="'x'"):
        quantize_fixed(torch.tensor([1.0, float("nan")]), FixedPointFormat(8, 4))
