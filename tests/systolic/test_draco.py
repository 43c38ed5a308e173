"""DRACO: model surgery (exact re-initialisation), sweeps, per-layer choice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dnnkit.core.models import MOBILENET_V1_BLOCKS, mobilenet_v1
from dnnkit.systolic import SystolicArray, apply_group_size, draco_sweep, extract_layers, simulate
from dnnkit.systolic.draco import choose_group_sizes
from dnnkit.systolic.layers import GemmLayer, regroup_layers


def small_mobilenet(**kw):
    return mobilenet_v1(10, width_mult=0.25, blocks=MOBILENET_V1_BLOCKS[:5], **kw)


@pytest.mark.parametrize("g", [2, 4, 8, 64])
def test_init_from_depthwise_computes_the_same_function(g, float64):
    torch.manual_seed(0)
    net = small_mobilenet().eval()
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    new = apply_group_size(net, g, init_from_depthwise=True)
    x = torch.randn(3, 3, 32, 32)
    assert torch.allclose(new(x), net(x), atol=1e-6, rtol=0)
    assert new.dw1.groups == max(1, 8 // g) and net.dw1.groups == 8  # original untouched
    assert new.dw1.weight.dtype == torch.float64 and not new.training


def test_channel_multiplier_and_group_source(float64):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(6, 12, 3, padding=1, groups=6),  # depthwise, multiplier 2
                        nn.Conv2d(12, 12, 3, groups=4, bias=False))  # group conv, 3 ch/group
    new = apply_group_size(net, {"0": 3, "1": 6}, init_from_depthwise=True)
    assert (new[0].groups, new[1].groups) == (2, 2)
    x = torch.randn(2, 6, 7, 7)
    assert torch.allclose(new(x), net(x), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="cannot initialise '1' exactly"):
        apply_group_size(net, {"1": 2}, init_from_depthwise=True)


def test_surgery_agrees_with_the_analytic_regrouping():
    net = small_mobilenet()
    layers = extract_layers(net, (1, 3, 64, 64))
    for g in (2, 4, {"dw2": 8, "dw4": 2}):
        traced = extract_layers(apply_group_size(net, g), (1, 3, 64, 64))
        assert traced == regroup_layers(layers, g)


def test_fresh_init_is_seeded_by_the_caller():
    net = small_mobilenet()
    torch.manual_seed(3)
    a = apply_group_size(net, 4)
    torch.manual_seed(3)
    b = apply_group_size(net, 4)
    assert torch.equal(a.dw3.weight, b.dw3.weight)
    assert not torch.equal(a.dw3.weight[:, 1:], torch.zeros_like(a.dw3.weight[:, 1:]))


def test_apply_group_size_errors():
    net = small_mobilenet()
    with pytest.raises(ValueError) as info:
        apply_group_size(net, 3)
    assert "does not divide the 8 input channels of 'dw1'" in str(info.value)
    assert "[2, 4]" in str(info.value)
    with pytest.raises(KeyError, match="Did you mean 'dw1'"):
        apply_group_size(net, {"dw_1": 2})
    with pytest.raises(ValueError, match="only grouped/depthwise Conv2d"):
        apply_group_size(net, {"pw1": 2})
    with pytest.raises(ValueError, match="group_size"):
        apply_group_size(net, -1)
    with pytest.raises(TypeError, match="nn.Module"):
        apply_group_size("net", 2)


def test_sweep_on_mobilenet():
    layers = extract_layers(mobilenet_v1(), (1, 3, 224, 224))
    dw = [x for x in layers if x.kind == "depthwise"]
    for df in ("os", "ws", "is"):
        pts = draco_sweep(layers, SystolicArray(64, 64, df), (1, 2, 4, 8))
        base = simulate(layers, SystolicArray(64, 64, df))
        assert pts[0].total_cycles == base.total_cycles and pts[0].latency_reduction == 0
        cyc = [p.total_cycles for p in pts]
        assert cyc[0] > cyc[1] > cyc[2]  # G = 1 -> 2 -> 4 always helps
        assert pts[1].latency_reduction > 40
        for p in pts:  # extra MACs: E*F*C*9*(G-1) per depthwise layer
            extra = sum(x.npx * x.in_channels * 9 * (min(p.group_size, x.in_channels) - 1)
                        for x in dw)
            assert p.total_macs == base.total_macs + extra
            assert p.params == sum(x.params for x in regroup_layers(layers, p.group_size))
    # WS: a G=8 group needs K=72 > 64 rows -> two row folds; no gain from G=4 to G=8
    ws = draco_sweep(layers, SystolicArray(64, 64, "ws"), (4, 8))
    assert ws[1].total_cycles >= ws[0].total_cycles


def test_sweep_from_a_model_and_errors():
    net = small_mobilenet()
    pts = draco_sweep(net, SystolicArray(16, 16, "os"), (1, 4), input_shape=(1, 3, 32, 32))
    assert pts[1].util_gain > 1 and pts[1].mac_overhead > 0
    with pytest.raises(ValueError, match="input_shape"):
        draco_sweep(net, SystolicArray())
    with pytest.raises(ValueError, match=r"nearest valid group sizes: \[2, 4\]"):
        draco_sweep(net, SystolicArray(), (3,), input_shape=(1, 3, 32, 32))
    with pytest.raises(ValueError, match="group_sizes"):
        draco_sweep(net, SystolicArray(), (), input_shape=(1, 3, 32, 32))


def test_choose_group_sizes_reaches_the_target():
    layers = [GemmLayer("big", "depthwise", 58, 58, 3, 3, 1, 1, n_groups=64),
              GemmLayer("small", "depthwise", 9, 9, 3, 3, 1, 1, n_groups=64)]
    arr = SystolicArray(32, 32, "os")
    choice = choose_group_sizes(layers, arr, target_util=5.0)
    for lay in layers:
        g = choice[lay.name]
        util = simulate(regroup_layers([lay], g), arr).layers[0].overall_util
        assert util >= 5.0
        if g > 1:  # the next smaller candidate misses the target
            prev = simulate(regroup_layers([lay], g // 2), arr).layers[0].overall_util
            assert prev < 5.0


def test_choose_group_sizes_bad_target():
    dw = GemmLayer("dw", "depthwise", 9, 9, 3, 3, 1, 1, n_groups=8)
    with pytest.raises(ValueError, match="target_util"):
        choose_group_sizes([dw], SystolicArray(), target_util=0)


def test_whole_model_is_a_depthwise_conv(float64):
    conv = nn.Conv2d(4, 4, 3, groups=4)
    new = apply_group_size(conv, 2, init_from_depthwise=True)
    x = torch.randn(1, 4, 6, 6)
    assert new.groups == 2 and torch.allclose(new(x), conv(x), atol=1e-12)
