"""Calibration through differentiable pricers and the inverse network."""

import math

import numpy as np
import pytest
import torch

from dnnkit.options import Box, InverseCalibrator, calibrate, price_european
from dnnkit.options import ql_reference as qlr
from dnnkit.options.data import Quotes
from tests.conftest import need

M = torch.linspace(0.85, 1.15, 7, dtype=torch.float64)
BS_BOX = Box(("sigma",), torch.tensor([0.05], dtype=torch.float64), torch.tensor([0.8], dtype=torch.float64))


def _grid(taus=(0.25, 1.0), r=0.02):
    rows = [[float(m), t, r, 0.0] for t in taus for m in M]
    return torch.tensor(rows, dtype=torch.float64)


def _bs(p, c):
    return price_european("bs", p, c)


@pytest.mark.parametrize("method", ["lm", "lbfgs", "adam", "nelder-mead"])
def test_recovers_black_scholes_vol(method):
    c = _grid()
    quotes = Quotes(c, _bs(torch.tensor([[0.27]], dtype=torch.float64), c))
    res = calibrate(_bs, quotes, BS_BOX, method=method, n_starts=3, max_iter=100, reference="bs")
    assert abs(float(res.params[0]) - 0.27) < 1e-5
    assert res.reference_rmse is not None and res.reference_rmse < 1e-7
    assert res.rmse < 1e-7 and res.n_evals > 0
    assert BS_BOX.contains(res.params.unsqueeze(0)).all()


def test_solution_stays_in_box_when_truth_is_outside():
    c = _grid()
    quotes = Quotes(c, _bs(torch.tensor([[0.95]], dtype=torch.float64), c))
    res = calibrate(_bs, quotes, BS_BOX, n_starts=2)
    assert 0.05 <= float(res.params[0]) <= 0.8 and float(res.params[0]) > 0.79


@pytest.mark.oracle
def test_heston_calibration_to_quantlib_market_recovers_parameters():
    """COS pricer in the loop against prices made by QuantLib's analytic engine."""
    need("QuantLib")
    true = np.array([0.04, 1.5, 0.06, 0.5, -0.6])
    m = np.tile(np.linspace(0.85, 1.15, 7), 3)
    d = np.repeat([91, 365, 730], 7)
    px = qlr.ql_heston(100.0, m * 100, d, 0.02, 0.0, true) / (m * 100)
    c = torch.tensor(np.c_[m, d / 365.0, np.full(m.size, 0.02), np.zeros(m.size)])
    box = Box(("v0", "kappa", "theta", "sigma", "rho"),
              torch.tensor([0.01, 0.5, 0.01, 0.1, -0.9]), torch.tensor([0.2, 5.0, 0.2, 0.8, 0.0]))
    res = calibrate(lambda p, cc: price_european("heston", p, cc, n_terms=256, L=20.0),
                    Quotes(c, torch.tensor(px)), box, n_starts=2, max_iter=60, seed=1)
    assert res.rmse < 1e-6
    assert abs(float(res.params[0]) - 0.04) < 1e-3 and abs(float(res.params[4]) + 0.6) < 2e-2


def test_bad_quotes_and_too_few_quotes():
    c = _grid()
    good = _bs(torch.tensor([[0.2]], dtype=torch.float64), c)
    with pytest.raises(ValueError, match="at least 5 quotes"):
        box5 = Box(tuple("abcde"), torch.zeros(5), torch.ones(5))
        calibrate(_bs, Quotes(c[:3], good[:3]), box5)
    bad = good.clone()
    bad[2] = 2.0                                          # above S e^{-q tau} / K
    with pytest.raises(ValueError, match=r"rows \[2\]"):
        Quotes(c, bad)
    with pytest.raises(ValueError, match="weights"):
        Quotes(c, good, weights=torch.zeros(len(good)))
    with pytest.raises(ValueError, match="finite"):
        Quotes(c, torch.full_like(good, float("nan")))


