"""Search space, latency tables, super-net, loss, search loop and derivation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from dnnkit.fbnet import (
    DNASConfig,
    LatencyTable,
    LayerSlot,
    SuperNet,
    dnas_search,
    fbnet_candidates,
    fbnet_loss,
    fbnet_macro,
    flops_table,
    measure_latency_table,
    systolic_table,
)
from dnnkit.fbnet.space import count_macs

NAMES = ["k3_e1", "k5_e3", "skip"]


def tiny(width=4):
    stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
    slots = [LayerSlot(width, width, 1, (6, 6)), LayerSlot(width, 2 * width, 2, (6, 6))]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, 3))
    return stem, slots, head


def tiny_supernet(lut=None, names=NAMES):
    torch.manual_seed(0)
    stem, slots, head = tiny()
    cands = fbnet_candidates(only=names, include_shift=False)
    lut = lut if lut is not None else flops_table(cands, slots, unit="MAC")
    return SuperNet(stem, slots, cands, head, lut), cands, slots


def toy_data(n=60):
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 6, 6, generator=g) * 0.3
    x[:, 0, :2, :2] += (y == 0).float().view(-1, 1, 1)
    x[:, 0, -2:, -2:] += (y == 1).float().view(-1, 1, 1)
    return x, y


def test_candidates_and_macro():
    c = fbnet_candidates()
    assert list(c) == ["k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3",
                       "k5_e6", "skip"]
    assert "shift_e3" in fbnet_candidates(include_shift=True)
    with pytest.raises(KeyError, match="k3_e6"):
        fbnet_candidates(only=["k3_e7"])
    stem, slots, head = fbnet_macro()
    assert len(slots) == 22 and slots[-1].c_out == 352 and slots[-1].input_hw == (7, 7)
    assert sum(s.stride == 2 for s in slots) == 4
    for a, b in zip(slots, slots[1:]):
        assert a.c_out == b.c_in and a.output_hw == b.input_hw


def test_skip_becomes_projection_and_misfit_is_named():
    skip = fbnet_candidates()["skip"]
    assert isinstance(skip(8, 8, 1), nn.Identity)
    assert skip(8, 16, 2)(torch.zeros(1, 8, 5, 5)).shape == (1, 16, 3, 3)
    stem, slots, head = tiny()
    bad = {"k3_e1": fbnet_candidates()["k3_e1"], "wrong": lambda ci, co, s: nn.Identity()}
    lut = LatencyTable(list(bad), torch.ones(2, 2) * 5)
    with pytest.raises(ValueError, match="'wrong' does not fit slot 1"):
        SuperNet(stem, slots, bad, head, lut)


def test_latency_table_roundtrip_and_bad_values(tmp_path):
    t = LatencyTable(["a", "b"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "ms", {"x": 1})
    assert t.total(["b", "a"]) == 5.0 and t.total([0, 0]) == 4.0
    for suffix in (".json", ".safetensors"):
        t.save(tmp_path / f"lut{suffix}")
        u = LatencyTable.load(tmp_path / f"lut{suffix}")
        assert u.names == t.names and u.unit == "ms" and torch.equal(u.values, t.values)
        assert u.meta == {"x": 1}
    with pytest.raises(ValueError, match="pickle|.json or .safetensors"):
        t.save(tmp_path / "lut.pt")
    for bad in ([[1.0, float("nan")]], [[1.0, -1.0]], [[0.0, 1.0]], [[1.0, 2.0, 3.0]], [1.0, 2.0]):
        with pytest.raises(ValueError, match="'values'"):
            LatencyTable(["a", "b"], torch.tensor(bad))
    with pytest.raises(KeyError, match="'a'"):
        t.total(["c", "a"])


def test_flops_and_systolic_tables():
    from dnnkit.systolic import SystolicArray, simulate

    stem, slots, head = tiny()
    cands = fbnet_candidates(only=NAMES)
    f = flops_table(cands, slots, unit="MAC", overhead=2.0)
    assert f.shape == (2, 3)
    blk = cands["k5_e3"](4, 8, 2)
    assert f.values[1, 1] == count_macs(blk, (1, 4, 6, 6)) + 2.0
    assert f.values[0, 2] == 2.0                           # identity skip: overhead only
    arr = SystolicArray(8, 8, "ws")
    s = systolic_table(cands, slots, arr, overhead=1.0)
    rep = simulate(blk, arr, input_shape=(1, 4, 6, 6))
    assert s.values[1, 1] == rep.total_cycles + 1.0
    assert s.values[0, 2] == 1.0 and s.meta["array"] == [8, 8, "ws"]


def test_measured_table_restores_threads():
    stem, slots, head = tiny()
    before = torch.get_num_threads()
    t = measure_latency_table(fbnet_candidates(only=["k3_e1", "skip"]), slots[:1], warmup=0,
                              runs=3, threads=1)
    assert torch.get_num_threads() == before
    assert t.shape == (1, 2) and bool((t.values > 0).all()) and t.meta["runs"] == 3


def test_supernet_forward_latency_and_one_hot_equals_child():
    net, cands, slots = tiny_supernet()
    x = torch.randn(5, 1, 6, 6)
    g = torch.Generator().manual_seed(3)
    m = net.mixture_weights(2.0, generator=torch.Generator().manual_seed(3))
    logits, lat = net(x, 2.0, generator=g)
    assert logits.shape == (5, 3)
    torch.testing.assert_close(lat, (m * net.lut_values).sum())
    arch = ["k5_e3", "skip"]
    one = torch.zeros(2, 3)
    one[0, 1] = one[1, 2] = 1
    child = net.build_child(arch, inherit=True)
    net.eval()
    child.eval()
    with torch.no_grad():
        out, lat1 = net(x, weights=one)
        torch.testing.assert_close(out, child(x))
    assert float(lat1) == pytest.approx(net.lut.total(arch))
    assert len(net.arch_parameters()) == 2
    assert len(net.weight_parameters()) == len(list(net.parameters())) - 2


def test_fbnet_loss_forms():
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    ce = nn.functional.cross_entropy(logits, y)
    lat = torch.tensor(100.0)
    torch.testing.assert_close(fbnet_loss(logits, y, lat),
                               ce * 0.2 * math.log(100.0) ** 0.6)
    torch.testing.assert_close(fbnet_loss(logits, y, lat, form="log_pow"),
                               0.2 * ce * math.log(100.0 ** 0.6))
    with pytest.raises(ValueError, match="'latency'"):
        fbnet_loss(logits, y, torch.tensor(0.5))
    with pytest.raises(ValueError, match="'alpha'"):
        fbnet_loss(logits, y, lat, alpha=0.0)
    with pytest.raises(ValueError, match="'beta'"):
        fbnet_loss(logits, y, lat, beta=-0.1)
    with pytest.raises(ValueError, match="'form'"):
        fbnet_loss(logits, y, lat, form="papr")


@pytest.mark.parametrize("kw,param", [({"tau0": 0.0}, "tau0"), ({"tau_decay": 1.5}, "tau_decay"),
                                      ({"tau_decay": 0.0}, "tau_decay"),
                                      ({"warmup_epochs": 5, "epochs": 5}, "warmup_epochs"),
                                      ({"alpha": 0.0}, "alpha"), ({"beta": -1.0}, "beta"),
                                      ({"w_split": 1.0}, "w_split")])
def test_config_bad_values(kw, param):
    with pytest.raises(ValueError, match=f"'{param}'"):
        DNASConfig(**kw)


def test_search_history_warmup_and_derive():
    net, _, _ = tiny_supernet()
    x, y = toy_data()
    cfg = DNASConfig(epochs=3, warmup_epochs=1, batch_size=16, theta_batch_size=4, w_lr=0.05,
                     theta_lr=0.1, beta=1.0, tau_decay=0.5)
    seen = []
    res = dnas_search(net, x, y, cfg, callback=lambda e, r: seen.append(e))
    assert seen == [0, 1, 2]
    h = res.history
    assert [r["tau"] for r in h] == [5.0, 2.5, 1.25]
    assert h[0]["theta"] == [[0.0] * 3] * 2                     # warm-up: theta untouched
    assert h[-1]["theta"] != h[0]["theta"]
    assert math.isnan(h[0]["ce_theta"]) and not math.isnan(h[-1]["ce_theta"])
    assert h[0]["entropy"] == pytest.approx(math.log(3))
    assert res.arch == net.derive("argmax").archs[0]
    assert res.arch_latency == net.lut.total(res.arch)
    assert net.training                                         # mode restored
    d1, d2 = net.derive("sample", n=5, seed=7), net.derive("sample", n=5, seed=7)
    assert d1.archs == d2.archs and d1.seed == 7 and len(d1.archs) == 5
    d3 = net.derive("sample", n=2)
    assert isinstance(d3.seed, int)
    assert net.derive("sample", n=2, seed=d3.seed).archs == d3.archs


def test_latency_pressure_moves_theta_to_cheap_blocks():
    """With a strong latency term, P_theta's expected latency falls; without, it does not."""
    names = ["k3_e1", "skip"]
    exp = {}
    for beta in (0.0, 8.0):
        lut = LatencyTable(names, torch.tensor([[1000.0, 10.0], [1000.0, 50.0]]), "us")
        net, _, _ = tiny_supernet(lut, names)
        x, y = toy_data()
        cfg = DNASConfig(epochs=4, warmup_epochs=1, batch_size=20, theta_batch_size=6,
                         theta_lr=0.1, beta=beta, tau_decay=0.7)
        res = dnas_search(net, x, y, cfg)
        exp[beta] = res.history[-1]["expected_latency"]
    assert exp[8.0] < 0.8 * exp[0.0]


