"""Monte Carlo exotics: agreement with closed forms within standard errors, seeds."""

import pytest
import torch

from dnnkit.options.exotics import barrier_price, geometric_asian_price, mc_asian, mc_barrier
from dnnkit.options.pricers import price_european

C1 = torch.tensor([[1.0, 0.5, 0.03, 0.0]], dtype=torch.float64)


def test_bs_barrier_mc_with_bgk_matches_closed_form():
    s = torch.tensor([[0.25]], dtype=torch.float64)
    h = torch.tensor([1.25], dtype=torch.float64)
    mc, se = mc_barrier("bs", s, C1, h, n_paths=20_000, steps_per_year=252, bgk=True, seed=0)
    exact = barrier_price(s[:, 0], C1, h)
    assert abs(float(mc[0] - exact[0])) < 4 * float(se[0]) + 2e-4


@pytest.mark.parametrize("model,params", [
    ("heston", [[0.04, 2.0, 0.04, 0.3, -0.6]]), ("vg", [[0.2, 0.2, -0.1]]), ("bs", [[0.2]])])
def test_unreachable_barrier_gives_the_european_price(model, params):
    p = torch.tensor(params, dtype=torch.float64)
    mc, se = mc_barrier(model, p, C1, torch.tensor([50.0]), n_paths=20_000, steps_per_year=100,
                        seed=1)
    ref = price_european(model, p, C1)
    bias = 2e-3 if model == "heston" else 0.0              # Euler discretisation
    assert abs(float(mc[0] - ref[0])) < 4 * float(se[0]) + bias


def test_knock_in_plus_knock_out_is_vanilla_in_mc():
    p = torch.tensor([[0.3]], dtype=torch.float64)
    h = torch.tensor([1.2])
    out, _ = mc_barrier("bs", p, C1, h, barrier_type="up-out", n_paths=4000, seed=3)
    inn, _ = mc_barrier("bs", p, C1, h, barrier_type="up-in", n_paths=4000, seed=3)
    van, _ = mc_barrier("bs", p, C1, torch.tensor([1e6]), n_paths=4000, seed=3)
    assert abs(float(out[0] + inn[0] - van[0])) < 1e-12


def test_mc_is_reproducible_and_needs_a_seed():
    p = torch.tensor([[0.04, 2.0, 0.04, 0.3, -0.6]], dtype=torch.float64)
    a = mc_barrier("heston", p, C1, torch.tensor([1.2]), n_paths=2000, seed=7)
    b = mc_barrier("heston", p, C1, torch.tensor([1.2]), n_paths=2000, seed=7)
    assert torch.equal(a[0], b[0])
    with pytest.raises(ValueError, match="seed"):
        mc_barrier("heston", p, C1, torch.tensor([1.2]), n_paths=2000)


def test_asian_control_variate_is_unbiased_and_tighter():
    s = torch.tensor([[0.3]], dtype=torch.float64)
    cv, se_cv = mc_asian("bs", s, C1, n_fix=12, n_paths=20_000, seed=0)
    pl, se_pl = mc_asian("bs", s, C1, n_fix=12, n_paths=20_000, seed=1, control_variate=False)
    assert float(se_cv[0]) < 0.2 * float(se_pl[0])
    assert abs(float(cv[0] - pl[0])) < 4 * float((se_cv[0] ** 2 + se_pl[0] ** 2).sqrt())
    geo = geometric_asian_price(s[:, 0], C1, 12)
    assert float(cv[0]) > float(geo[0])                     # AM-GM: arithmetic >= geometric


def test_breached_barrier_warns_or_raises():
    s = torch.tensor([0.2], dtype=torch.float64)
    with pytest.raises(ValueError, match="breached"):
        barrier_price(s, C1, torch.tensor([0.95]), "up-out", strict=True)
    out = barrier_price(s, C1, torch.tensor([0.95]), "up-out")
    assert float(out[0]) == 0.0
    vanilla = price_european("bs", s[:, None], C1)
    assert float((barrier_price(s, C1, torch.tensor([0.95]), "up-in") - vanilla).abs()[0]) < 1e-15
