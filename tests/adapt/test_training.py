"""AdaPTModel / AdaPTSGD: dense path = torch.optim.SGD, hooks never leak, switching, errors."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnnkit.adapt import AdaPTConfig, AdaPTModel, AdaPTSGD, FixedPointFormat, performance_model
from dnnkit.adapt.training import LayerRecord


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 3))


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


@pytest.mark.parametrize("kw", [dict(momentum=0.9), dict(momentum=0.9, nesterov=True,
                                                         weight_decay=1e-3),
                                dict(momentum=0.5, dampening=0.3), dict(momentum=0.0)])
def test_dense_path_equals_torch_sgd(kw):
    x, y = _data()
    ref = _net()
    ours_net = copy.deepcopy(ref)
    model = AdaPTModel(ours_net, AdaPTConfig.dense(seed=0, lookback=(2, 3)))
    opt = AdaPTSGD(model, lr=0.05, **kw)
    sgd = torch.optim.SGD(ref.parameters(), lr=0.05, foreach=False, **kw)
    for _ in range(6):
        for o, net in ((opt, model), (sgd, ref)):
            o.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            o.step()
        for p, q in zip(ours_net.parameters(), ref.parameters()):
            assert torch.equal(p, q)


def test_hooks_removed_and_state_dict_unchanged_by_forward():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = AdaPTModel(net, AdaPTConfig(seed=0))
    with torch.no_grad():
        model.eval()(_data()[0])
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    net2 = nn.Sequential(nn.Linear(4, 4), Boom())
    m2 = AdaPTModel(net2, AdaPTConfig())
    with pytest.raises(RuntimeError, match="boom"):
        m2(torch.zeros(2, 4))
    assert not net2[0]._forward_hooks and not net2[0]._forward_pre_hooks


def test_activations_and_weights_on_the_layer_grid():
    net = _net()
    model = AdaPTModel(net, AdaPTConfig(seed=0))
    AdaPTSGD(model, lr=0.01)
    fmt = model.formats()["4"]
    w = net[4].weight.detach()
    assert torch.equal(w / fmt.eps, (w / fmt.eps).round())
    seen = {}
    h = net[4].register_forward_hook(lambda m, i, o: seen.update(inp=i[0], out=o))
    model.eval()(_data()[0])
    h.remove()
    # the user's hook runs before the wrapper's output hook: its input is already quantized
    assert torch.equal(seen["inp"] / fmt.eps, (seen["inp"] / fmt.eps).round())


def test_formats_switch_sparsity_and_trace():
    x, y = _data(64)
    net = _net()
    model = AdaPTModel(net, AdaPTConfig(seed=0, lookback=(2, 4), resolution=(10, 20), l1=1e-3))
    opt = AdaPTSGD(model, lr=0.01)
    start = model.formats()
    for _ in range(12):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step(loss=loss)
    tr = opt.trace()
    assert len(tr) == 12 and set(tr[0]) == {"0", "1", "4", "6"}
    assert model.formats() != start
    assert all(isinstance(r, LayerRecord) for r in tr[-1].values())
    for name, r in tr[-1].items():
        assert 2 <= r.lookback <= 4 and 10 <= r.resolution <= 20
        assert FixedPointFormat(r.wl, r.fl) == model.formats()[name]
        assert r.wl >= r.fl + 4                      # results buffer
    rep = performance_model(model, (1, 1, 8, 8), tr, batch_size=64)
    assert rep.training_speedup > 0 and rep.inference_speedup > 0
    # reproducible with the seed
    net2 = _net()
    m2 = AdaPTModel(net2, AdaPTConfig(seed=0, lookback=(2, 4), resolution=(10, 20), l1=1e-3))
    o2 = AdaPTSGD(m2, lr=0.01)
    for _ in range(12):
        o2.zero_grad()
        loss = F.cross_entropy(m2(x), y)
        loss.backward()
        o2.step(loss=loss)
    assert m2.formats() == model.formats()
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), net2.parameters()))


def test_official_compat_runs():
    x, y = _data()
    model = AdaPTModel(_net(), AdaPTConfig(seed=0, lookback=(2, 3), official_compat=True))
    assert model.config.divergence_kind == "official"
    opt = AdaPTSGD(model, lr=0.01)
    for _ in range(5):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step(loss=loss)
    # BatchNorm weights are 1-D: the official code never adapts them
    assert model.formats()["1"] == FixedPointFormat(8, 4)


def test_cost_model_sanity_case():
    net = _net()
    rec = {n: LayerRecord(16, 8, 25, 50, 0.0) for n in ("0", "1", "4", "6")}
    for official in (False, True):
        r = performance_model(net, (1, 1, 8, 8), [rec] * 5, include_overhead=False,
                              official_macs=official)
        assert r.training_speedup == pytest.approx(64 / 48)
        assert r.inference_speedup == pytest.approx(2.0)
        assert r.model_size_ratio == pytest.approx(0.5)
        assert r.model_size_ratio_weighted == pytest.approx(0.5)
    half = {n: LayerRecord(32, 8, 25, 50, 0.5) for n in rec}
    r = performance_model(net, (1, 1, 8, 8), [half], include_overhead=False, iso_fraction=0.5)
    assert r.inference_speedup == pytest.approx(2.0) and r.model_size_ratio == pytest.approx(0.5)
    assert r.training_speedup_iso == pytest.approx(2 * r.training_speedup)
    r8 = {n: LayerRecord(8, 4, 25, 50, 0.0) for n in rec}
    r = performance_model(net, (1, 1, 8, 8), [rec, r8], include_overhead=False, final_records=2)
    assert r.inference_speedup == pytest.approx((2.0 + 4.0) / 2)
    assert r.model_size_ratio == pytest.approx((0.5 + 0.25) / 2)
    assert performance_model(net, (1, 1, 8, 8), [rec, r8]).inference_speedup == pytest.approx(4)
    r2 = performance_model(net, (1, 1, 8, 8), [rec], batch_size=64)
    assert 0 < r2.overhead_fraction < 1 and r2.training_speedup < 64 / 48


def test_bad_inputs():
    with pytest.raises(ValueError, match="'fl_floor'"):
        AdaPTConfig(fl_init=3, fl_floor=4)
    with pytest.raises(ValueError, match="'results_buffer'"):
        AdaPTConfig(results_buffer=32)
    with pytest.raises(ValueError, match="'lookback'"):
        AdaPTConfig(lookback=(256, 100))             # the official EMNIST config's bug
    with pytest.raises(ValueError, match="'resolution'"):
        AdaPTConfig(resolution=(0, 10))
    with pytest.raises(ValueError, match="'strategy'"):
        AdaPTConfig(strategy="median")
    with pytest.raises(ValueError, match="'divergence'"):
        AdaPTConfig(divergence="js")
    with pytest.raises(ValueError, match="'wl_init'"):
        AdaPTConfig(wl_init=33)
    with pytest.raises(ValueError, match="at least one layer"):
        AdaPTModel(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="LayerNorm"):
        AdaPTModel(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)))
    model = AdaPTModel(_net(), AdaPTConfig(seed=0))
    opt = AdaPTSGD(model, lr=0.01)
    with pytest.raises(RuntimeError, match="no parameter has a gradient"):
        opt.step()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    model.model[4].weight.grad[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="layer '4'"):
        opt.step()
    with pytest.raises(TypeError, match="'model'"):
        AdaPTSGD(_net(), lr=0.1)
    with pytest.raises(ValueError, match="'lr'"):
        AdaPTSGD(model, lr=-1.0)
    net = _net()
    net[0].weight.data[0, 0, 0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="layer '0'"):
        AdaPTSGD(AdaPTModel(net), lr=0.1)


def _train_steps(model, opt, x, y, n=4):
    for _ in range(n):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step(loss=loss)


def test_follows_float64_model():
    x, y = _data()
    net = _net().double()
    model = AdaPTModel(net, AdaPTConfig(seed=0, lookback=(2, 3)))
    opt = AdaPTSGD(model, lr=0.01)
    _train_steps(model, opt, x.double(), y)
    assert all(p.dtype == torch.float64 for p in net.parameters())
    assert opt.master(net[0].weight).dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_stays_on_device():
    x, y = _data()
    net = _net().cuda()
    model = AdaPTModel(net, AdaPTConfig(seed=0, lookback=(2, 3)))
    opt = AdaPTSGD(model, lr=0.01)
    _train_steps(model, opt, x.cuda(), y.cuda())
    assert all(p.is_cuda for p in net.parameters())
    from dnnkit.adapt import quantize_fixed

    xs = torch.randn(1000, device="cuda") * 3
    fmt = FixedPointFormat(8, 4)
    ref = torch.fake_quantize_per_tensor_affine(xs, 2.0 ** -4, 0, fmt.qmin, fmt.qmax)
    assert torch.equal(quantize_fixed(xs, fmt), ref)
    with pytest.raises(ValueError, match="'generator'"):
        quantize_fixed(xs, fmt, "stochastic", generator=torch.Generator())


def test_flat_fast_path_equals_per_tensor_path():
    """The batched step (flat master, per-element formats, one noise draw per pass) is the
    per-tensor algorithm: same draws in the same order, so the same weights bit for bit,
    through format switches (lookback 2) and the re-preparation of a switched layer's bias."""
    x, y = _data(64)
    cfg = AdaPTConfig(seed=3, lookback=(2, 3), resolution=(10, 20), l1=1e-3)
    runs = []
    for flat in (True, False):
        net = _net()
        model = AdaPTModel(net, cfg)
        opt = AdaPTSGD(model, lr=0.01, momentum=0.9, weight_decay=1e-4)
        assert opt._flat is not None
        if not flat:
            opt._flat = None                            # force the per-tensor _foreach path
        _train_steps(model, opt, x, y, n=8)
        runs.append((net, model.formats(), opt.trace()))
    (a, fa, ta), (b, fb, tb) = runs
    assert fa == fb and [r == s for r, s in zip(ta, tb)] == [True] * len(ta)
    assert any(r["0"].wl != ta[0]["0"].wl for r in ta)           # formats did switch
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_step_keeps_weights_on_grid_next_to_master():
    x, y = _data(64)
    net = _net()
    model = AdaPTModel(net, AdaPTConfig(seed=0, lookback=(2, 4), resolution=(10, 20)))
    opt = AdaPTSGD(model, lr=0.01)
    _train_steps(model, opt, x, y, n=6)
    for name, fmt in model.formats().items():
        for p in model.layer(name).parameters(recurse=False):
            m = opt.master(p)
            k = p.detach() / fmt.eps
            assert torch.equal(k, k.round())                        # on the grid
            lo = (torch.floor(m / fmt.eps) * fmt.eps).clamp(fmt.min_value, fmt.max_value)
            hi = (torch.ceil(m / fmt.eps) * fmt.eps).clamp(fmt.min_value, fmt.max_value)
            assert bool(((p == lo) | (p == hi)).all())              # a neighbour of the master


def test_noise_stream_is_seeded_and_unbiased():
    from dnnkit.adapt.fixed_point import _NoiseStream, _quantize

    fmt = FixedPointFormat(8, 3)
    x = torch.tensor([0.01, 0.3, -1.77, 2.0626]).repeat(100_000, 1)
    q1 = _quantize(x, fmt, "stochastic", _NoiseStream(torch.Generator().manual_seed(4)))
    q2 = _quantize(x, fmt, "stochastic", _NoiseStream(torch.Generator().manual_seed(4)))
    assert torch.equal(q1, q2)
    bound = 5 * fmt.eps / 2 / 100_000 ** 0.5
    assert torch.allclose(q1.double().mean(0), x[0].double(), atol=bound)
    u = _NoiseStream(torch.Generator().manual_seed(0)).uniform(torch.empty(10_000))
    assert u.dtype == torch.float32 and float(u.min()) >= 0 and float(u.max()) < 1
    assert torch.equal(u * 2 ** 24, (u * 2 ** 24).round())         # torch's 24-bit resolution
