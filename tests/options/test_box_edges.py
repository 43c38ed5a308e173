"""Regression: the default box's documented edges are exact (float64), so quotes on an edge are in."""

import warnings

import pytest
import torch

from dnnkit.options import SurrogatePricer, calibrate, price_european
from dnnkit.options.data import Quotes, default_box
from dnnkit.options.processes import CONTRACT_HIGH, CONTRACT_LOW, MODELS


@pytest.mark.parametrize("model", sorted(MODELS))
def test_default_box_bounds_equal_the_documented_floats(model):
    box = default_box(model)
    spec = MODELS[model]
    assert box.low.dtype == torch.float64
    assert box.low.tolist() == list(spec.low + CONTRACT_LOW)
    assert box.high.tolist() == list(spec.high + CONTRACT_HIGH)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_every_edge_of_the_heston_box_is_inside(dtype):
    box = default_box("heston")
    mid = (box.low + box.high) / 2
    for j in range(box.dim):
        for edge in (box.low[j], box.high[j]):
            x = mid.clone()
            x[j] = edge
            # the user writes the edge as a Python float, e.g. strike/spot = 80 / 100
            x = torch.tensor([float(v) for v in x], dtype=dtype).unsqueeze(0)
            assert bool(box.contains(x)), (box.names[j], float(edge))
            assert box.violations(x) == []


def test_surrogate_prices_and_calibrates_quotes_on_the_edges():
    box = default_box("heston")
    net = SurrogatePricer(box, depth=1, width=8)
    strikes = torch.tensor([80.0, 90.0, 100.0, 110.0, 120.0], dtype=torch.float64)
    taus = torch.tensor([0.05, 1.0, 2.0], dtype=torch.float64)
    rows = [[float(k) / 100.0, float(t), 0.0, 0.0] for t in taus for k in strikes]
    contracts = torch.tensor(rows, dtype=torch.float64)
    params = torch.tensor([[0.01, 0.5, 0.2, 0.1, -0.9]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.price(params.expand(len(rows), -1), contracts)
    market = price_european("heston", params.expand(len(rows), -1), contracts)
    res = calibrate(net, Quotes(contracts, market), n_starts=1, max_iter=5)
    assert torch.isfinite(res.params).all()


@pytest.mark.parametrize("method", ["lm", "lbfgs", "adam"])
def test_every_method_calibrates_a_surrogate(method):
    """The fused pass serves LM; gradient methods keep autograd through the surrogate."""
    box = default_box("heston")
    torch.manual_seed(0)
    net = SurrogatePricer(box, depth=2, width=16, baseline="heston_bs")
    contracts = torch.tensor([[m, t, 0.01, 0.0] for t in (0.25, 1.0) for m in (0.9, 1.0, 1.1)],
                             dtype=torch.float64)
    truth = torch.tensor([[0.04, 1.5, 0.06, 0.5, -0.6]], dtype=torch.float64)
    quotes = Quotes(contracts, price_european("heston", truth.expand(6, -1), contracts))
    start = calibrate(net, quotes, method=method, n_starts=2, max_iter=1).rmse
    res = calibrate(net, quotes, method=method, n_starts=2, max_iter=60)
    assert res.rmse < start or res.rmse < 1e-6
