"""Boxes, dataset generation, splits and the quotes CSV loader."""

import pytest
import torch

from dnnkit.options import Box, generate_dataset
from dnnkit.options.data import default_box, load_quotes_csv
from dnnkit.options.pricers import bs_price


@pytest.mark.parametrize("method", ["uniform", "lhs", "sobol"])
def test_box_sampling_stays_inside_and_is_seeded(method):
    box = default_box("heston")
    a = box.sample(257, method, seed=1)
    assert a.shape == (257, 9) and a.dtype == torch.float64
    assert bool(box.contains(a).all())
    assert torch.equal(a, box.sample(257, method, seed=1))
    u = box.to_unit(a)
    assert float(u[:, :8].min()) >= -1 and float(u[:, :8].max()) <= 1
    assert torch.equal(u[:, 8], torch.zeros(257, dtype=torch.float64))   # degenerate q


def test_lhs_covers_every_stratum():
    box = Box(("a",), torch.tensor([0.0]), torch.tensor([1.0]))
    x = box.sample(50, "lhs", seed=0)[:, 0]
    assert sorted((x * 50).floor().long().tolist()) == list(range(50))


def test_box_validation_and_violations():
    with pytest.raises(ValueError, match="high"):
        Box(("a", "b"), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="one per name"):
        Box(("a",), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0]))
    box = Box(("a", "b"), torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]))
    v = box.violations(torch.tensor([[0.5, 1.25]], dtype=torch.float64))
    assert v == ["b above 1 by up to 0.25"]


def test_generate_dataset_labels_match_pricer_and_split():
    ds = generate_dataset("bs", 1000, seed=4)
    assert ds.X.shape == (1000, 5) and ds.meta["model"] == "bs"
    assert torch.allclose(ds.y, bs_price(ds.X[:, 0], ds.X[:, 1:]), atol=1e-15)
    a, b, c = ds.split((0.8, 0.1, 0.1), seed=0)
    assert (len(a), len(b), len(c)) == (800, 100, 100)
    rows = torch.cat([a.X, b.X, c.X])
    assert torch.equal(rows[rows[:, 0].argsort()], ds.X[ds.X[:, 0].argsort()])
    with pytest.raises(ValueError, match="fractions"):
        ds.split((0.5, 0.6))


def test_generate_dataset_with_a_callable_and_errors():
    box = Box(("s", "m", "tau", "r", "q"), torch.tensor([0.1, 0.9, 0.1, 0.0, 0.0]),
              torch.tensor([0.3, 1.1, 1.0, 0.0, 0.0]))
    ds = generate_dataset(lambda p, c: bs_price(p[:, 0], c), 50, box=box, seed=0)
    assert len(ds) == 50
    with pytest.raises(ValueError, match="box"):
        generate_dataset(lambda p, c: p[:, 0], 10)
    with pytest.raises(ValueError, match="Box with 9 features"):
        generate_dataset("heston", 10, box=default_box("bs"))
    with pytest.raises(ValueError, match="model"):
        generate_dataset("hestn", 10)


def test_load_quotes_csv_prices_and_vols(tmp_path):
    f = tmp_path / "q.csv"
    f.write_text("strike,maturity,price,implied_vol,spot,rate,dividend\n"
                 "100,0.5,6.0,,100,0.01,0\n"
                 "110,1.0,,0.25,100,0.01,0\n")
    q = load_quotes_csv(f)
    assert q.contracts.shape == (2, 4)
    assert abs(float(q.prices[0]) - 0.06) < 1e-15
    c1 = torch.tensor([[1.1, 1.0, 0.01, 0.0]], dtype=torch.float64)
    assert abs(float(q.prices[1] - bs_price(torch.tensor([0.25], dtype=torch.float64), c1)[0])) < 1e-15
    g = tmp_path / "nospot.csv"
    g.write_text("strike,maturity,price\n100,0.5,6.0\n")
    assert float(load_quotes_csv(g, spot=100.0).contracts[0, 0]) == 1.0
    with pytest.raises(ValueError, match="line 2"):
        load_quotes_csv(g)
    h = tmp_path / "bad.csv"
    h.write_text("strike,maturity,price\n100,abc,6.0\n")
    with pytest.raises(ValueError, match="line 2"):
        load_quotes_csv(h, spot=100.0)
    k = tmp_path / "cols.csv"
    k.write_text("k,t\n1,2\n")
    with pytest.raises(ValueError, match="needs columns"):
        load_quotes_csv(k)


def test_monte_carlo_labels_keep_their_standard_errors():
    from dnnkit.options.exotics import mc_barrier
    from dnnkit.options.surrogate import evaluate

    box = Box(("sigma", "h", "m", "tau", "r", "q"),
              torch.tensor([0.1, 1.1, 0.9, 0.2, 0.0, 0.0], dtype=torch.float64),
              torch.tensor([0.4, 1.4, 1.1, 1.0, 0.05, 0.0], dtype=torch.float64))

    def mc(p, c):
        return mc_barrier("bs", p[:, :1], c, p[:, 1], n_paths=400, steps_per_year=50, seed=0)

    ds = generate_dataset(mc, 12, box=box, seed=0)
    assert ds.stderr is not None and ds.stderr.shape == (12,) and bool((ds.stderr > 0).any())
    a, b = ds.split((0.5, 0.5))
    assert a.stderr.shape == (6,) and b.stderr.shape == (6,)
    ev = evaluate(lambda X: torch.zeros(X.shape[0]), ds)
    assert abs(ev["noise_floor"] - float(ds.stderr.pow(2).mean().sqrt())) < 1e-15