def test_search_bad_inputs():
    net, _, _ = tiny_supernet()
    x, y = toy_data(10)
    with pytest.raises(ValueError, match="theta-set"):
        dnas_search(net, x[:1], y[:1], DNASConfig(epochs=2, warmup_epochs=1))
    small = LatencyTable(NAMES, torch.full((2, 3), 0.2), "ms")
    net2, _, _ = tiny_supernet(small)
    with pytest.raises(ValueError, match="unit='us'"):
        dnas_search(net2, x, y, DNASConfig(epochs=2, warmup_epochs=1))
    with pytest.raises(ValueError, match="'lut'"):
        stem, slots, head = tiny()
        SuperNet(stem, slots, fbnet_candidates(only=NAMES), head,
                 LatencyTable(NAMES, torch.ones(3, 3) * 5))
    with pytest.raises(ValueError, match="'tau'"):
        net(x, 0.0)


def test_follows_dtype_float64():
    net, _, _ = tiny_supernet()
    net = net.double()
    x, y = toy_data(20)
    logits, lat = net(x.double(), 1.0)
    assert logits.dtype == torch.float64 and lat.dtype == torch.float64
    res = dnas_search(net, x, y, DNASConfig(epochs=2, warmup_epochs=1, batch_size=10,
                                            theta_batch_size=4))
    assert all(t.dtype == torch.float64 for t in res.theta)
    assert all(p.dtype == torch.float64 for p in net.build_child(res.arch).parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_supernet_and_shift():
    from dnnkit.fbnet import shift2d
    from dnnkit.fbnet.shift import shift_as_depthwise_weight

    x = torch.randn(2, 18, 6, 6, device="cuda")
    w = shift_as_depthwise_weight(18, 3).cuda()
    assert torch.equal(shift2d(x), torch.nn.functional.conv2d(x, w, padding=1, groups=18))
    net, _, _ = tiny_supernet()
    net = net.cuda()
    xs, ys = toy_data(20)
    res = dnas_search(net, xs, ys, DNASConfig(epochs=2, warmup_epochs=1, batch_size=10,
                                              theta_batch_size=4))
    assert res.theta[0].device.type == "cpu" and net.theta[0].device.type == "cuda"
    assert next(net.build_child(res.arch).parameters()).device.type == "cuda"


def test_lut_made_for_other_slots_is_refused():
    stem, slots, head = tiny()
    cands = fbnet_candidates(only=NAMES)
    other = [LayerSlot(4, 4, 1, (8, 8)), LayerSlot(4, 8, 2, (8, 8))]
    lut = flops_table(cands, other, unit="MAC")
    with pytest.raises(ValueError, match="made for"):
        SuperNet(stem, slots, cands, head, lut)


def test_measured_table_process_clock_and_bad_clock():
    _, slots, _ = tiny()
    cands = fbnet_candidates(only=["k3_e1", "skip"])
    t = measure_latency_table(cands, slots[:1], warmup=0, runs=2, clock="process")
    assert t.meta["clock"] == "process" and bool((t.values > 0).all())
    with pytest.raises(ValueError, match="'clock'"):
        measure_latency_table(cands, slots[:1], clock="cpu")
