"""``dnnkit bench fbnet``: shift2d vs a 3x3 depthwise conv and vs ``clone`` (the copy floor);
a super-net epoch vs the sum of its candidates' single-child epochs; latency-table construction;
LUT-predicted vs measured child latency (Pearson correlation)."""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from dnnkit.core.benchmark import Timing, time_call
from dnnkit.core.registry import register_bench
from dnnkit.fbnet.dnas import SuperNet
from dnnkit.fbnet.experiment import digits_macro
from dnnkit.fbnet.latency import measure_latency_table, systolic_table
from dnnkit.fbnet.shift import shift2d
from dnnkit.fbnet.space import fbnet_candidates


def _pearson(a: list[float], b: list[float]) -> float:
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    den = (sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b)) ** 0.5
    return num / den if den > 0 else float("nan")


def _cpu_time(fn, repeat: int, warmup: int = 3) -> float:
    """Median process-CPU time of ``fn()`` (robust to pre-emption on a shared machine)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        ts.append(time.process_time() - t0)
    return statistics.median(ts)


def _epoch_time(model_fn, x, y, batch_size=64) -> float:
    """Wall time of one training epoch (SGD, cross-entropy) of ``model_fn() -> (logits)``."""
    t0 = time.perf_counter()
    for i in range(0, len(x), batch_size):
        model_fn(x[i:i + batch_size], y[i:i + batch_size])
    return time.perf_counter() - t0


@register_bench("fbnet")
def bench(quick: bool = False) -> list[Timing]:
    rows: list[Timing] = []
    # 1. shift2d vs depthwise 3x3 conv vs clone
    shape = (8, 64, 16, 16) if quick else (32, 144, 32, 32)
    x = torch.randn(*shape)
    w = torch.randn(shape[1], 1, 3, 3)
    rep = 5 if quick else 20
    t_shift = time_call(lambda: shift2d(x, 3), repeat=rep)
    t_dw = time_call(lambda: F.conv2d(x, w, padding=1, groups=shape[1]), repeat=rep)
    t_clone = time_call(lambda: x.clone(), repeat=rep)
    rows.append(Timing(f"shift2d k=3 on {list(shape)}", t_shift, "3x3 depthwise F.conv2d",
                       t_dw))
    rows.append(Timing(f"shift2d k=3 on {list(shape)}", t_shift, "x.clone() (copy floor)",
                       t_clone, note="speedup < 1: shift costs this many clones"))

    # 2. super-net epoch vs sum of single-child epochs
    names = ["k3_e1", "k5_e3", "skip"] if quick else ["k3_e1", "k3_e3", "k5_e3", "k5_e6",
                                                       "skip"]
    cands = fbnet_candidates(only=names)
    _, slots, _ = digits_macro(8)
    lut = systolic_table(cands, slots)
    n = 128 if quick else 512
    g = torch.Generator().manual_seed(0)
    xs, ys = torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)
    torch.manual_seed(0)
    net = SuperNet(*_args(cands, lut))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)

    def sup_step(xb, yb):
        logits, _ = net(xb, 1.0, generator=g)
        opt.zero_grad()
        F.cross_entropy(logits, yb).backward()
        opt.step()

    t_super = _epoch_time(sup_step, xs, ys)
    t_children = 0.0
    for name in names:
        child = net.build_child([name] * len(slots))
        copt = torch.optim.SGD(child.parameters(), lr=0.01)

        def child_step(xb, yb, child=child, copt=copt):
            copt.zero_grad()
            F.cross_entropy(child(xb), yb).backward()
            copt.step()

        t_children += _epoch_time(child_step, xs, ys)
    rows.append(Timing(f"super-net epoch ({len(names)} candidates x {len(slots)} slots, "
                       f"{n} digits-sized samples)", t_super,
                       "sum of single-child epochs", t_children,
                       note="a correct super-net costs about the sum of its candidates"))

    # 3. LUT construction: measured on this CPU vs the systolic model
    t0 = time.perf_counter()
    mlut = measure_latency_table(cands, slots, batch_size=16, warmup=3 if quick else 10,
                                 runs=10 if quick else 50, unit="us", clock="process")
    t_meas = time.perf_counter() - t0
    t_sys = time_call(lambda: systolic_table(cands, slots), repeat=3)
    rows.append(Timing(f"latency table {len(slots)}x{len(names)} measured (batch 16, CPU clock)",
                       t_meas, "systolic_table (dnnkit.systolic cycle model)", t_sys))

    # 4. predicted vs measured end-to-end child latency
    k = 5 if quick else 10
    pred, meas = [], []
    for i in range(k):
        arch = [names[int(j)] for j in torch.randint(len(names), (len(slots),), generator=g)]
        child = net.build_child(arch).eval()
        blocks = torch.nn.Sequential(*list(child)[1:-1])
        xb = torch.rand(16, slots[0].c_in, *slots[0].input_hw, generator=g)
        with torch.no_grad():
            m = _cpu_time(lambda blocks=blocks, xb=xb: blocks(xb), 10 if quick else 50)
        pred.append(mlut.total(arch) * 1e-6)
        meas.append(m)
    r = _pearson(pred, meas)
    rows.append(Timing(f"{k} random children: LUT-predicted vs measured latency (batch 16)",
                       statistics.fmean(pred), "measured end-to-end (searchable part)",
                       statistics.fmean(meas),
                       note=f"Pearson r = {r:.3f}; process CPU clock (wall time on a loaded "
                            "machine inflates longer runs)"))
    return rows


def _args(cands, lut):
    stem, slots, head = digits_macro(8)
    return stem, slots, cands, head, lut
