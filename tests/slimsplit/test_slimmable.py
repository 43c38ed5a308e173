"""Slimmable conv / linear equal the sliced functional ops; switchable BN keeps private stats."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnnkit.slimsplit import SlimmableConv2d, SlimmableLinear, SwitchableBatchNorm2d, set_width

WIDTHS = [0.25, 0.5, 1.0]


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        SlimmableConv2d([1, 2, 4], [2, 4, 8], 3, padding=1, width_mult_list=WIDTHS),
        SwitchableBatchNorm2d([2, 4, 8], width_mult_list=WIDTHS), nn.ReLU())


@pytest.mark.parametrize("w,i,o", [(0.25, 1, 2), (0.5, 2, 4), (1.0, 4, 8)])
def test_conv_equals_sliced_functional(w, i, o):
    conv = _net()[0]
    conv.stride = (2, 2)
    set_width(conv, w)
    x = torch.randn(3, i, 7, 7)
    ref = F.conv2d(x, conv.weight[:o, :i], conv.bias[:o], stride=2, padding=1)
    assert torch.equal(conv(x), ref)


def test_linear_equals_sliced_functional():
    torch.manual_seed(1)
    lin = SlimmableLinear([3, 6], [5, 10], width_mult_list=[0.5, 1.0])
    set_width(lin, 0.5)
    x = torch.randn(4, 3)
    assert torch.equal(lin(x), F.linear(x, lin.weight[:5, :3], lin.bias[:5]))


def test_widths_share_one_weight():
    net = _net()
    set_width(net, 0.5)
    net(torch.randn(2, 2, 5, 5)).sum().backward()
    g = net[0].weight.grad
    assert g[:4, :2].abs().sum() > 0 and g[4:].abs().sum() == 0 and g[:, 2:].abs().sum() == 0


def test_switchable_bn_eval_equals_plain_bn_with_that_widths_stats():
    net = _net()
    for w, c in zip(WIDTHS, [1, 2, 4]):
        set_width(net, w)
        net.train()
        net(torch.randn(16, c, 5, 5) * (1 + 3 * w) + w)
    bn = net[1]
    set_width(net, 0.5)
    net.eval()
    x = torch.randn(3, 4, 5, 5)
    plain = nn.BatchNorm2d(4)
    plain.load_state_dict(bn.bn[1].state_dict())
    plain.eval()
    assert torch.allclose(bn(x), plain(x), atol=0, rtol=0)
    assert not torch.allclose(bn.bn[1].running_mean, torch.zeros(4))


def test_training_one_width_leaves_other_stats_untouched():
    net = _net()
    bn = net[1]
    before = {i: {k: v.clone() for k, v in b.state_dict().items()} for i, b in enumerate(bn.bn)}
    set_width(net, 0.25)
    net.train()
    net(torch.randn(8, 1, 5, 5) + 2)
    for i, b in enumerate(bn.bn):
        same = all(torch.equal(v, before[i][k]) for k, v in b.state_dict().items())
        assert same == (i != 0)


def test_set_width_is_all_or_nothing_and_checked():
    net = nn.Sequential(SlimmableConv2d([1, 2], [2, 4], 1, width_mult_list=[0.5, 1.0]),
                        SlimmableConv2d([2, 4], [2, 4], 1, width_mult_list=[0.25, 1.0]))
    with pytest.raises(ValueError, match="'width_mult' parameter of slimsplit.set_width"):
        set_width(net, 0.5)
    assert net[0].width_mult == 1.0
    with pytest.raises(ValueError, match="slimmable layers"):
        set_width(nn.Linear(2, 2), 1.0)
    with pytest.raises(TypeError):
        set_width("net", 1.0)
    conv = net[0]
    with pytest.raises(ValueError, match="'x' parameter"):
        conv(torch.randn(1, 1, 3, 3))  # width 1.0 expects 2 channels


def test_constructor_checks():
    with pytest.raises(ValueError, match="in_channels_list"):
        SlimmableConv2d([1], [2, 4], 3, width_mult_list=[0.5, 1.0])
    with pytest.raises(ValueError, match="width_mult_list"):
        SwitchableBatchNorm2d([2, 4], width_mult_list=[1.0, 1.0])
    with pytest.raises(ValueError, match="width_mult_list"):
        SlimmableLinear([2], [2], width_mult_list=[1.5])
