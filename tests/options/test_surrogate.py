"""Surrogate pricer: training works, persistence, box checks, dtype, evaluate, sweep."""

import math
import warnings

import pytest
import torch

from dnnkit.core.checkpoint import CheckpointError
from dnnkit.options import SurrogatePricer, generate_dataset
from dnnkit.options.data import PricingDataset, default_box
from dnnkit.options.pricers import bs_price
from dnnkit.options.surrogate import evaluate, sweep


@pytest.fixture(scope="module")
def bs_data():
    ds = generate_dataset("bs", 6000, seed=0)
    return ds.split((0.8, 0.1, 0.1), seed=0)


@pytest.fixture(scope="module")
def bs_net(bs_data):
    tr, va, _ = bs_data
    net = SurrogatePricer(tr.feature_box, depth=3, width=32)
    hist = net.fit(tr, va, lr=3e-3, batch_size=256, epochs=40, seed=0)
    return net, hist


def test_training_learns_the_pricer(bs_net, bs_data):
    net, hist = bs_net
    _, _, te = bs_data
    ev = evaluate(net, te)
    assert ev["rmse"] < 0.1 * float(te.y.std())
    assert ev["r2"] > 0.99
    assert hist["val_rmse"][-1] <= hist["val_rmse"][0] or hist["best_val_rmse"] < hist["val_rmse"][0]


def test_training_is_seeded(bs_data):
    tr, va, te = bs_data
    outs = []
    for _ in range(2):
        net = SurrogatePricer(tr.feature_box, depth=2, width=16)
        net.fit(tr, va, epochs=2, batch_size=512, seed=3)
        outs.append(net(te.X[:50]))
    assert torch.equal(outs[0], outs[1])


def test_save_load_round_trip(bs_net, bs_data, tmp_path):
    net, _ = bs_net
    _, _, te = bs_data
    path = net.save(tmp_path / "s.safetensors")
    back = SurrogatePricer.load(path)
    assert torch.equal(back(te.X), net(te.X))
    assert back.feature_box.names == net.feature_box.names
    assert torch.equal(back.feature_box.low, net.feature_box.low)
    assert float(back.y_scale) == float(net.y_scale) and float(back.y_shift) == float(net.y_shift)


def test_load_rejects_bad_files(bs_net, tmp_path):
    net, _ = bs_net
    path = net.save(tmp_path / "s.safetensors")
    data = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        SurrogatePricer.load(bad)
    from dnnkit.core.checkpoint import save_tensors
    other = save_tensors(tmp_path / "other.safetensors", {"x": torch.zeros(2)}, {"kind": "x"})
    with pytest.raises(CheckpointError, match="not a saved SurrogatePricer"):
        SurrogatePricer.load(other)


