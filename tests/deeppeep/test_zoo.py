"""Victim zoo and the defence transform."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dnnkit.core.models import mobilenet_v1
from dnnkit.deeppeep import (
    ground_truth_blocks,
    harden_depthwise,
    random_compact_cnn,
    secure_mobilenet_v1,
)
from dnnkit.deeppeep.zoo import BLOCK_TYPES


def _dw(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1
            and m.groups == m.in_channels == m.out_channels]


def test_random_victims_are_seeded_and_run():
    a, b = random_compact_cnn(3, 6, block_types=BLOCK_TYPES), random_compact_cnn(3, 6,
                                                                               block_types=BLOCK_TYPES)
    assert str(a) == str(b)
    assert str(a) != str(random_compact_cnn(4, 6, block_types=BLOCK_TYPES))
    for s in range(8):
        m = random_compact_cnn(s, 6, block_types=BLOCK_TYPES)
        assert m(torch.zeros(1, 3, 16, 16)).shape == (1, 10)
        assert sum(b.params["stride"] == 2 for b in ground_truth_blocks(m, (1, 3, 16, 16))) <= 2


@pytest.mark.parametrize("gw", [4, 8])
def test_harden_replaces_every_depthwise_conv(gw):
    m = mobilenet_v1(10, width_mult=0.5, blocks=((64, 1), (128, 2), (128, 1)))
    before = [c.groups for c in _dw(m)]
    h = harden_depthwise(m, gw)
    assert [c.groups for c in _dw(m)] == before  # user's model untouched
    assert not _dw(h)
    x = torch.randn(2, 3, 32, 32)
    assert h(x).shape == m(x).shape
    g3 = [c for c in h.modules() if isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3)][1:]
    assert all(c.in_channels // c.groups == min(gw, c.in_channels) for c in g3)
    kinds = [b.block_type for b in ground_truth_blocks(h, (1, 3, 32, 32))]
    assert kinds[0] == "standard" and set(kinds[1:]) == {"grouped"}


def test_secure_mobilenet_is_hardened_mobilenet():
    s = secure_mobilenet_v1(0.5, 8)
    h = harden_depthwise(mobilenet_v1(10, width_mult=0.5), 8)
    assert [(c.in_channels, c.out_channels, c.groups) for c in s.modules()
            if isinstance(c, nn.Conv2d)] == [(c.in_channels, c.out_channels, c.groups)
                                              for c in h.modules() if isinstance(c, nn.Conv2d)]


def test_harden_a_random_victim_and_bad_input():
    m = random_compact_cnn(7, 6, block_types=BLOCK_TYPES)
    assert not _dw(harden_depthwise(m, 4))
    with pytest.raises(TypeError, match="model"):
        harden_depthwise("net")
    with pytest.raises(ValueError, match="group_width"):
        harden_depthwise(m, 0)
    with pytest.raises(ValueError, match="block_types"):
        random_compact_cnn(0, block_types=("dense",))
