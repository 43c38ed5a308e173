"""``dnnkit bench adapt``: time per training step of simulated AdaPT vs float32 SGD (and qtorch).

Same MLP (64-256-128-10), same digits mini-batches (64), one thread. The two loops run
interleaved in one process and are timed in thread CPU time (``time.thread_time``): on a shared,
loaded machine wall time mostly measures the wait for a core, CPU time the work. Rows:

1. AdaPT (activations in/out, gradients and weights quantized, push-down/push-up every lookback
   window) vs a plain float32 ``torch.optim.SGD`` loop. Target: at most 3x slower.
2. vs the same float loop quantizing activations, gradients and weights with
   ``qtorch.quant.fixed_point_quantize`` (the official implementation's library, fixed
   ``<8, 4>``, no heuristics) — only when ``qtorch`` imports (it JIT-compiles a C++ extension).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from dnnkit.adapt.training import AdaPTConfig, AdaPTModel, AdaPTSGD
from dnnkit.core.benchmark import Timing
from dnnkit.core.data import load_digits_split
from dnnkit.core.hooks import registered_hooks
from dnnkit.core.models import mlp
from dnnkit.core.registry import register_bench


def _batches(n_steps: int, batch: int = 64):
    d = load_digits_split(seed=0)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(d.x_train), (n_steps, batch), generator=g)
    return [(d.x_train[i], d.y_train[i]) for i in idx]


def _loop(model, opt, batches, *, pass_loss: bool):
    def run():
        for x, y in batches:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if pass_loss:
                opt.step(loss=loss)
            else:
                opt.step()
    return run


def _qtorch_loop(net, batches):
    from qtorch.quant import fixed_point_quantize as fpq

    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    layers = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    masters = [p.detach().clone() for p in net.parameters()]

    def q(t):
        return t + (fpq(t.detach(), 8, 4, rounding="stochastic") - t).detach()

    def run():
        with registered_hooks() as hooks:
            for m in layers:
                hooks.append(m.register_forward_pre_hook(lambda _m, i: tuple(q(t) for t in i)))
                hooks.append(m.register_forward_hook(lambda _m, _i, o: q(o)))
            for x, y in batches:
                opt.zero_grad()
                F.cross_entropy(net(x), y).backward()
                with torch.no_grad():
                    for p, mst in zip(net.parameters(), masters):
                        p.grad = fpq(p.grad, 8, 4, rounding="stochastic")
                        p.grad /= p.grad.norm().clamp_min(1e-12)
                        p.copy_(mst)
                opt.step()
                with torch.no_grad():
                    for p, mst in zip(net.parameters(), masters):
                        mst.copy_(p)
                        p.copy_(fpq(p, 8, 4, rounding="stochastic"))
    return run


def _interleaved_cpu(a, b, repeat: int) -> tuple[float, float, float]:
    """Median thread-CPU seconds of ``a()`` and ``b()`` run alternately (one warm-up each), and
    the median of the per-repeat ratios ``b / a`` (both measured under the same load)."""
    a()
    b()
    ta, tb = [], []
    for _ in range(max(1, repeat)):
        t0 = time.thread_time()
        a()
        t1 = time.thread_time()
        b()
        t2 = time.thread_time()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    ratios = sorted(y / x for x, y in zip(ta, tb))
    return sorted(ta)[len(ta) // 2], sorted(tb)[len(tb) // 2], ratios[len(ratios) // 2]


def _cpu_median(fn, repeat: int) -> float:
    fn()
    ts = []
    for _ in range(max(1, repeat)):
        t0 = time.thread_time()
        fn()
        ts.append(time.thread_time() - t0)
    return sorted(ts)[len(ts) // 2]


@register_bench("adapt")
def bench(quick: bool = False) -> list[Timing]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n_steps = 50 if quick else 300
        repeat = 2 if quick else 5
        batches = _batches(n_steps)
        torch.manual_seed(0)
        ref = mlp(64, [256, 128], 10)
        float_loop = _loop(ref, torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9),
                           batches, pass_loss=False)
        torch.manual_seed(0)
        model = AdaPTModel(mlp(64, [256, 128], 10), AdaPTConfig(seed=0, results_buffer=8))
        opt = AdaPTSGD(model, lr=0.01)
        float_s, ours_s, ratio = _interleaved_cpu(float_loop, _loop(model, opt, batches,
                                                                     pass_loss=True), repeat)
        tr = opt.trace()
        switches = sum(1 for a, b in zip(tr, tr[1:]) for n in a
                       if (a[n].wl, a[n].fl) != (b[n].wl, b[n].fl))
        rows = [Timing(f"MLP 64-256-128-10, batch 64, {n_steps} steps (per-step ratio)", ours_s,
                       "float32 torch.optim.SGD loop", float_s,
                       note=f"simulation overhead {ratio:.2f}x in thread CPU time (median of "
                            f"{repeat} interleaved repeats; target <= 3x); "
                            f"{ours_s / n_steps * 1e3:.2f} ms/step; per-layer format switches: "
                            f"{switches}")]
        try:
            import qtorch.quant  # noqa: F401
        except Exception as exc:  # noqa: BLE001 - any build/import failure skips the row
            rows.append(Timing("same loop quantized with qtorch <8,4> (no heuristics)", ours_s,
                               "qtorch 0.3.0 (not available)", float("nan"),
                               note=f"skipped: qtorch could not be imported/built here "
                                    f"({type(exc).__name__}: {str(exc)[:80]})"))
        else:
            torch.manual_seed(0)
            qt_s = _cpu_median(_qtorch_loop(mlp(64, [256, 128], 10), batches), repeat)
            rows.append(Timing("same loop quantized with qtorch <8,4> (no heuristics)", ours_s,
                               "qtorch 0.3.0 fixed_point_quantize", qt_s,
                               note="qtorch: fixed format, quantizers only; ours: adaptive "
                                    "formats + push-down/push-up"))
        return rows
    finally:
        torch.set_num_threads(old)
