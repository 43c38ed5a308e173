"""Kernel predictors: special cases of ϖ, the gradient-flow ODE, the +1 subgradient, bad input."""

import math

import pytest
import torch

from dnnkit.adv_ntk import AdvNTK, KernelSpec, ntk_kernel
from dnnkit.adv_ntk.predict import phi_times, signed_abs

SPEC = KernelSpec(depth=3)


def _data(n=24, d=6, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64) - 0.5
    y = torch.arange(n) % c
    return x, y


def test_phi_times_matches_explicit_formula():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = a @ a.T + torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, 2, generator=g, dtype=torch.float64)
    eye = torch.eye(6, dtype=torch.float64)
    want = torch.linalg.solve(a, (eye - torch.linalg.matrix_exp(-a)) @ b)
    assert torch.allclose(phi_times(a, b), want, atol=1e-12)
    assert torch.allclose(phi_times(torch.zeros(3, 3, dtype=torch.float64), b[:3]), b[:3])


def test_zero_varpi_predicts_zero_and_infinite_interpolates():
    x, y = _data()
    f0 = AdvNTK(x, y, SPEC, varpi=0.0)
    assert float(f0(x).detach().abs().max()) == 0.0
    finf = AdvNTK(x, y, SPEC, varpi=math.inf)
    assert not finf.varpi.requires_grad
    onehot = torch.nn.functional.one_hot(y, 3).double()
    assert torch.allclose(finf(x), onehot, atol=1e-8)
    # very long training converges to the t = ∞ predictor
    xt, _ = _data(8, seed=1)
    far = AdvNTK(x, y, SPEC, varpi=1e4, trainable=False)
    assert torch.allclose(far(xt), finf(xt), atol=1e-8)


def test_gradient_flow_ode():
    """f_t(X) solves d f/dt = -η Θ (f - Y) (gradient flow on ½ Σ ||f - y||²), with ϖ = η t."""
    x, y = _data()
    onehot = torch.nn.functional.one_hot(y, 3).double()
    t, h = 0.05, 1e-5
    fp = AdvNTK(x, y, SPEC, varpi=t + h, trainable=False)(x)
    fm = AdvNTK(x, y, SPEC, varpi=t - h, trainable=False)(x)
    f = AdvNTK(x, y, SPEC, varpi=t, trainable=False)(x)
    gram = ntk_kernel(x, None, SPEC)
    deriv = (fp - fm) / (2 * h)
    assert torch.allclose(deriv, -gram @ (f - onehot), atol=1e-6, rtol=1e-6)


def test_per_class_with_equal_columns_equals_per_sample():
    x, y = _data()
    v = torch.rand(24, dtype=torch.float64)
    a = AdvNTK(x, y, SPEC, varpi=v)
    b = AdvNTK(x, y, SPEC, varpi=v[:, None].repeat(1, 3), per_class=True)
    xt, _ = _data(5, seed=2)
    assert torch.allclose(a(xt), b(xt), atol=1e-12)


def test_plus_one_subgradient_at_zero():
    w = torch.zeros(3, requires_grad=True)
    signed_abs(w).sum().backward()
    assert torch.equal(w.grad, torch.ones(3))
    x, y = _data()
    model = AdvNTK(x, y, SPEC, varpi=0.0)
    xt, _ = _data(6, seed=3)
    loss = ((model(xt) - torch.nn.functional.one_hot(y[:6], 3).double()) ** 2).sum()
    (g,) = torch.autograd.grad(loss, model.varpi)
    assert float(g.abs().sum()) > 0  # torch.abs would give an identically zero gradient here


def test_cached_weights_follow_varpi_updates():
    x, y = _data()
    model = AdvNTK(x, y, SPEC, varpi=0.1, trainable=False)
    p1 = model.weights()
    assert model.weights() is p1  # cached
    with torch.no_grad():
        model.varpi.mul_(2.0)
    p2 = model.weights()
    assert not torch.allclose(p1, p2)
    fresh = AdvNTK(x, y, SPEC, varpi=0.2, trainable=False).weights()
    assert torch.allclose(p2, fresh, atol=1e-13)


def test_singular_kernel_needs_diag_reg():
    x, y = _data()
    xd, yd = torch.cat([x, x[:2]]), torch.cat([y, y[:2]])
    with pytest.raises(ValueError, match="diag_reg"):
        AdvNTK(xd, yd, SPEC, varpi=math.inf)
    model = AdvNTK(xd, yd, SPEC, varpi=math.inf, diag_reg=1e-6)
    assert bool(torch.isfinite(model(x)).all())
    # a finite varpi needs no inverse: duplicates are fine
    assert bool(torch.isfinite(AdvNTK(xd, yd, SPEC, varpi=1.0)(x)).all())


