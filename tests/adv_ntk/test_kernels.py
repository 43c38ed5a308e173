"""Analytic kernels: closed forms, symmetry/PSD, blocking, gradients, empirical NTK, bad input."""

import math

import pytest
import torch

from dnnkit.adv_ntk import KernelSpec, ntk_kernel
from dnnkit.adv_ntk.empirical import empirical_ntk, ntk_mlp

SPECS = [KernelSpec(depth=1), KernelSpec(depth=3), KernelSpec(depth=5, w_std=1.3, b_std=0.5),
         KernelSpec(depth=3, activation="erf"), KernelSpec(arch="conv", depth=2)]


def _x(spec, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 2, 5, 5) if spec.arch == "conv" else (n, 7)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def test_closed_forms_depth2():
    sw = 1.76
    spec = KernelSpec(depth=2, w_std=sw, b_std=0.0)
    d = 4
    x = torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1]], dtype=torch.float64)  # |x|^2 = d, x1 ⟂ x2
    k = ntk_kernel(x, None, spec, get=("nngp", "ntk"))
    assert torch.allclose(k["ntk"].diagonal(), torch.full((2,), sw**4, dtype=torch.float64),
                          rtol=0, atol=1e-13)
    assert abs(float(k["ntk"][0, 1]) - sw**4 / (2 * math.pi)) < 1e-13
    assert abs(float(k["nngp"][0, 1]) - sw**4 / (2 * math.pi)) < 1e-13
    assert abs(float(k["nngp"][0, 0]) - sw**4 / 2) < 1e-13 and d == x.shape[1]


def test_depth1_is_linear_kernel():
    spec = KernelSpec(depth=1, w_std=2.0, b_std=0.3)
    x = _x(spec, 6)
    want = 4.0 * (x @ x.T) / x.shape[1] + 0.09
    assert torch.allclose(ntk_kernel(x, None, spec), want, atol=1e-14)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.arch}{s.depth}{s.activation}")
def test_symmetric_psd_and_blocking(spec):
    x = _x(spec, 11)
    k = ntk_kernel(x, None, spec, get=("nngp", "ntk"))
    kb = ntk_kernel(x, None, spec, get=("nngp", "ntk"), batch_size=3)
    for name in ("nngp", "ntk"):
        assert torch.allclose(k[name], k[name].T, atol=1e-13)
        assert float(torch.linalg.eigvalsh(k[name])[0]) > -1e-10
        assert torch.allclose(k[name], kb[name], atol=1e-13, rtol=0)
    # NTK dominates NNGP (Θ = Σ + positive terms) on the diagonal
    assert bool((k["ntk"].diagonal() >= k["nngp"].diagonal() - 1e-12).all())
    # the cross kernel is the block of the joint Gram matrix
    y = _x(spec, 4, seed=1)
    joint = ntk_kernel(torch.cat([x, y]), None, spec)
    assert torch.allclose(ntk_kernel(x, y, spec, batch_size=2), joint[:11, 11:], atol=1e-13)


def test_follows_dtype_and_returns_tensor_for_str():
    spec = KernelSpec()
    x = _x(spec, 4).float()
    k = ntk_kernel(x, None, spec)
    assert isinstance(k, torch.Tensor) and k.dtype == torch.float32
    k64 = ntk_kernel(x.double(), None, spec)
    assert torch.allclose(k.double(), k64, rtol=1e-5)
    assert ntk_kernel(torch.ones(2, 3, dtype=torch.int64), None, spec).is_floating_point()


@pytest.mark.parametrize("spec", [KernelSpec(depth=3), KernelSpec(arch="conv", depth=2),
                                  KernelSpec(depth=2, activation="erf")],
                         ids=["mlp", "conv", "erf"])
def test_gradient_wrt_inputs(spec):
    x1 = _x(spec, 3).requires_grad_(True)
    x2 = _x(spec, 4, seed=2)
    assert torch.autograd.gradcheck(lambda a: ntk_kernel(a, x2, spec), (x1,), eps=1e-6, atol=1e-5)


def test_gradient_finite_at_identical_points():
    spec = KernelSpec(depth=3)
    x = _x(spec, 3)
    x1 = x.clone().requires_grad_(True)
    ntk_kernel(x1, x, spec).sum().backward()
    assert bool(torch.isfinite(x1.grad).all())


