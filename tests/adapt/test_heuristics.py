"""Push-down / push-up and the bookkeeping rules."""

from __future__ import annotations

import math

import pytest
import torch

from dnnkit.adapt import FixedPointFormat, quantize_fixed
from dnnkit.adapt.heuristics import (
    adapt_lookback,
    adapt_resolution,
    gradient_diversity,
    histogram_divergence,
    next_strategy,
    push_down,
    push_up,
)


def test_divergence_zero_for_identical_and_constant():
    w = torch.randn(500)
    assert histogram_divergence(w, w.clone(), 30) == 0.0
    assert histogram_divergence(w, w.clone(), 30, kind="official") == 0.0
    c = torch.full((10,), 0.3)
    assert histogram_divergence(c, torch.zeros(10), 30) == 0.0   # no range: no loss, no 0/0


def test_kl_positive_and_inf_when_bins_vanish():
    w = torch.linspace(-1, 1, 1000)
    coarse = quantize_fixed(w, FixedPointFormat(8, 1))           # 5 values left
    assert histogram_divergence(w, coarse, 50) == math.inf
    fine = quantize_fixed(w, FixedPointFormat(16, 6))
    d = histogram_divergence(w, fine, 10)
    assert 0 <= d < math.inf


def test_official_divergence_can_be_negative():
    # 4 bins over [0, 1]: P = [.5, 0, 0, .5], Q = [.4, .1, .1, .4] (mass spread into empty bins)
    w = torch.cat([torch.zeros(50), torch.ones(50)])
    w_hat = torch.cat([torch.zeros(40), torch.full((10,), 0.3), torch.full((10,), 0.7),
                       torch.ones(40)])
    assert histogram_divergence(w, w_hat, 4, kind="official") < 0      # counted as "no loss"
    assert histogram_divergence(w, w_hat, 4) == pytest.approx(math.log(0.5 / 0.4))  # true KL


def test_gradient_diversity():
    g = torch.randn(20)
    assert gradient_diversity([g, g, 2 * g]) == pytest.approx(1.0)
    assert gradient_diversity([g, -g]) == math.inf
    assert gradient_diversity([torch.zeros(3)]) == 1.0
    gs = [torch.randn(20) for _ in range(5)]
    assert gradient_diversity(gs) >= 1.0


def test_push_up_rules():
    f = FixedPointFormat(8, 4)
    assert push_up(f, 1.0, results_buffer=4) == FixedPointFormat(9, 5)
    # l = 0.5: s1 = 4, s2 = 8 - 4 = 4 -> FL 8, WL 9, buffer: WL >= FL + 4 = 12
    assert push_up(f, math.exp(1.5), strategy="min", results_buffer=4) == FixedPointFormat(12, 8)
    gd = math.exp(1.25)                      # l = 0.25: s1 = 16, s2 = max(2 - 4, 0) = 0
    assert push_up(f, gd, strategy="min", results_buffer=4) == FixedPointFormat(9, 4)
    assert push_up(f, gd, strategy="mean", results_buffer=4) == FixedPointFormat(16, 12)
    assert push_up(f, gd, strategy="max", results_buffer=4) == FixedPointFormat(24, 20)
    # results buffer: FL <= 32 - B and WL >= FL + B
    assert push_up(FixedPointFormat(32, 30), 1.0, results_buffer=8) == FixedPointFormat(32, 24)
    assert push_up(FixedPointFormat(6, 4), 1.0, results_buffer=8) == FixedPointFormat(13, 5)


def test_push_down_never_raises_precision_and_is_minimal():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2000, generator=g) * 0.05
    start = FixedPointFormat(24, 20)
    out = push_down(w, start, 20, generator=torch.Generator().manual_seed(1))
    assert out.wl <= start.wl and out.fl <= start.fl and out.fl >= 4
    # values on the <*, 3> grid: stochastic rounding is exact there, so the test is
    # deterministic and the result must be the first loss-free format in each direction
    w2 = torch.round(torch.randn(2000, generator=g) * 8) / 8
    out2 = push_down(w2, FixedPointFormat(16, 10), 40, fl_floor=0,
                     generator=torch.Generator().manual_seed(0))

    def d(wl, fl):
        return histogram_divergence(w2, quantize_fixed(w2, FixedPointFormat(wl, fl)), 40)

    assert d(out2.wl, out2.fl) == 0.0
    assert d(16, out2.fl - 1) > 0 and d(out2.wl - 1, out2.fl) > 0
    assert out2.fl == 3


