"""The fused value-and-Jacobian pass of a surrogate equals autograd through the module."""

import pytest
import torch

from dnnkit.options import SurrogatePricer
from dnnkit.options.data import default_box
from dnnkit.options.fused import fused_value_and_jacobian
from dnnkit.options.surrogate import ACTIVATIONS


def _autograd(net, theta, contracts):
    theta = theta.clone().requires_grad_(True)
    price = net(torch.cat([theta, contracts], -1))
    (J,) = torch.autograd.grad(price.sum(), theta)
    return price.detach(), J


@pytest.mark.parametrize("model,baseline", [("heston", "heston_bs"), ("heston", "none"),
                                            ("vg", "vg_bs")])
@pytest.mark.parametrize("activation", sorted(set(ACTIVATIONS) - {"gelu"}) + ["gelu"])
def test_fused_jacobian_equals_autograd(model, baseline, activation):
    box = default_box(model)
    torch.manual_seed(0)
    net = SurrogatePricer(box, depth=3, width=16, activation=activation, baseline=baseline,
                          dtype=torch.float64)
    with torch.no_grad():                      # a non-trivial output normalisation
        net.y_shift.fill_(0.01)
        net.y_scale.fill_(0.3)
    X = box.sample(64, "sobol", 1)
    p = box.dim - 4
    f = fused_value_and_jacobian(net, p, X[:, p:])
    assert f is not None
    price, J = f(X[:, :p], True)
    want_p, want_J = _autograd(net, X[:, :p], X[:, p:])
    assert torch.allclose(price, want_p, atol=1e-12, rtol=0)
    assert torch.allclose(J, want_J, atol=1e-10, rtol=1e-9)
    price2, none = f(X[:, :p], False)
    assert none is None and torch.equal(price2, price)


def test_unsupported_nets_fall_back_to_autograd():
    box = default_box("bs")
    custom = SurrogatePricer.from_module(torch.nn.Sequential(torch.nn.Linear(5, 1)), box)
    assert fused_value_and_jacobian(custom, 1, torch.ones(3, 4, dtype=torch.float64)) is None
