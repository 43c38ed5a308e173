"""Oracles: torch's fake quantization and brevitas (quantizer), scipy / torch (divergences),
fvcore and thop (MAC counts)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dnnkit.adapt import FixedPointFormat, quantize_fixed
from dnnkit.adapt.cost import layer_macs
from dnnkit.adapt.heuristics import histogram_divergence
from tests.conftest import need

FORMATS = [(8, 4), (16, 8), (6, 2), (12, 10), (4, 0), (3, 6), (5, 9), (2, 1), (10, 12),
           (20, 4), (24, 16)]


def _values(fmt: FixedPointFormat, n: int = 20_000) -> torch.Tensor:
    g = torch.Generator().manual_seed(fmt.wl * 100 + fmt.fl)
    span = 1.5 * fmt.max_value + fmt.eps
    x = (torch.rand(n, generator=g) * 2 - 1) * span          # ~1/3 saturating
    ties = (torch.randint(-(2 ** min(fmt.wl, 12)), 2 ** min(fmt.wl, 12), (200,), generator=g)
            + 0.5) * fmt.eps                                  # exact ties: half to even
    return torch.cat([x, ties])


@pytest.mark.parametrize("wl,fl", FORMATS)
def test_nearest_equals_torch_fake_quantize(wl, fl):
    fmt = FixedPointFormat(wl, fl)
    x = _values(fmt)
    ref = torch.fake_quantize_per_tensor_affine(x, 2.0 ** -fl, 0, fmt.qmin, fmt.qmax)
    assert torch.equal(quantize_fixed(x, fmt, "nearest"), ref)


@pytest.mark.parametrize("wl,fl", [(8, 4), (6, 2), (12, 8), (16, 10), (4, 6), (10, 12), (3, 1)])
def test_nearest_equals_brevitas_fixed_point(wl, fl):
    need("brevitas")
    from brevitas.nn import QuantIdentity
    from brevitas.quant import Int8ActPerTensorFixedPoint

    fmt = FixedPointFormat(wl, fl)
    q = QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=wl,
                      scaling_impl_type="const", scaling_init=2.0 ** (wl - fl - 1),
                      narrow_range=False, signed=True, return_quant_tensor=False).eval()
    x = _values(fmt, 5_000)
    with torch.no_grad():
        ref = q(x)
    assert torch.equal(quantize_fixed(x, fmt, "nearest"), ref)


def test_kl_equals_scipy_entropy():
    stats = need("scipy.stats")
    np = pytest.importorskip("numpy")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4000, generator=g, dtype=torch.float64)
    for fl in (3, 5, 8):
        w_hat = quantize_fixed(w, FixedPointFormat(16, fl), "stochastic", generator=g)
        lo, hi = float(w.min()), float(w.max())
        p, _ = np.histogram(w.numpy(), bins=60, range=(lo, hi))
        q, _ = np.histogram(np.clip(w_hat.numpy(), lo, hi), bins=60, range=(lo, hi))
        ref = stats.entropy(p, q)
        ours = histogram_divergence(w, w_hat, 60)
        if np.isinf(ref):
            assert ours == float("inf")
        else:
            assert ours == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_official_divergence_equals_torch_kldivloss_as_called():
    np = pytest.importorskip("numpy")
    g = torch.Generator().manual_seed(1)
    w = torch.randn(3000, generator=g, dtype=torch.float64)
    w_hat = quantize_fixed(w, FixedPointFormat(8, 3), "stochastic", generator=g)
    lo, hi = float(w.min()), float(w.max())
    p = torch.histc(w, 50, lo, hi)
    q = torch.histc(w_hat, 50, lo, hi)          # official: out-of-range values dropped
    p, q = p / p.sum(), q / q.sum()
    ref = torch.nn.KLDivLoss(reduction="batchmean", log_target=True)(p, q).item()
    ours = histogram_divergence(w, w_hat, 50, kind="official", clip_outside=False)
    assert ours == pytest.approx(ref, rel=1e-12, abs=1e-15)
    assert np.isfinite(ours)


def _cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, groups=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10))


def test_macs_hand_count():
    m = layer_macs(_cnn(), (1, 3, 16, 16))
    assert m["0"] == 16 * 16 * 8 * 3 * 9
    assert m["1"] == 8 * 16 * 16
    assert m["3"] == 7 * 7 * 16 * 4 * 9
    assert m["6"] == 16 * 7 * 7 * 32
    assert m["8"] == 32 * 10


def test_macs_equal_fvcore():
    fvcore = need("fvcore.nn")
    net = _cnn().eval()
    x = torch.zeros(1, 3, 16, 16)
    ours = layer_macs(net, (1, 3, 16, 16))
    fa = fvcore.FlopCountAnalysis(net, x).unsupported_ops_warnings(False)
    ref = fa.by_module()
    for name in ("0", "3", "6", "8"):
        assert ours[name] == ref[name], name


def test_macs_equal_thop_totals():
    thop = need("thop")
    net = _cnn().eval()
    convlin = nn.Sequential(*[m for m in net if isinstance(m, (nn.Conv2d, nn.Linear, nn.ReLU,
                                                                nn.Flatten))])
    ours = layer_macs(net, (1, 3, 16, 16))
    macs, _ = thop.profile(convlin, inputs=(torch.zeros(1, 3, 16, 16),), verbose=False)
    # thop counts conv/linear MACs exactly like the standard formula (ReLU/Flatten: 0)
    assert int(macs) == ours["0"] + ours["3"] + ours["6"] + ours["8"]


@pytest.mark.slow
def test_nearest_equals_qtorch_when_installed():
    """qtorch (the official implementation's library) JIT-compiles a C++ extension on first
    import; it is not a CI dependency, so this check runs only where it is installed."""
    qt = pytest.importorskip("qtorch.quant")
    for wl, fl in [(8, 4), (16, 8), (6, 2), (12, 10)]:
        fmt = FixedPointFormat(wl, fl)
        x = _values(fmt, 5_000)
        assert torch.equal(quantize_fixed(x, fmt, "nearest"),
                           qt.fixed_point_quantize(x, wl, fl, rounding="nearest"))
        q = qt.fixed_point_quantize(x, wl, fl, rounding="stochastic")
        assert torch.equal(q / fmt.eps, (q / fmt.eps).round())
