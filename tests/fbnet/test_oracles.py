"""Independent counters and libraries: fvcore / thop MACs, scipy softmax, timm's FBNet-C."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnnkit.fbnet import LayerSlot, ShiftConvBlock, fbnet_candidates, fbnet_macro
from dnnkit.fbnet.dnas import gumbel_softmax_weights
from dnnkit.fbnet.space import FBNET_C_ARCH, count_macs
from tests.conftest import need


def _csc_pointwise_macs(c_in, c_out, e, hw, stride):
    mid = round(e * c_in)
    ho = -(-hw // stride)
    return hw * hw * c_in * mid + ho * ho * mid * c_out


@pytest.mark.parametrize("c_in,c_out,e,stride", [(16, 16, 1.0, 1), (16, 24, 3.0, 2), (9, 9, 6.0, 1)])
def test_csc_macs_are_its_two_pointwise_convs_fvcore(c_in, c_out, e, stride):
    fvcore = need("fvcore.nn")
    block = ShiftConvBlock(c_in, c_out, stride, e).eval()
    x = torch.randn(1, c_in, 8, 8)
    fca = fvcore.FlopCountAnalysis(block, (x,))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = fca.by_operator()
    conv = by_op.get("conv", 0)
    want = _csc_pointwise_macs(c_in, c_out, e, 8, stride)
    assert conv == want                                # fvcore counts one MAC as one flop
    assert count_macs(block, (1, c_in, 8, 8)) == want
    assert fca.by_module().get("shift", 0) == 0


def test_csc_macs_thop():
    thop = need("thop")
    block = ShiftConvBlock(16, 16, 1, 3.0).eval()
    from thop.vision.basic_hooks import zero_ops

    # count BatchNorm as 0 (thop counts its elementwise ops); what remains are conv MACs
    macs, params = thop.profile(block, inputs=(torch.randn(1, 16, 8, 8),), verbose=False,
                                custom_ops={torch.nn.BatchNorm2d: zero_ops})
    assert int(macs) == _csc_pointwise_macs(16, 16, 3.0, 8, 1)
    assert int(params) == sum(p.numel() for p in block.parameters())


def test_csc_macs_ptflops_aten():
    ptflops = need("ptflops")
    block = ShiftConvBlock(16, 24, 2, 3.0).eval()
    macs, params = ptflops.get_model_complexity_info(
        block, (16, 8, 8), as_strings=False, print_per_layer_stat=False, backend="aten")
    assert int(macs) == _csc_pointwise_macs(16, 24, 3.0, 8, 2)   # aten.convolution MACs only
    assert int(params) == sum(p.numel() for p in block.parameters())


@pytest.mark.parametrize("name", ["k3_e1", "k3_e1_g2", "k5_e6", "shift_e3", "skip"])
def test_candidate_macs_match_fvcore(name):
    fvcore = need("fvcore.nn")
    slot = LayerSlot(16, 24, 2, (8, 8))
    block = fbnet_candidates(include_shift=True)[name](16, 24, 2).eval()
    fca = fvcore.FlopCountAnalysis(block, (torch.randn(1, 16, 8, 8),))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert fca.by_operator().get("conv", 0) == count_macs(block, (1, *[slot.c_in, 8, 8]))


def test_mixture_weights_equal_scipy_softmax():
    special = need("scipy.special")
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(6, 9, generator=g, dtype=torch.float64)
    noise = -torch.log(-torch.log(torch.rand(6, 9, generator=g, dtype=torch.float64)))
    for tau in (5.0, 1.0, 0.2):
        m = gumbel_softmax_weights(theta, tau, noise)
        ref = special.softmax((theta.numpy() + noise.numpy()) / tau, axis=-1)
        np.testing.assert_allclose(m.numpy(), ref, atol=1e-7, rtol=0)


def test_fbnet_c_child_matches_timm_fbnetc_100():
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import timm
    except Exception as exc:  # timm hard-imports torchvision, which may not match this torch
        pytest.skip(f"timm does not import beside this torch build: {exc!r}"[:300])
    ref = timm.create_model("fbnetc_100", pretrained=False)
    stem, slots, head = fbnet_macro(224, 1000, head_channels=1984)
    cands = fbnet_candidates()
    blocks = [cands[a](s.c_in, s.c_out, s.stride) for a, s in zip(FBNET_C_ARCH, slots)]
    ours = torch.nn.Sequential(stem, *blocks, head)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters())
    assert n_ours == n_ref
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert ours.eval()(x).shape == ref.eval()(x).shape == (1, 1000)


def test_fbnet_c_child_parameter_count_recorded_from_timm():
    """timm 1.0.31's ``fbnetc_100`` has 5,572,200 parameters (counted once here with a stubbed
    torchvision, since timm hard-imports it); the live comparison above runs where timm imports."""
    stem, slots, head = fbnet_macro(224, 1000, head_channels=1984)
    cands = fbnet_candidates()
    blocks = [cands[a](s.c_in, s.c_out, s.stride) for a, s in zip(FBNET_C_ARCH, slots)]
    ours = torch.nn.Sequential(stem, *blocks, head)
    assert sum(p.numel() for p in ours.parameters()) == 5_572_200
