"""Properties of the reference pricers: parity, method agreement, limits, gradients."""

import numpy as np
import pytest
import torch

from dnnkit.options.data import default_box
from dnnkit.options.pricers import bs_price, cos_price, fft_price, price_european


def _draw(model, n, seed=0):
    X = default_box(model).sample(n, seed=seed)
    p = X[:, :-4]
    c = X[:, -4:].clone()
    c[:, 3] = 0.01
    return p, c


def _parity_gap(call, put, c):
    m, tau, r, q = c.unbind(1)
    return (call - put - (torch.exp(-q * tau) / m - torch.exp(-r * tau))).abs().max()


@pytest.mark.parametrize("model,method", [("heston", "cos"), ("heston", "fft"), ("vg", "mixture"),
                                          ("vg", "cos"), ("vgsa", "cos"), ("bs", "closed")])
def test_put_call_parity(model, method):
    p, c = _draw(model, 64)
    call = price_european(model, p, c, "call", method=method)
    put = price_european(model, p, c, "put", method=method)
    assert float(_parity_gap(call, put, c)) < 1e-8
    assert bool((call >= 0).all() and (put >= 0).all())


def test_cos_and_fft_on_bs_match_closed_form():
    p, c = _draw("bs", 64)
    c[:, 1] = c[:, 1].clamp(min=0.25)
    exact = bs_price(p[:, 0], c)
    assert float((cos_price("bs", p, c) - exact).abs().max()) < 1e-9
    assert float((fft_price("bs", p, c) - exact).abs().max()) < 1e-5


def test_heston_fft_agrees_with_cos():
    p, c = _draw("heston", 64, seed=1)
    c[:, 1] = c[:, 1].clamp(min=0.25)
    assert float((fft_price("heston", p, c) - cos_price("heston", p, c)).abs().max()) < 1e-5


def test_vg_cos_agrees_with_mixture_at_moderate_maturity():
    p, c = _draw("vg", 64, seed=2)
    c[:, 1] = torch.maximum(c[:, 1], 2.0 * p[:, 1])         # tau >= 2 nu: smooth density
    ref = price_european("vg", p, c)
    assert float((cos_price("vg", p, c, n_terms=1024) - ref).abs().max()) < 1e-6


def test_vgsa_reduces_to_vg_when_clock_is_deterministic():
    """lam -> 0 with y0 = eta = 1 makes the CIR clock Y_t = t, i.e. plain VG."""
    p, c = _draw("vg", 32, seed=3)
    c[:, 1] = torch.maximum(c[:, 1], 2.0 * p[:, 1])
    pv = torch.cat([p, torch.tensor([[2.0, 1.0, 1e-4]], dtype=torch.float64).expand(32, -1)], 1)
    vgsa = price_european("vgsa", pv, c, n_terms=1024)
    assert float((vgsa - price_european("vg", p, c)).abs().max()) < 1e-6


def test_vgsa_random_clock_changes_prices_and_stays_arbitrage_free():
    p = torch.tensor([[0.2, 0.3, -0.2, 1.0, 1.0, 0.8]], dtype=torch.float64)
    m = torch.linspace(0.8, 1.2, 21, dtype=torch.float64)
    c = torch.stack([m, torch.full_like(m, 0.5), torch.full_like(m, 0.02), torch.zeros_like(m)], 1)
    calls = price_european("vgsa", p, c) * m                   # C / S
    assert bool((calls[1:] <= calls[:-1] + 1e-12).all())
    vg = price_european("vg", p[:, :3], c) * m
    assert float((calls - vg).abs().max()) > 1e-4


def test_prices_monotone_in_strike_and_maturity_heston():
    p = torch.tensor([[0.04, 1.5, 0.06, 0.5, -0.6]], dtype=torch.float64)
    m = torch.linspace(0.8, 1.2, 41, dtype=torch.float64)
    for tau in (0.05, 0.5, 2.0):
        c = torch.stack([m, torch.full_like(m, tau), torch.full_like(m, 0.02),
                         torch.zeros_like(m)], 1)
        C = price_european("heston", p, c) * m
        assert bool((C[1:] < C[:-1]).all())
    t = torch.linspace(0.05, 2.0, 20, dtype=torch.float64)
    c = torch.stack([torch.ones_like(t), t, torch.full_like(t, 0.02), torch.zeros_like(t)], 1)
    C = price_european("heston", p, c)
    assert bool((C[1:] > C[:-1]).all())


def test_cos_is_differentiable_in_parameters():
    p = torch.tensor([[0.04, 1.5, 0.06, 0.5, -0.6]], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([[1.0, 0.5, 0.02, 0.0], [1.1, 1.0, 0.02, 0.0]], dtype=torch.float64)
    price_european("heston", p, c).sum().backward()
    h = 1e-6
    fd = []
    for j in range(5):
        e = torch.zeros(1, 5, dtype=torch.float64)
        e[0, j] = h
        fd.append(float((price_european("heston", p.detach() + e, c)
                         - price_european("heston", p.detach() - e, c)).sum() / (2 * h)))
    assert np.allclose(p.grad[0].numpy(), fd, rtol=1e-4, atol=1e-8)


def test_float32_inputs_are_upcast():
    p = torch.tensor([[0.04, 1.5, 0.06, 0.5, -0.6]])
    c = torch.tensor([[1.0, 0.5, 0.02, 0.0]])
    out = price_european("heston", p, c)
    assert out.dtype == torch.float64
    assert abs(float(out[0]) - float(price_european("heston", p.double(), c.double())[0])) < 1e-12
