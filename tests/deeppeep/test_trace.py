"""capture_trace: structure of the events, nothing left on the model, bad input."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from dnnkit.deeppeep import capture_trace, layer_table, random_compact_cnn
from dnnkit.deeppeep import trace as trace_mod
from dnnkit.deeppeep.trace import COMPUTE_OPS, CONV_OPS

SHAPE = (2, 3, 16, 16)


def test_events_follow_the_model():
    model = random_compact_cnn(0, 4)
    tr = capture_trace(model, SHAPE, repeats=3)
    n_conv = sum(r.op == "conv" for r in layer_table(model, SHAPE))
    assert sum(e.name in CONV_OPS for e in tr) == n_conv
    assert all(e.duration_us > 0 for e in tr)
    assert all(e.kernel for e in tr if e.name in CONV_OPS)
    assert tr.level == "kernel" and tr.repeats == 3 and tr.input_shape == SHAPE
    assert tr.meta["torch"] == torch.__version__ and tr.meta["num_threads"] == 1
    t2 = tr.timing_only()
    assert len(t2) == sum(e.name in COMPUTE_OPS for e in tr)
    assert all(e.name == "" and e.kernel == "" for e in t2)
    assert [e.duration_us for e in t2] == [e.duration_us for e in tr if e.name in COMPUTE_OPS]


def test_model_left_as_found():
    model = random_compact_cnn(1, 3).train()
    model.b1.eval()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    threads = torch.get_num_threads()
    capture_trace(model, SHAPE, repeats=3, num_threads=2)
    assert torch.get_num_threads() == threads
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_aggregates_differ_only_in_durations():
    model = random_compact_cnn(2, 3)
    a = capture_trace(model, SHAPE, repeats=5, aggregate="min")
    b = capture_trace(model, SHAPE, repeats=5, aggregate="trimmed_mean")
    assert [e.name for e in a] == [e.name for e in b]


def test_noisy_machine_warns(monkeypatch, caplog):
    monkeypatch.setattr(trace_mod, "_robust_cv", lambda xs: 0.9)
    with caplog.at_level(logging.WARNING, logger="dnnkit"):
        tr = capture_trace(random_compact_cnn(0, 2), SHAPE, repeats=3)
    assert tr.noisy and tr.noise == pytest.approx(0.9)
    assert "too noisy" in caplog.text


@pytest.mark.parametrize("kw,param", [({"repeats": 2}, "repeats"),
                                      ({"num_threads": 0}, "num_threads"),
                                      ({"level": "kernels"}, "level"),
                                      ({"aggregate": "max"}, "aggregate")])
def test_bad_arguments(kw, param):
    with pytest.raises(ValueError, match=param):
        capture_trace(random_compact_cnn(0, 2), SHAPE, **kw)


def test_inconsistent_shape_fails_before_profiling(monkeypatch):
    called = []
    monkeypatch.setattr(trace_mod, "_profile", lambda *a: called.append(1))
    with pytest.raises(ValueError, match="input_shape"):
        capture_trace(random_compact_cnn(0, 2), (2, 4, 16, 16), repeats=3)
    assert not called


def test_unsupported_device_and_empty_trace():
    with pytest.raises(ValueError, match="device"):
        capture_trace(nn.Conv2d(3, 4, 3, device="meta"), SHAPE, repeats=3)
    with pytest.raises(ValueError, match="eager"):
        capture_trace(nn.Sequential(nn.ReLU(), nn.Flatten()), SHAPE, repeats=3)
    with pytest.raises(TypeError, match="model"):
        capture_trace("resnet", SHAPE)