def test_surrogate_calibration_refuses_quotes_outside_its_box():
    from dnnkit.options import SurrogatePricer
    from dnnkit.options.data import default_box

    net = SurrogatePricer(default_box("bs"), depth=1, width=4)
    c = torch.tensor([[1.5, 0.5, 0.0, 0.0]] * 3, dtype=torch.float64)   # K/S above 1.2
    with pytest.raises(ValueError, match="outside the surrogate's training box"):
        calibrate(net, Quotes(c, torch.full((3,), 0.001, dtype=torch.float64)))


def test_inverse_calibrator_learns_bs_vol():
    c = _grid()
    inv = InverseCalibrator(c, BS_BOX, depth=2, width=32)
    h = inv.fit("bs", 800, time_budget_s=2.0, epochs=400, seed=0)
    assert h["epochs"] > 0
    truth = torch.tensor([[0.15], [0.4], [0.6]], dtype=torch.float64)
    pred = inv.predict(inv.surfaces("bs", truth))
    assert float((pred - truth).abs().max()) < 0.03
    assert BS_BOX.contains(pred).all()
    with pytest.raises(ValueError, match="prices per surface"):
        inv.predict(torch.zeros(2, 3))
    res = inv.calibrate(Quotes(c, inv.surfaces("bs", truth[1:2])[0]), reference="bs")
    assert abs(float(res.params[0]) - 0.4) < 0.03 and res.reference_rmse < 0.01
    with pytest.raises(ValueError, match="grid"):
        inv.calibrate(Quotes(c[:3], inv.surfaces("bs", truth[1:2])[0][:3]))


def _surrogate_market(seed=0):
    from dnnkit.options import SurrogatePricer
    from dnnkit.options.data import default_box

    box = default_box("heston")
    torch.manual_seed(seed)
    net = SurrogatePricer(box, depth=2, width=32, baseline="heston_bs")
    with torch.no_grad():       # an untrained net as a small correction of the baseline
        net.y_scale.fill_(1e-3)
    c = torch.tensor([[m, t, 0.01, 0.0] for t in (0.25, 1.0, 2.0) for m in (0.9, 1.0, 1.1)],
                     dtype=torch.float64)
    truth = torch.tensor([[0.04, 1.5, 0.06, 0.5, -0.6]], dtype=torch.float64)
    return net, Quotes(c, price_european("heston", truth.expand(9, -1), c))


def test_surrogate_lm_costs_are_the_costs_of_the_returned_parameters():
    """The LM tracks each start's cost instead of re-pricing at the end: the best start's cost
    must be the repricing error of the returned parameters (up to the surrogate's resolution),
    and the fused pass must reach the same minimum as LM through autograd on the module."""
    net, quotes = _surrogate_market()
    res = calibrate(net, quotes, n_starts=4, seed=3)
    n = quotes.prices.shape[0]
    assert abs(math.sqrt(min(res.starts) / n) - res.rmse) <= 1e-5 * res.rmse
    with torch.no_grad():
        again = net(torch.cat([res.params.expand(n, -1), quotes.contracts], 1))
    assert abs(float(torch.sqrt(torch.mean((again - quotes.prices) ** 2))) - res.rmse) \
        <= 1e-5 * res.rmse
    auto = calibrate(lambda p, c: net(torch.cat([p, c], 1)), quotes,
                     Box(net.feature_box.names[:5], net.feature_box.low[:5],
                         net.feature_box.high[:5]), n_starts=4, seed=3)
    assert abs(auto.rmse - res.rmse) <= 1e-4 * res.rmse
    assert torch.allclose(auto.params, res.params, rtol=1e-3, atol=1e-9)
    inside = (res.params > net.feature_box.low[:5] + 1e-3) & (res.params < net.feature_box.high[:5])
    assert bool(inside[0] and inside[2])    # v0 and the mean variance: an interior minimum
