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
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_fused_jacobian_equals_autograd(model, baseline, activation, backend):
    box = default_box(model)
    torch.manual_seed(0)
    net = SurrogatePricer(box, depth=3, width=16, activation=activation, baseline=baseline,
                          dtype=torch.float64)
    with torch.no_grad():                      # a non-trivial output normalisation
        net.y_shift.fill_(0.01)
        net.y_scale.fill_(0.3)
    X = box.sample(300, "sobol", 1)     # 300 x 16 activations: numpy calls torch kernels
    p = box.dim - 4
    f = fused_value_and_jacobian(net, p, X[:, p:], backend=backend)
    assert f is not None
    price, J = f(X[:, :p], True)
    want_p, want_J = _autograd(net, X[:, :p], X[:, p:])
    assert torch.allclose(price, want_p, atol=1e-12, rtol=0)
    assert torch.allclose(J, want_J, atol=1e-10, rtol=1e-9)
    price2, none = f(X[:, :p], False)
    assert none is None and torch.equal(price2, price)
    # k parameter sets, each at every contract: the same numbers as the row-wise pass
    sets = X[:3, :p]
    f_all = fused_value_and_jacobian(net, p, X[:8, p:], backend=backend)
    p_set, J_set = f_all(sets[:, None, :], True)
    assert p_set.shape == (3, 8) and J_set.shape == (3, 8, p)
    rows = sets.repeat_interleave(8, 0)
    want_p, want_J = _autograd(net, rows, X[:8, p:].repeat(3, 1))
    assert torch.allclose(p_set.reshape(-1), want_p, atol=1e-12, rtol=0)
    assert torch.allclose(J_set.reshape(-1, p), want_J, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("widths", [[], [6], [6, 5]])
def test_fused_pass_of_plain_and_linear_stacks(backend, widths):
    """A lone linear layer, and linear layers without activations in between."""
    box = default_box("bs")
    p = box.dim - 4
    sizes = [box.dim] + widths + [1]
    torch.manual_seed(1)
    mods = [torch.nn.Linear(a, b).double() for a, b in zip(sizes[:-1], sizes[1:])]
    net = SurrogatePricer(box, depth=1, width=4, dtype=torch.float64)
    net.net = torch.nn.Sequential(*mods)
    X = box.sample(16, "sobol", 2)
    f = fused_value_and_jacobian(net, p, X[:, p:], backend=backend)
    price, J = f(X[:, :p], True)
    want_p, want_J = _autograd(net, X[:, :p], X[:, p:])
    assert torch.allclose(price, want_p, atol=1e-12, rtol=0)
    assert torch.allclose(J, want_J, atol=1e-10, rtol=1e-9)


def test_float32_surrogate_numpy_and_torch_backends_agree():
    box = default_box("heston")
    torch.manual_seed(0)
    net = SurrogatePricer(box, depth=3, width=32, baseline="heston_bs")
    X = box.sample(200, "sobol", 3)
    p = box.dim - 4
    a = fused_value_and_jacobian(net, p, X[:, p:], backend="numpy")(X[:3, None, :p], True)
    b = fused_value_and_jacobian(net, p, X[:, p:], backend="torch")(X[:3, None, :p], True)
    scale = float(b[0].abs().max())
    assert torch.allclose(a[0], b[0], atol=1e-6 * scale, rtol=0)
    assert torch.allclose(a[1], b[1], atol=1e-5 * float(b[1].abs().max()), rtol=0)


def test_unsupported_nets_fall_back_to_autograd():
    box = default_box("bs")
    custom = SurrogatePricer.from_module(torch.nn.Sequential(torch.nn.Linear(5, 1)), box)
    assert fused_value_and_jacobian(custom, 1, torch.ones(3, 4, dtype=torch.float64)) is None
