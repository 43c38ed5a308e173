"""Stage 1 / stage 2 on real traces (structural results only) and on noise-free timings."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from dnnkit.deeppeep import (
    LatencyModel,
    Trace,
    TraceEvent,
    capture_trace,
    ground_truth_blocks,
    identify_blocks,
    infer_hyperparameters,
    layer_table,
    random_compact_cnn,
    score,
)
from dnnkit.deeppeep.attack import segment_layers
from dnnkit.deeppeep.trace import CONV_OPS
from dnnkit.deeppeep.zoo import BLOCK_TYPES
from tests.deeppeep.fxwalk import fx_blocks

SHAPE = (2, 3, 16, 16)


# --- small reference victims written independently of dnnkit.deeppeep.zoo -----------------
def cbr(cin, cout, k, s=1, g=1, act=nn.ReLU):
    mods = [nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*mods, act()) if act else nn.Sequential(*mods)


class MBConv(nn.Module):  # MobileNet-V2 bottleneck
    def __init__(self, c, out, t, s):
        super().__init__()
        h = c * t
        self.body = nn.Sequential(cbr(c, h, 1, act=nn.ReLU6), cbr(h, h, 3, s, h, act=nn.ReLU6),
                                  cbr(h, out, 1, act=None))
        self.skip = s == 1 and c == out

    def forward(self, x):
        y = self.body(x)
        return x + y if self.skip else y


class FireRef(nn.Module):  # SqueezeNet
    def __init__(self, c, sq, e):
        super().__init__()
        self.s, self.e1, self.e3 = cbr(c, sq, 1), cbr(sq, e, 1), cbr(sq, e, 3)

    def forward(self, x):
        z = self.s(x)
        return torch.cat((self.e1(z), self.e3(z)), dim=1)


class ShuffleRef(nn.Module):  # ShuffleNet-V1 unit
    def __init__(self, c, g):
        super().__init__()
        m = c // 4
        self.g = g
        self.a = cbr(c, m, 1, g=g)
        self.b = cbr(m, m, 3, g=m, act=None)
        self.c = cbr(m, c, 1, g=g, act=None)

    def forward(self, x):
        y = self.a(x)
        n, ch, h, w = y.shape
        y = torch.transpose(y.view(n, self.g, ch // self.g, h, w), 1, 2).reshape(n, ch, h, w)
        return torch.relu(x + self.c(self.b(y)))


def reference_victim():
    return nn.Sequential(cbr(3, 16, 3), MBConv(16, 24, 6, 2), MBConv(24, 24, 6, 1),
                         FireRef(24, 8, 16), ShuffleRef(32, 4), FireRef(32, 8, 32),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def test_stage1_labels_independent_reference_victim():
    model = reference_victim()
    ref = fx_blocks(model, SHAPE)
    tr = capture_trace(model, SHAPE, repeats=3)
    guess = identify_blocks(tr)  # names + glue; timing-independent
    assert [b.block_type for b in guess] == [r["type"] for r in ref]
    assert [b.layers for b in guess] == [r["layers"] for r in ref]
    assert [b.block_type for b in guess] == ["standard", "inverted_residual",
                                             "inverted_residual", "fire", "shuffle", "fire"]
    assert guess[2].params["residual"] is True and guess[1].params["residual"] is False


def test_segment_layers_matches_convs_and_glue():
    model = random_compact_cnn(4, 6, block_types=BLOCK_TYPES)
    tr = capture_trace(model, SHAPE, repeats=3)
    layers, lead = segment_layers(tr)
    convs = [r for r in layer_table(model, SHAPE) if r.op == "conv"]
    assert not lead and len(layers) == len(convs)
    truth = ground_truth_blocks(model, SHAPE)
    for b in truth:
        last = layers[b.layers[-1]].signature
        if b.block_type == "fire":
            assert last[2]  # cat
        if b.block_type in ("shuffle",) or b.params.get("residual"):
            assert last[1]  # add
    assert sum(e.name in CONV_OPS for e in tr) == len(convs)


@pytest.mark.parametrize("seed", range(6))
def test_names_level_block_types_structural(seed):
    """Without timing, the glue grammar gets every block whose signature is unique."""
    model = random_compact_cnn(seed, 6, block_types=("standard", "inverted_residual", "fire",
                                                     "shuffle"))
    truth = ground_truth_blocks(model, SHAPE)
    guess = identify_blocks(capture_trace(model, SHAPE, repeats=3))
    assert score(guess, truth)["block_type_acc"] == 1.0


def test_unknown_segments_never_crash():
    class Attn(nn.Module):
        def forward(self, x):
            b, c, h, w = x.shape
            q = x.flatten(2)
            a = torch.softmax(torch.bmm(q.transpose(1, 2), q), -1)
            return torch.bmm(q, a).view(b, c, h, w)

    model = nn.Sequential(cbr(3, 16, 3), Attn(), cbr(16, 16, 3, g=16), cbr(16, 32, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    guess = identify_blocks(capture_trace(model, SHAPE, repeats=3))
    types = [b.block_type for b in guess]
    assert "unknown" in types and types[-1] == "dwsep"
    lead = nn.Sequential(Attn(), cbr(3, 8, 3))
    assert identify_blocks(capture_trace(lead, SHAPE, repeats=3))[0].block_type == "unknown"


# --- noise-free timings: a hand-set latency model and a trace synthesised from it --------
def _toy_model() -> LatencyModel:
    coef = {"conv1": [20.0, 1e-3, 1e-3], "gconv1": [25.0, 1.2e-3, 1e-3],
            "conv3": [30.0, 1e-3, 1e-3], "dw3": [25.0, 2e-2, 4e-3],
            "gconv3": [28.0, 4e-3, 2e-3],
            "batch_norm": [5.0, 4e-4], "relu": [3.0, 3e-4], "hardtanh": [3.5, 3e-4],
            "add": [3.0, 3.5e-4], "cat": [3.0, 3.6e-4]}
    return LatencyModel(batch=SHAPE[0], coef=coef, meta={})


def _synthetic(model, lm) -> Trace:
    tr = capture_trace(model, SHAPE, repeats=3)
    convs = [r for r in layer_table(model, SHAPE) if r.op == "conv"]
    evs, i, numel = [], -1, 0
    for e in tr:
        d = e.duration_us
        if e.name in CONV_OPS:
            i += 1
            r = convs[i]
            d = lm.conv_us(r.kernel_size, r.in_channels, r.out_channels, r.groups, r.in_hw[0],
                           r.stride)
            numel = r.batch * r.out_channels * r.out_hw[0] * r.out_hw[1]
        elif i >= 0 and e.name.split("::")[-1].rstrip("_") in lm.coef:
            op = e.name.split("::")[-1].rstrip("_")
            d = lm.elementwise_us(op, 2 * numel if op == "cat" else numel)
        evs.append(dataclasses.replace(e, duration_us=d))
    return dataclasses.replace(tr, events=evs, noise=0.0, noisy=False)


@pytest.mark.parametrize("seed", range(4))
def test_noise_free_timings_recover_blocks_and_channels(seed):
    lm = _toy_model()
    model = random_compact_cnn(seed, 5, channels=(16, 32, 64))
    truth = ground_truth_blocks(model, SHAPE)
    tr = _synthetic(model, lm)
    grid = {"channels": (16, 32, 64)}
    guess = identify_blocks(tr, lm, grid=grid)
    guess = infer_hyperparameters(tr, guess, lm, SHAPE, grid=grid)
    s = score(guess, truth)
    assert s["block_type_acc"] == 1.0
    assert s["dw_vs_std_acc"] == 1.0
    assert s["channel_exact"] == 1.0
    assert s["exact_stride"] == 1.0


def test_noisy_trace_halves_confidence():
    lm = _toy_model()
    tr = _synthetic(random_compact_cnn(1, 4, channels=(16, 32, 64)), lm)
    grid = {"channels": (16, 32, 64)}
    a = identify_blocks(tr, lm, grid=grid)
    b = identify_blocks(dataclasses.replace(tr, noisy=True), lm, grid=grid)
    assert [x.confidence / 2 for x in a] == pytest.approx([x.confidence for x in b])


def test_timing_level_needs_a_latency_model():
    tr = capture_trace(random_compact_cnn(0, 2), SHAPE, repeats=3, level="timing")
    assert all(e.name == "" for e in tr)
    with pytest.raises(ValueError, match="latency_model"):
        identify_blocks(tr)


def test_empty_conv_trace():
    tr = Trace([TraceEvent("aten::relu", 3.0)], "kernel", SHAPE, 3, 1, "min", 0.0, False)
    with pytest.raises(ValueError, match="eager"):
        identify_blocks(tr)
