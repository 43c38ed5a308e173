"""The closed-form compute model: fold-by-fold brute force, hand-checked values, bad input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnnkit.systolic import SystolicArray, simulate
from dnnkit.systolic.layers import GemmLayer, regroup_layers
from dnnkit.systolic.model import simulate_layer, spatial_dims


def brute_force(layer: GemmLayer, ar: int, ac: int, df: str) -> dict:
    """Walk every fold explicitly (the way SCALE-Sim's demand matrices are laid out)."""
    e = (layer.in_h - layer.k_h) // layer.stride_h + 1
    f = (layer.in_w - layer.k_w) // layer.stride_w + 1
    npx = e * f * layer.batch
    k = layer.k_h * layer.k_w * layer.in_ch_per_group
    m = layer.out_ch_per_group
    sr, sc, t = {"os": (npx, m, k), "ws": (k, m, npx), "is": (k, npx, m)}[df]
    cycles, mapped, busy, busy_ss, folds = 0, 0.0, 0.0, 0.0, 0
    for r0 in range(0, sr, ar):
        for c0 in range(0, sc, ac):
            rows = min(ar, sr - r0)
            cols = min(ac, sc - c0)
            if df == "os":
                # stream T operands, fill the skewed array, drain the outputs
                fold = t + (ar - 1) + (ac - 1)
                fold_ss = fold
            else:
                # load the stationary operand (ar), stream T with skew, drain
                fold = ar + (ar - 1) + (ac - 1) + t
                fold_ss = fold + ac - 1
            cycles += fold
            folds += 1
            mapped += rows * cols / (ar * ac)
            busy += rows * cols * t / (ar * ac * fold)
            busy_ss += rows * cols * t / (ar * ac * fold_ss)
    per_group = max(cycles - 1, 1)
    macs = npx * m * k
    return {"cycles": layer.n_groups * per_group, "n_folds": folds,
            "overall_util": 100 * macs / (per_group * ar * ac),
            "mapping_eff": 100 * mapped / folds, "compute_util": 100 * busy / folds,
            "scalesim_compute_util": 100 * busy_ss / folds}


layer_st = st.builds(
    lambda h, w, kh, kw, c, m, sh, sw, g, b: GemmLayer(
        "x", "group" if g > 1 else "conv", h + kh - 1, w + kw - 1, kh, kw, c, m, sh, sw, g, b),
    st.integers(1, 20), st.integers(1, 20), st.integers(1, 5), st.integers(1, 5),
    st.integers(1, 40), st.integers(1, 70), st.integers(1, 3), st.integers(1, 3),
    st.integers(1, 4), st.integers(1, 3))


@settings(max_examples=120, deadline=None)
@given(layer_st, st.integers(1, 33), st.integers(1, 33), st.sampled_from(["os", "ws", "is"]))
def test_closed_form_equals_fold_by_fold(layer, ar, ac, df):
    rep = simulate_layer(layer, SystolicArray(ar, ac, df))
    ref = brute_force(layer, ar, ac, df)
    assert rep.cycles == ref["cycles"]
    assert rep.n_folds == ref["n_folds"]
    for key in ("overall_util", "mapping_eff", "compute_util", "scalesim_compute_util"):
        assert getattr(rep, key) == pytest.approx(ref[key], rel=1e-12, abs=1e-12)
    assert rep.macs == layer.macs
    assert 0 < rep.compute_util <= rep.mapping_eff + 1e-9 <= 100 + 2e-9


def test_scalesim_values_by_hand():
    # SCALE-Sim 3.0.0, 64x64 OS, MobileNetV1 conv0 (written 225x225) -> 29987 cycles; one
    # depthwise channel of dw1 -> 26459 cycles, 1.5625 % mapping efficiency.
    conv0 = GemmLayer("conv0", "conv", 225, 225, 3, 3, 3, 32, 2, 2)
    dw1 = GemmLayer("dw1", "depthwise", 114, 114, 3, 3, 1, 1, n_groups=32)
    arr = SystolicArray(64, 64, "os")
    r0, r1 = simulate_layer(conv0, arr), simulate_layer(dw1, arr)
    assert r0.cycles == 29987 and r0.mapping_eff == 50.0
    assert r1.cycles == 32 * 26459 and r1.cycles_per_group == 26459
    assert r1.mapping_eff == pytest.approx(100 / 64)
    assert r0.overall_util == pytest.approx(8.823823656917998, abs=1e-9)


@pytest.mark.parametrize("g", [1, 2, 4, 8, 16, 64])
def test_depthwise_cycle_formula_of_the_spec(g):
    # cycles(G) = (C/G) * (ceil(EF/R) * ceil(G/C_arr) * (9G + R + C_arr - 2) - 1) on OS
    c, e = 128, 28
    dw = GemmLayer("dw", "depthwise", e + 2, e + 2, 3, 3, 1, 1, n_groups=c)
    rep = simulate(regroup_layers([dw], g), SystolicArray(64, 64, "os")).layers[0]
    expect = (c // g) * (math.ceil(e * e / 64) * math.ceil(g / 64) * (9 * g + 64 + 64 - 2) - 1)
    assert rep.cycles == expect
    assert rep.macs == e * e * c * 9 * g


def test_batch_is_folded_into_pixels():
    one = GemmLayer("a", "conv", 10, 10, 3, 3, 4, 8, batch=3)
    tall = GemmLayer("a", "conv", 10, 10, 3, 3, 4, 8)
    for df in ("os", "ws", "is"):
        sr, sc, t = spatial_dims(one, df)
        assert sr * sc * t == 3 * 8 * 8 * 36 * 8
        assert spatial_dims(one, df) != spatial_dims(tall, df)
    assert one.macs == 3 * tall.macs


def test_network_totals():
    layers = [GemmLayer("c", "conv", 18, 18, 3, 3, 3, 16),
              GemmLayer("d", "depthwise", 16, 16, 3, 3, 1, 1, n_groups=16),
              GemmLayer("fc", "fc", 1, 1, 1, 1, 64, 10, batch=5)]
    arr = SystolicArray(16, 8, "ws")
    rep = simulate(layers, arr)
    assert rep.total_cycles == sum(simulate_layer(x, arr).cycles for x in layers)
    assert rep.total_macs == sum(x.macs for x in layers)
    assert rep.network_util == pytest.approx(100 * rep.total_macs / (rep.total_cycles * 128))
    assert rep.mean_layer_util == pytest.approx(sum(r.overall_util for r in rep.layers) / 3)
    assert set(rep.cycles_by_kind()) == {"conv", "depthwise", "fc"}
    assert rep.as_rows()[2]["name"] == "fc"


@pytest.mark.parametrize("kwargs, exc, text", [
    ({"rows": 0}, ValueError, "'rows' parameter of systolic.SystolicArray must be an int in [1,"),
    ({"cols": -3}, ValueError, "'cols'"),
    ({"rows": 2.5}, TypeError, "'rows'"),
    ({"dataflow": "rs"}, ValueError, "['os', 'ws', 'is']"),
    ({"dataflow": "wss"}, ValueError, "Did you mean 'ws'"),
])
def test_bad_array(kwargs, exc, text):
    with pytest.raises(exc, match=None) as info:
        SystolicArray(**kwargs)
    assert text in str(info.value)


def test_dataflow_is_case_insensitive():
    assert SystolicArray(8, 8, "WS").dataflow == "ws"


@pytest.mark.parametrize("kwargs, text", [
    ({"in_h": 2, "k_h": 3}, "kernel is larger"),
    ({"stride_h": 0}, "'stride_h'"),
    ({"n_groups": 0}, "'n_groups'"),
    ({"kind": "dense"}, "'kind'"),
])
def test_bad_layer(kwargs, text):
    base = {"name": "bad", "kind": "conv", "in_h": 8, "in_w": 8, "k_h": 3, "k_w": 3,
            "in_ch_per_group": 2, "out_ch_per_group": 2}
    with pytest.raises(ValueError) as info:
        GemmLayer(**{**base, **kwargs})
    assert text in str(info.value) and "bad" in str(info.value)


def test_simulate_input_errors():
    with pytest.raises(ValueError, match="no GEMM layers"):
        simulate([], SystolicArray())
    with pytest.raises(TypeError, match="SystolicArray"):
        simulate([GemmLayer("c", "conv", 4, 4, 1, 1, 1, 1)], (64, 64))
    with pytest.raises(TypeError, match="GemmLayer"):
        simulate([("c", 4)], SystolicArray())
