"""``dnnkit bench deeppeep``: what the attack costs and how well its latency model predicts.

Rows: profiler overhead (profiled vs un-instrumented forward, ``torch.utils.benchmark.Timer``),
cost of the offline latency model, predicted vs measured whole-model latency, traces needed
(repeats R) for a given recovery, and the defence's CPU latency (hardened vs vanilla
MobileNet-V1). Timing-derived accuracies live here and in the report, never in tests.
"""

from __future__ import annotations

import time

import torch
from torch.utils.benchmark import Timer

from dnnkit.core.benchmark import Timing
from dnnkit.core.models import mobilenet_v1
from dnnkit.core.registry import register_bench

from .attack import identify_blocks, infer_hyperparameters, segment_layers
from .latency import profile_latency_model
from .trace import capture_trace
from .truth import ground_truth_blocks, layer_table, score
from .zoo import random_compact_cnn


def _timer_s(model, shape) -> float:
    x = torch.randn(shape)
    with torch.no_grad():
        m = Timer("model(x)", globals={"model": model.eval(), "x": x}, num_threads=1)
        return float(min(m.blocked_autorange(min_run_time=0.5).times))  # min, like the traces


def _predicted_us(trace, model, shape, lm) -> float:
    """The latency model's prediction of the trace's conv + element-wise events, given the
    true layer shapes (what stage 2 would predict for a perfectly recovered model)."""
    convs = [r for r in layer_table(model, shape) if r.op == "conv"]
    layers, _ = segment_layers(trace)
    total = 0.0
    for lay, r in zip(layers, convs):
        total += lm.conv_us(r.kernel_size, r.in_channels, r.out_channels, r.groups, r.in_hw[0],
                            r.stride)
        numel = r.batch * r.out_channels * r.out_hw[0] * r.out_hw[1]
        for op, _d in lay.glue:
            if op in lm.coef:
                total += lm.elementwise_us(op, 2 * numel if op == "cat" else numel)
    return total


def _measured_us(trace) -> float:
    layers, _ = segment_layers(trace)
    return sum(lay.duration_us + sum(d for op, d in lay.glue if op in
                                     ("batch_norm", "relu", "hardtanh", "add", "cat"))
               for lay in layers)


@register_bench("deeppeep")
def bench(quick: bool = False) -> list[Timing]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _bench(quick)
    finally:
        torch.set_num_threads(old)


def _bench(quick: bool) -> list[Timing]:
    batch, size = 8, (16 if quick else 32)
    shape = (batch, 3, size, size)
    rows: list[Timing] = []
    grid = {"batch": batch, "channels": (16, 32, 64, 128, 256, 512, 768),
            "sizes": tuple(s for s in (32, 16, 8, 4) if s <= size),
            "samples_per_class": 8 if quick else 20}
    t0 = time.perf_counter()
    lm = profile_latency_model(grid, repeats=3 if quick else 5)
    t_lm = time.perf_counter() - t0
    victim = random_compact_cnn(0, 6)
    t0 = time.perf_counter()
    tr = capture_trace(victim, shape, repeats=10)
    t_cap = time.perf_counter() - t0
    rows.append(Timing(f"latency model: profile {lm.samples} grid points", t_lm,
                       "one victim trace (R=10)", t_cap,
                       note="offline, once per machine; cached by the reproduction"))
    # profiler overhead: profiled forward vs un-instrumented forward
    per_pass = []
    for _ in range(3):
        t0 = time.perf_counter()
        capture_trace(victim, shape, repeats=5, warmup=0)
        per_pass.append((time.perf_counter() - t0) / 6)  # 5 profiled + 1 shape check
    t_plain = _timer_s(victim, shape)
    rows.append(Timing("profiled forward pass (torch.profiler)", min(per_pass),
                       "torch.utils.benchmark.Timer forward (min)", t_plain,
                       note=f"overhead ratio {min(per_pass) / t_plain:.2f}x"))
    # predicted vs measured whole-model latency
    for seed in (0, 1) if quick else (0, 1, 2, 3):
        m = random_compact_cnn(seed, 6)
        t = tr if seed == 0 else capture_trace(m, shape, repeats=10)
        pred = _predicted_us(t, m, shape, lm) * 1e-6
        meas = _measured_us(t) * 1e-6
        rows.append(Timing(f"victim {seed}: predicted conv+glue latency", pred,
                           "measured in the trace (min of 10)", meas,
                           note=f"prediction error {100 * (pred / meas - 1):+.0f} %; whole "
                                f"forward by Timer {_timer_s(m, shape) * 1e3:.2f} ms"))
    # traces needed: recovery vs repeats
    victims = [random_compact_cnn(10 + s, 6) for s in range(2 if quick else 5)]
    g = {"channels": (16, 32, 64, 128)}
    ref_s = None
    for r in (3, 10) if quick else (3, 10, 30):
        acc, ch, tt = [], [], 0.0
        for m in victims:
            t0 = time.perf_counter()
            t = capture_trace(m, shape, repeats=r)
            tt += time.perf_counter() - t0
            truth = ground_truth_blocks(m, shape)
            gb = infer_hyperparameters(t, identify_blocks(t, lm, grid=g), lm, shape, grid=g)
            s = score(gb, truth)
            acc.append(s["dw_vs_std_acc"])
            ch.append(s["channel_exact"])
        ref_s = ref_s or tt
        rows.append(Timing(f"R={r} traces x {len(victims)} victims", tt, "R=3", ref_s,
                           note=f"dw-vs-std acc {sum(acc) / len(acc):.2f}, channel exact "
                                f"{sum(ch) / len(ch):.2f}"))
    # defence latency on CPU
    blocks = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1)) if quick else None
    kw = {"blocks": blocks} if blocks else {}
    van = mobilenet_v1(10, width_mult=0.5, **kw)
    sec = mobilenet_v1(10, width_mult=0.5, groups_per_depthwise=8, **kw)
    dshape = (batch, 3, 32 if quick else 64, 32 if quick else 64)
    tv, ts = _timer_s(van, dshape), _timer_s(sec, dshape)
    rows.append(Timing("hardened MobileNet-V1 x0.5 (group width 8) forward", ts,
                       "vanilla MobileNet-V1 x0.5 forward", tv,
                       note=f"{100 * (ts / tv - 1):+.0f} % on this CPU; paper: about -60 % on "
                            "P100/P4000 GPUs"))
    return rows