def test_bad_inputs():
    x, y = _data()
    with pytest.raises(ValueError, match="24 rows"):
        AdvNTK(x, y[:-1], SPEC)
    with pytest.raises(ValueError, match="num_classes"):
        AdvNTK(x, y, SPEC, num_classes=2)
    with pytest.raises(ValueError, match="varpi"):
        AdvNTK(x, y, SPEC, varpi=torch.zeros(5))
    with pytest.raises(ValueError, match="varpi"):
        AdvNTK(x, y, SPEC, varpi=-1.0)
    with pytest.raises(ValueError, match="varpi"):
        AdvNTK(x, y, SPEC, varpi=math.nan)
    with pytest.raises(ValueError, match="varpi"):
        AdvNTK(x, y, SPEC, varpi=torch.zeros(24), per_class=True)
    bad = x.clone()
    bad[0, 0] = math.inf
    with pytest.raises(ValueError, match="finite"):
        AdvNTK(bad, y, SPEC)
    with pytest.raises(ValueError, match="finite"):
        AdvNTK(x, torch.full((24, 3), math.nan), SPEC)
    with pytest.raises(ValueError, match="integer class labels"):
        AdvNTK(x, torch.full((24,), 0.5), SPEC)
    with pytest.raises(ValueError, match="labels"):
        AdvNTK(x, torch.zeros(24, 3, 1), SPEC)
    model = AdvNTK(x, y, SPEC)
    with pytest.raises(ValueError, match="same feature shape"):
        model(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="GiB"):
        AdvNTK(torch.zeros(500_000, 1) + 1, torch.zeros(500_000, dtype=torch.long), SPEC)


@pytest.mark.parametrize("per_class", [False, True])
@pytest.mark.parametrize("scale", [0.0, 1.0, 30.0])
def test_eigh_and_expm_methods_agree_in_value_and_gradient(per_class, scale):
    """The fast eigen path (custom backward) equals differentiating the matrix exponential,
    including at ϖ = 0 where every eigenvalue coincides."""
    x, y = _data(30)
    g = torch.Generator().manual_seed(5)
    shape = (30, 3) if per_class else (30,)
    v = torch.rand(shape, generator=g, dtype=torch.float64) * scale
    xt, _ = _data(7, seed=6)
    target = torch.rand(7, 3, generator=g, dtype=torch.float64)
    outs = []
    for method in ("eigh", "expm"):
        model = AdvNTK(x, y, SPEC, varpi=v, per_class=per_class, method=method)
        assert model.method == method
        f = model(xt)
        (grad,) = torch.autograd.grad(((f - target) ** 2).sum(), model.varpi)
        outs.append((f.detach(), grad))
    (fa, ga), (fb, gb) = outs
    assert torch.allclose(fa, fb, atol=1e-12)
    assert bool(torch.isfinite(ga).all())
    assert torch.allclose(ga, gb, atol=1e-10 * max(1.0, float(gb.abs().max())))


def test_method_choice():
    x, y = _data()
    assert AdvNTK(x, y, SPEC, varpi=0.1).method == "eigh"
    xd, yd = torch.cat([x, x[:1]]), torch.cat([y, y[:1]])
    assert AdvNTK(xd, yd, SPEC, varpi=0.1).method == "expm"  # singular Θ: inverse-free fallback
    with pytest.raises(ValueError, match="well-conditioned"):
        AdvNTK(xd, yd, SPEC, varpi=0.1, method="eigh")
    with pytest.raises(ValueError, match="'method'"):
        AdvNTK(x, y, SPEC, method="pade")


@pytest.mark.parametrize("how", ["functional_call", "param_data", "vector_to_parameters"])
def test_weights_cache_follows_a_swapped_varpi(how):
    """Regression: the cache was keyed on varpi._version only and served an old varpi."""
    x, y = _data()
    xt, _ = _data(8, seed=1)
    model = AdvNTK(x, y, SPEC, varpi=0.5)
    new = torch.full_like(model.varpi, 3.0)
    fresh = AdvNTK(x, y, SPEC, varpi=new).eval()
    with torch.no_grad():
        want = fresh(xt)
        before = model(xt)                      # fills the cache with varpi = 0.5
        if how == "functional_call":
            got = torch.func.functional_call(model, {"varpi": new}, (xt,))
        elif how == "param_data":
            model.varpi.data = new.clone()
            got = model(xt)
        else:
            torch.nn.utils.vector_to_parameters(new.reshape(-1), [model.varpi])
            got = model(xt)
    assert not torch.allclose(before, want)
    assert torch.allclose(got, want, atol=1e-12)
    with torch.no_grad():                       # and back: the cache does not stick to the new one
        if how == "functional_call":
            assert torch.allclose(model(xt), before, atol=1e-12)
