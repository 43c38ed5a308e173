"""Reference pricers against QuantLib (and scipy quadrature where QuantLib's VG engine fails)."""

import numpy as np
import pytest
import torch

from dnnkit.options import ql_reference as qlr
from dnnkit.options.data import default_box
from dnnkit.options.exotics import barrier_price, geometric_asian_price
from dnnkit.options.pricers import bs_price, price_european
from tests.conftest import need

SPOT = 100.0


def _contracts(rng, n, dmin=1, dmax=1095):
    m = rng.uniform(0.8, 1.2, n)
    d = rng.integers(dmin, dmax, n)
    r = rng.uniform(0.0, 0.05, n)
    q = rng.uniform(0.0, 0.03, n)
    return m, d, r, q, torch.tensor(np.c_[m, d / 365.0, r, q])


@pytest.mark.oracle
@pytest.mark.parametrize("option", ["call", "put"])
def test_bs_matches_quantlib_black_formula(option):
    need("QuantLib")
    rng = np.random.default_rng(0)
    m, d, r, q, c = _contracts(rng, 300)
    sig = rng.uniform(0.05, 0.8, 300)
    ours = bs_price(torch.tensor(sig), c, option).numpy() * m * SPOT
    ref = qlr.ql_bs(SPOT, m * SPOT, d, r, q, sig, option)
    assert np.abs(ours - ref).max() / SPOT < 1e-12        # issue: 1e-10; spec: 1e-12