def test_analytic_matches_empirical_ntk_of_wide_mlp():
    spec = KernelSpec(depth=3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 6, generator=g, dtype=torch.float64)
    analytic = ntk_kernel(x, None, spec)
    emp = torch.stack([empirical_ntk(ntk_mlp(6, 1024, 1, spec, seed=s), x) for s in range(4)])
    mean = emp.mean(0)
    rel = float((mean - analytic).abs().max() / analytic.abs().max())
    assert rel < 0.05, rel
    # a narrow net is much further from the limit than the wide one (Monte-Carlo scaling)
    narrow = torch.stack([empirical_ntk(ntk_mlp(6, 16, 1, spec, seed=s), x) for s in range(4)])
    rel_narrow = float((narrow - analytic).abs().max() / analytic.abs().max())
    assert rel_narrow > 2 * rel


def test_empirical_ntk_full_mode_and_model_untouched():
    net = ntk_mlp(4, 8, 3, KernelSpec(depth=2), seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(3, 4, dtype=torch.float64)
    full = empirical_ntk(net, x, mode="full")
    assert full.shape == (3, 3, 3, 3)
    trace = empirical_ntk(net, x)
    assert torch.allclose(trace, full.diagonal(dim1=2, dim2=3).mean(-1), atol=1e-12)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("kwargs", [{"depth": 0}, {"w_std": 0.0}, {"w_std": -1.0},
                                    {"b_std": -0.1}, {"activation": "tanh"}, {"arch": "rnn"},
                                    {"arch": "conv", "activation": "erf"}, {"w_std": math.nan},
                                    {"b_std": math.inf}])
def test_bad_spec(kwargs):
    with pytest.raises(ValueError, match="KernelSpec"):
        KernelSpec(**kwargs)


def test_bad_inputs():
    spec = KernelSpec()
    x = torch.randn(3, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="same feature shape"):
        ntk_kernel(x, torch.randn(2, 6, dtype=torch.float64), spec)
    with pytest.raises(ValueError, match="4-D"):
        ntk_kernel(x, None, KernelSpec(arch="conv"))
    bad = x.clone()
    bad[1, 2] = math.nan
    with pytest.raises(ValueError, match="finite"):
        ntk_kernel(bad, None, spec)
    with pytest.raises(ValueError, match="finite"):
        ntk_kernel(x, torch.full((2, 5), math.inf), spec)
    with pytest.raises(ValueError, match="'get'"):
        ntk_kernel(x, None, spec, get="cntk")
    with pytest.raises(TypeError, match="KernelSpec"):
        ntk_kernel(x, None, {"depth": 3})
    zero = torch.cat([x, torch.zeros(1, 5, dtype=torch.float64)])
    with pytest.raises(ValueError, match="all-zero"):
        ntk_kernel(zero, None, KernelSpec(b_std=0.0))
    assert bool(torch.isfinite(ntk_kernel(zero, None, spec)).all())  # b_std > 0 is fine


def test_refuses_memory_infeasible_before_allocating():
    spec = KernelSpec()
    x = torch.zeros(3_000_000, 1)  # output would be 3e6 x 3e6 floats = 36 TB
    with pytest.raises(ValueError, match="GiB"):
        ntk_kernel(x + 1.0, None, spec)


def test_empirical_bad_inputs():
    net = ntk_mlp(4, 8, 2, KernelSpec(depth=2), seed=0)
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="'x2'"):
        empirical_ntk(net, x, torch.randn(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="'mode'"):
        empirical_ntk(net, x, mode="diag")
    with pytest.raises(TypeError, match="'model'"):
        empirical_ntk(lambda t: t, x)
    with pytest.raises(ValueError, match="MLP"):
        ntk_mlp(4, 8, 2, KernelSpec(arch="conv"))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_conv_fast_path_equals_autograd_path(depth):
    """Without autograd the CNN kernel runs a separate in-place (H, W, N1, N2) block; on pairs of
    distinct points (well-conditioned arccos) it equals the differentiable (N1, N2, H, W) form,
    and so does each block edge."""
    spec = KernelSpec(arch="conv", depth=depth, w_std=1.5, b_std=0.2)
    x, y = _x(spec, 9), _x(spec, 7, seed=2)
    fast = ntk_kernel(x, y, spec, get=("nngp", "ntk"))
    small = ntk_kernel(x, y, spec, get=("nngp", "ntk"), batch_size=2)
    slow = ntk_kernel(x.clone().requires_grad_(True), y, spec, get=("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        want = slow[name].detach()
        assert torch.allclose(fast[name], want, rtol=1e-12, atol=0)
        assert torch.allclose(small[name], want, rtol=1e-12, atol=0)