def test_out_of_box_queries_warn_or_raise(bs_net):
    net, _ = bs_net
    p = torch.tensor([[1.5]], dtype=torch.float64)         # sigma above the box (0.8)
    c = torch.tensor([[1.0, 0.5, 0.01, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma above"):
        net.price(p, c, strict=True)
    with pytest.warns(UserWarning, match="extrapolates"):
        net.price(p, c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net.price(torch.tensor([[0.3]]), c)                   # inside: silent


def test_price_rejects_bad_shapes_and_nan(bs_net):
    net, _ = bs_net
    c = torch.tensor([[1.0, 0.5, 0.01, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="finite"):
        net.price(torch.tensor([[float("nan")]]), c)
    with pytest.raises(ValueError, match="columns"):
        net.price(torch.tensor([[0.2, 0.3]]), c)
    with pytest.raises(ValueError, match="rows"):
        net.price(torch.tensor([[0.2], [0.3]]), torch.cat([c, c, c]))


def test_output_follows_input_dtype(bs_net, bs_data):
    net, _ = bs_net
    _, _, te = bs_data
    assert net(te.X[:4]).dtype == torch.float64
    assert net(te.X[:4].float()).dtype == torch.float32


def test_heston_bs_baseline_is_bs_at_mean_variance():
    box = default_box("heston")
    net = SurrogatePricer(box, depth=1, width=4, baseline="heston_bs")
    with torch.no_grad():
        for p in net.net.parameters():
            p.zero_()
    X = box.sample(20, seed=1)
    v0, kappa, theta, tau = X[:, 0], X[:, 1], X[:, 2], X[:, 6]
    vbar = theta + (v0 - theta) * (1 - torch.exp(-kappa * tau)) / (kappa * tau)
    assert torch.allclose(net(X), bs_price(vbar.sqrt(), X[:, 5:]), atol=1e-14)


def test_baseline_needs_the_right_features():
    with pytest.raises(ValueError, match="baseline"):
        SurrogatePricer(default_box("bs"), baseline="heston_bs")


def test_evaluate_on_exact_pricer_is_perfect(bs_data):
    _, _, te = bs_data
    ev = evaluate(lambda X: bs_price(X[:, 0], X[:, 1:]), te)
    assert ev["rmse"] < 1e-14 and abs(ev["r2"] - 1) < 1e-12
    assert sum(n for _, _, n in ev["rmse_by_maturity"]) == len(te)
    assert sum(n for _, _, n in ev["rmse_by_moneyness"]) == len(te)


def test_sweep_sorted_and_validated(bs_data):
    tr, va, _ = bs_data
    small = PricingDataset(tr.X[:500], tr.y[:500], tr.feature_box)
    rows = sweep(small, va, {"activation": ["relu", "tanh"], "depth": [1]}, time_budget_s=0.2)
    assert len(rows) == 2 and rows[0]["val_rmse"] <= rows[1]["val_rmse"]
    assert all(math.isfinite(r["val_rmse"]) for r in rows)
    with pytest.raises(ValueError, match="grid key"):
        sweep(small, va, {"activaton": ["relu"]})


@pytest.mark.parametrize("loss", ["mae", "huber", "mape", "msle"])
@pytest.mark.parametrize("optimizer", ["adamw", "lbfgs"])
def test_other_losses_and_optimizers_reduce_error(bs_data, loss, optimizer):
    tr, va, _ = bs_data
    small = PricingDataset(tr.X[:1000], tr.y[:1000], tr.feature_box)
    net = SurrogatePricer(tr.feature_box, depth=2, width=16)
    h = net.fit(small, va, loss=loss, optimizer=optimizer, lr=1.0 if optimizer == "lbfgs" else 3e-3,
                epochs=5, batch_size=128, seed=0)
    assert h["best_val_rmse"] < float(va.y.std())


def test_from_module_wraps_a_user_network(bs_data, tmp_path):
    tr, va, te = bs_data
    torch.manual_seed(0)                                     # the user's own initialisation
    user = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    net = SurrogatePricer.from_module(user, tr.feature_box)
    h = net.fit(tr, va, lr=3e-3, batch_size=256, epochs=30, seed=0)
    assert h["best_val_rmse"] < 0.3 * float(va.y.std())      # 0.03 vs std 0.12
    assert net.net is user                                   # trained in place, not copied
    path = net.save(tmp_path / "custom.safetensors")
    with pytest.raises(CheckpointError, match="module="):
        SurrogatePricer.load(path)
    fresh = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    back = SurrogatePricer.load(path, module=fresh)
    assert torch.equal(back(te.X), net(te.X))
    with pytest.raises(TypeError, match="module"):
        SurrogatePricer.from_module(torch.nn.ReLU(), tr.feature_box)


def test_speed_report_compares_on_the_same_batch(bs_net, bs_data):
    from dnnkit.options.surrogate import speed_report

    net, _ = bs_net
    _, _, te = bs_data
    rep = speed_report(net, lambda X: bs_price(X[:, 0], X[:, 1:]), te.X, repeats=2)
    assert rep["n"] == len(te) and rep["threads"] >= 1
    assert rep["fast_wall_s"] > 0 and rep["reference_wall_s"] > 0
    with torch.no_grad():
        direct = float((net(te.X) - te.y).abs().max())
    assert abs(rep["max_abs_diff"] - direct) < 1e-12
