"""Bad inputs raise clear errors naming the problem; never a silent wrong answer."""

import logging

import pytest
import torch

from dnnkit.options import price_european
from dnnkit.options.pricers import bs_price, cos_price, fft_price

C = torch.tensor([[1.0, 0.5, 0.02, 0.0]], dtype=torch.float64)
H = torch.tensor([[0.04, 1.5, 0.06, 0.5, -0.6]], dtype=torch.float64)


@pytest.mark.parametrize("col,value,match", [
    (0, 0.0, r"K/S"), (0, -1.0, r"K/S"), (1, 0.0, "tau"), (1, -0.1, "tau"),
    (2, float("nan"), r"\(r\).*finite"), (0, float("inf"), "finite")])
def test_bad_contracts(col, value, match):
    c = C.clone()
    c[0, col] = value
    with pytest.raises(ValueError, match=match):
        price_european("heston", H, c)


@pytest.mark.parametrize("j,value,match", [
    (0, -0.01, "v0"), (1, 0.0, "kappa"), (2, 0.0, "theta"), (3, 0.0, "sigma"),
    (4, 1.0, "rho"), (4, -1.5, "rho"), (0, float("nan"), "finite")])
def test_bad_heston_params(j, value, match):
    p = H.clone()
    p[0, j] = value
    with pytest.raises(ValueError, match=match):
        price_european("heston", p, C)


def test_bad_vol_and_vg_martingale_condition():
    with pytest.raises(ValueError, match="sigma"):
        price_european("bs", torch.tensor([[0.0]]), C)
    with pytest.raises(ValueError, match="sigma"):
        bs_price(torch.tensor([-0.2]), C)
    with pytest.raises(ValueError, match="martingale"):
        price_european("vg", torch.tensor([[0.5, 3.0, 0.3]]), C)   # 1 - 0.9 - 0.375 < 0
    with pytest.raises(ValueError, match="nu"):
        price_european("vg", torch.tensor([[0.2, 0.0, -0.1]]), C)


def test_shapes_and_methods():
    with pytest.raises(ValueError, match="5 columns"):
        price_european("heston", H[:, :4], C)
    with pytest.raises(ValueError, match="1 or 2 rows"):
        price_european("heston", torch.cat([H, H, H]), torch.cat([C, C]))
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        price_european("heston", H, C[:, :3])
    with pytest.raises(ValueError, match="'closed' only"):
        price_european("heston", H, C, method="closed")
    with pytest.raises(ValueError, match="Did you mean 'heston'"):
        price_european("hestn", H, C)
    with pytest.raises(ValueError, match="option"):
        price_european("heston", H, C, "straddle")


def test_feller_violation_is_legal_and_logged(caplog):
    p = torch.tensor([[0.04, 0.5, 0.02, 0.8, -0.5]], dtype=torch.float64)   # 2 k th << s^2
    with caplog.at_level(logging.DEBUG, logger="dnnkit"):
        v = price_european("heston", p, C)
    assert float(v[0]) > 0 and "Feller" in caplog.text


def test_too_small_truncation_raises_instead_of_returning_garbage():
    p = torch.tensor([[0.01, 0.5, 0.2, 0.8, -0.9]], dtype=torch.float64)
    c = torch.tensor([[1.2, 0.05, 0.0, 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="increase L or n_terms"):
        cos_price("heston", p, c, n_terms=16, L=0.3)
    with pytest.raises(ValueError, match="alpha"):
        fft_price("heston", H, C, alpha=0.0)