@pytest.mark.oracle
@pytest.mark.parametrize("option", ["call", "put"])
def test_heston_cos_matches_quantlib_analytic_engine(option):
    ql = need("QuantLib")  # noqa: F841
    rng = np.random.default_rng(1)
    n = 200
    box = default_box("heston")
    P = box.sample(n, seed=5)[:, :5].numpy()
    # half of the draws in the hardest corner: high vol-of-vol, strong skew, low v0
    P[: n // 2, 3] = rng.uniform(0.6, 0.8, n // 2)
    P[: n // 2, 4] = rng.uniform(-0.9, -0.7, n // 2)
    P[: n // 2, 0] = rng.uniform(0.01, 0.03, n // 2)
    m, d, r, q, c = _contracts(rng, n, dmin=7, dmax=1095)    # 1 week to 3 years
    assert (2 * P[:, 1] * P[:, 2] < P[:, 3] ** 2).sum() > 20   # many Feller violations
    ours = price_european("heston", torch.tensor(P), c, option).numpy() * m * SPOT
    ref = qlr.ql_heston(SPOT, m * SPOT, d, r, q, P, option)
    assert np.abs(ours - ref).max() / SPOT < 1e-7     # issue: 1e-6; measured 2e-8


@pytest.mark.oracle
def test_heston_fang_oosterlee_reference_case():
    need("QuantLib")
    p = torch.tensor([[0.0175, 1.5768, 0.0398, 0.5751, -0.5711]], dtype=torch.float64)
    c = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    ours = float(price_european("heston", p, c)[0]) * 100
    ql_ = qlr.ql_heston(100.0, 100.0, 365, 0.0, 0.0, p.numpy())[0]
    assert abs(ours - 5.785155450) < 1e-6 and abs(ours - ql_) < 1e-6


@pytest.mark.oracle
def test_vg_matches_quantlib_where_its_integrator_is_reliable():
    """QuantLib's VarianceGammaEngine is checked where the gamma clock density is bounded
    (tau / nu >= 1); short maturities relative to nu are covered by the quadrature test below."""
    need("QuantLib")
    rng = np.random.default_rng(2)
    n = 200
    sigma, nu, theta = rng.uniform(0.05, 0.5, n), rng.uniform(0.05, 0.8, n), rng.uniform(-0.5, 0.1, n)
    m, d, r, q, c = _contracts(rng, n, dmin=18, dmax=1095)
    keep = d / 365.0 / nu >= 1.0
    assert keep.sum() > 40 and (d[keep] < 120).any()       # includes short maturities
    P = np.c_[sigma, nu, theta][keep]
    ours = price_european("vg", torch.tensor(P), c[keep]).numpy() * m[keep] * SPOT
    ref = qlr.ql_vg(SPOT, m[keep] * SPOT, d[keep], r[keep], q[keep], P)
    assert np.abs(ours - ref).max() / SPOT < 1e-6


@pytest.mark.oracle
def test_vg_published_reference_value():
    need("QuantLib")
    p = torch.tensor([[0.12, 0.2, -0.14]], dtype=torch.float64)
    c = torch.tensor([[0.9, 1.0, 0.1, 0.0]], dtype=torch.float64)
    ours = float(price_european("vg", p, c)[0]) * 90
    assert abs(ours - 19.099354724) < 1e-6
    assert abs(ours - qlr.ql_vg(100.0, 90.0, 365, 0.1, 0.0, p.numpy())[0]) < 1e-6


def test_vg_short_maturity_matches_adaptive_quadrature():
    """tau / nu < 1: the gamma density is singular at 0; compare with scipy's adaptive quad."""
    import math

    from scipy import integrate
    from scipy.special import gammaln, ndtr

    rng = np.random.default_rng(3)
    worst = 0.0
    for _ in range(4):
        sig, nu, th = rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.8), rng.uniform(-0.4, 0.1)
        tau, m, r = rng.uniform(0.01, 0.2), rng.uniform(0.85, 1.15), 0.02
        a = tau / nu
        om = math.log(1 - th * nu - 0.5 * sig**2 * nu) / nu
        lnorm = -gammaln(a) - a * math.log(nu)

        def f(g, a=a, lnorm=lnorm, m=m, nu=nu, om=om, r=r, sig=sig, tau=tau, th=th):
            if g <= 0:
                return 0.0
            F = math.exp((r + om) * tau + th * g + 0.5 * sig**2 * g)
            v = sig * math.sqrt(g)
            d1 = math.log(F / m) / v + 0.5 * v
            dens = math.exp(lnorm + (a - 1) * math.log(g) - g / nu)
            return math.exp(-r * tau) * (F * ndtr(d1) - m * ndtr(d1 - v)) * dens

        ref = sum(integrate.quad(f, lo, hi, limit=400, epsabs=1e-13)[0]
                  for lo, hi in [(0, 1e-8), (1e-8, 1e-4), (1e-4, 1e-2), (1e-2, 1), (1, 20)])
        ours = float(price_european("vg", torch.tensor([[sig, nu, th]], dtype=torch.float64),
                                    torch.tensor([[m, tau, r, 0.0]], dtype=torch.float64))[0]) * m
        worst = max(worst, abs(ours - ref))
    assert worst < 1e-8


@pytest.mark.oracle
@pytest.mark.parametrize("barrier_type", ["up-out", "down-out", "up-in", "down-in"])
@pytest.mark.parametrize("option", ["call", "put"])
def test_barrier_closed_form_matches_quantlib(barrier_type, option):
    need("QuantLib")
    rng = np.random.default_rng(4)
    worst = 0.0
    for _ in range(12):
        m, d = rng.uniform(0.8, 1.2), int(rng.integers(20, 730))
        r, q, s = rng.uniform(0, 0.05), rng.uniform(0, 0.03), rng.uniform(0.1, 0.6)
        h = rng.uniform(1.05, 1.5) if barrier_type.startswith("up") else rng.uniform(0.6, 0.95)
        c = torch.tensor([[m, d / 365.0, r, q]], dtype=torch.float64)
        ours = float(barrier_price(torch.tensor([s], dtype=torch.float64), c,
                                   torch.tensor([h], dtype=torch.float64), barrier_type,
                                   option)[0]) * m * SPOT
        ref = qlr.ql_barrier(SPOT, m * SPOT, h * SPOT, d, r, q, s, barrier_type, option)
        worst = max(worst, abs(ours - ref) / SPOT)
    assert worst < 1e-8


@pytest.mark.oracle
def test_geometric_asian_matches_quantlib():
    ql = need("QuantLib")
    today = ql.Date(2, 1, 2024)
    ql.Settings.instance().evaluationDate = today
    dc = ql.Actual365Fixed()
    s, r, q, m, n_fix, step = 0.3, 0.03, 0.01, 1.05, 12, 30
    proc = ql.BlackScholesMertonProcess(
        ql.QuoteHandle(ql.SimpleQuote(100.0)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, q, dc)),
        ql.YieldTermStructureHandle(ql.FlatForward(today, r, dc)),
        ql.BlackVolTermStructureHandle(ql.BlackConstantVol(today, ql.NullCalendar(), s, dc)))
    dates = [today + step * (i + 1) for i in range(n_fix)]
    opt = ql.DiscreteAveragingAsianOption(ql.Average.Geometric, 1.0, 0, dates,
                                          ql.PlainVanillaPayoff(ql.Option.Call, 100.0 * m),
                                          ql.EuropeanExercise(dates[-1]))
    opt.setPricingEngine(ql.AnalyticDiscreteGeometricAveragePriceAsianEngine(proc))
    c = torch.tensor([[m, step * n_fix / 365.0, r, q]], dtype=torch.float64)
    ours = float(geometric_asian_price(torch.tensor([s], dtype=torch.float64), c, n_fix)[0])
    assert abs(ours * m * 100 - opt.NPV()) / 100 < 1e-10
