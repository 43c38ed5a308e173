"""SCALE-Sim topology export: format, effective extents, depthwise naming, GEMM format."""

from __future__ import annotations

import math

import pytest

from dnnkit.core.models import mobilenet_v1
from dnnkit.systolic import SystolicArray, extract_layers, to_scalesim_topology
from dnnkit.systolic.layers import GemmLayer
from dnnkit.systolic.model import simulate_layer


def scalesim_rows(csv: str, gemm: bool = False) -> list[tuple[str, int, int, int]]:
    """Read a topology the way SCALE-Sim 3.0.0 does; return (name, Npx, M, K) per layer."""
    out = []
    for line in csv.strip().splitlines()[1:]:
        elems = line.split(",")[:-1]
        name = elems[0].strip()
        if gemm:
            m, n, k = (int(e) for e in elems[1:4])
            out.append((name, m, n, k))
            continue
        h, w, r, s, c, m, st = (int(e) for e in elems[1:8])
        e_h = math.ceil((h - r + st) / st)
        e_w = math.ceil((w - s + st) / st)
        copies = c if "DP" in name else 1
        for _ in range(copies):
            out.append((name, e_h * e_w, m, r * s * (1 if "DP" in name else c)))
    return out


def test_conv_rows_and_effective_extent():
    layers = extract_layers(mobilenet_v1(), (1, 3, 224, 224))
    csv = to_scalesim_topology(layers)
    lines = csv.splitlines()
    assert lines[0].startswith("Layer name,") and len(lines) == 29
    assert lines[1] == "conv0, 225, 225, 3, 3, 3, 32, 2,"
    assert lines[2] == "dw1, 114, 114, 3, 3, 1, 1, 1,"
    assert all(line.endswith(",") for line in lines)
    parsed = scalesim_rows(csv)
    for lay, (name, npx, m, k) in zip(layers, parsed):
        assert (name, npx, m, k) == (lay.name, lay.npx, lay.out_ch_per_group, lay.window)


def test_whole_layer_export_expands_groups():
    dw = GemmLayer("dw", "depthwise", 10, 10, 3, 3, 1, 2, 2, 2, n_groups=5)
    grp = GemmLayer("g", "group", 6, 6, 3, 3, 4, 4, n_groups=3)
    sneaky = GemmLayer("myDPconv", "conv", 6, 6, 3, 3, 2, 2)
    csv = to_scalesim_topology([dw, grp, sneaky], per_group=False)
    assert "dw_DP, 9, 9, 3, 3, 5, 2, 2," in csv  # SCALE-Sim expands it into 5 layers
    assert "myDpconv" in csv and "myDPconv" not in csv  # no accidental depthwise expansion
    parsed = scalesim_rows(csv)
    assert len(parsed) == 5 + 3 + 1
    arr = SystolicArray(8, 8, "ws")
    for lay in (dw, grp):
        rows = [p for p in parsed if p[0].startswith(lay.name + "_")]
        one = GemmLayer("x", "conv", lay.in_h, lay.in_w, lay.k_h, lay.k_w, 1, 1, lay.stride_h,
                        lay.stride_w)
        assert len(rows) == lay.n_groups
        assert all(p[1] == one.out_h * one.out_w and p[2] == lay.out_ch_per_group for p in rows)
    assert simulate_layer(grp, arr).cycles == 3 * simulate_layer(
        GemmLayer("x", "conv", 6, 6, 3, 3, 4, 4), arr).cycles


def test_one_by_one_layers_fold_batch_and_stride():
    pw = GemmLayer("pw", "pointwise", 9, 9, 1, 1, 8, 4, 2, 2, batch=3)
    fc = GemmLayer("fc", "fc", 1, 1, 1, 1, 16, 10, batch=7)
    (_, npx_pw, _, _), (_, npx_fc, _, k_fc) = scalesim_rows(to_scalesim_topology([pw, fc]))
    assert npx_pw == pw.npx == 5 * 5 * 3 and npx_fc == 7 and k_fc == 16


def test_gemm_format_is_exact_for_anything():
    odd = GemmLayer("odd", "conv", 9, 12, 3, 2, 5, 7, 1, 3, batch=2)
    with pytest.raises(ValueError, match="gemm=True"):
        to_scalesim_topology([odd])
    with pytest.raises(ValueError, match="gemm=True"):
        to_scalesim_topology([GemmLayer("b", "conv", 9, 9, 3, 3, 5, 7, batch=2)])
    csv = to_scalesim_topology([odd], gemm=True)
    assert csv.splitlines()[0] == "Layer, M, N, K,"
    assert scalesim_rows(csv, gemm=True) == [("odd", odd.npx, 7, odd.window)]
    grp = GemmLayer("g", "group", 6, 6, 3, 3, 2, 2, n_groups=2)
    assert len(scalesim_rows(to_scalesim_topology([grp], per_group=False, gemm=True), True)) == 2


def test_bad_input():
    with pytest.raises(ValueError, match="no GEMM layers"):
        to_scalesim_topology([])
    with pytest.raises(TypeError, match="GemmLayer"):
        to_scalesim_topology(["conv0"])