def test_push_down_official_bisection_reproduces_the_quirks():
    g = torch.Generator().manual_seed(0)
    torch.randn(2000, generator=g)
    w2 = torch.round(torch.randn(2000, generator=g) * 8) / 8          # in [-4.125, 3.125]
    corr = push_down(w2, FixedPointFormat(16, 10), 40, fl_floor=0,
                     generator=torch.Generator().manual_seed(0))
    off = push_down(w2, FixedPointFormat(16, 10), 40, fl_floor=0, official_bisection=True,
                    generator=torch.Generator().manual_seed(0))
    assert corr == FixedPointFormat(6, 3)
    # official FL loop tests its lower bound (0: lossy -> 5, then 5: fine -> stops at 5);
    # the WL loop at FL 5 returns the last lossy WL (7: range +-2), not the first fine one (8)
    assert off == FixedPointFormat(7, 5)


def test_push_down_constant_tensor_goes_to_floor():
    out = push_down(torch.full((50,), 0.25), FixedPointFormat(16, 10), 50)
    assert out.fl == 4 and out.wl == 4


def test_lookback_and_resolution_rules():
    assert adapt_lookback(25, 1.0, lookback_range=(25, 100), momentum=1.0) == 100
    assert adapt_lookback(100, math.inf, lookback_range=(25, 100), momentum=1.0) == 25
    assert adapt_lookback(25, 2.0, lookback_range=(25, 100), momentum=0.33) == math.ceil(
        0.33 * 50 + 0.67 * 25)
    assert adapt_resolution(50, 100, lookback_range=(25, 100), resolution_range=(50, 150)) == 51
    assert adapt_resolution(50, 25, lookback_range=(25, 100), resolution_range=(50, 150)) == 50
    assert adapt_resolution(150, 100, lookback_range=(25, 100),
                            resolution_range=(50, 150)) == 150
    assert next_strategy("min", 1.0, 1.5) == "mean"
    assert next_strategy("mean", 1.0, 1.5) == "max"
    assert next_strategy("max", 2.0, 1.5) == "min"


def test_bad_inputs():
    w = torch.randn(10)
    with pytest.raises(ValueError, match="'kind'"):
        histogram_divergence(w, w, 10, kind="js")
    with pytest.raises(ValueError, match="'strategy'"):
        push_up(FixedPointFormat(8, 4), 1.0, strategy="median")
    with pytest.raises(ValueError, match="'results_buffer'"):
        push_up(FixedPointFormat(8, 4), 1.0, results_buffer=32)
    with pytest.raises(ValueError, match="'w_hat'"):
        histogram_divergence(w, torch.randn(11), 10)
    with pytest.raises(FloatingPointError, match="'w'"):
        push_down(torch.tensor([1.0, float("inf")]), FixedPointFormat(8, 4), 10)


def test_fast_histogram_equals_torch_histc_on_edges_and_grids():
    from dnnkit.adapt.heuristics import _histc

    g = torch.Generator().manual_seed(0)
    for trial in range(300):
        n = int(torch.randint(10, 2000, (1,), generator=g))
        x = torch.randn(n, generator=g, dtype=torch.float64) * (0.01 + 3 * float(torch.rand(1, generator=g)))
        bins = int(torch.randint(1, 160, (1,), generator=g))
        if trial % 2:                                  # quantized values (what push-down sees)
            x = (x * 2 ** (trial % 11)).round() / 2 ** (trial % 11)
        lo, hi = float(x.min()), float(x.max())
        if not hi > lo:
            continue
        edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
        up = edges.nextafter(torch.full_like(edges, float("inf")))
        down = edges.nextafter(torch.full_like(edges, -float("inf")))
        x = torch.cat([x, edges, up, down])            # on, just above, just below the edges
        r_lo, r_hi = (lo, hi) if trial % 3 else (lo + 0.1 * (hi - lo), hi - 0.2 * (hi - lo))
        assert torch.equal(_histc(x, bins, r_lo, r_hi), torch.histc(x, bins, r_lo, r_hi))
