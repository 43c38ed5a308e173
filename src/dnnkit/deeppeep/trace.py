"""Execution traces of a victim model: operator events and their durations (threat model of
DeepPeep, Jha et al. 2020, section 3: the adversary observes the kernel sequence and per-kernel
latency of a victim's inference on shared hardware).

Two observation levels:

* ``"kernel"`` (L1): every top-level operator of a forward pass, with its name, the name of the
  kernel it dispatched to (for convolutions) and its duration -- the CPU analogue of an nvprof
  kernel trace;
* ``"timing"`` (L2): only the durations of the compute-heavy events (convolutions, matmuls),
  names removed.
"""

from __future__ import annotations

import logging
import platform
import statistics
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from dnnkit.core.hooks import eval_mode
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Sequence_,
    Str,
    param_error,
    validate_params,
)

__all__ = ["TraceEvent", "Trace", "capture_trace", "CONV_OPS", "COMPUTE_OPS"]

log = logging.getLogger("dnnkit")

CONV_OPS = frozenset({"aten::conv2d", "aten::convolution", "aten::_convolution",
                      "aten::conv1d", "aten::conv3d"})
COMPUTE_OPS = CONV_OPS | frozenset({"aten::linear", "aten::addmm", "aten::matmul", "aten::mm",
                                    "aten::bmm"})
_PASS = "deeppeep::forward"


@validate_params({"name": Str(allow_empty=True), "duration_us": Real(0.0, None),
                  "kernel": Str(allow_empty=True), "cv": Real(0.0, None),
                  "kind": Optional_(Str(allow_empty=True))}, where="deeppeep.TraceEvent")
@dataclass
class TraceEvent:
    """One operator event of a forward pass.

    ``name`` is the operator (``""`` at the timing level), ``kernel`` the kernel a convolution
    dispatched to (e.g. ``aten::mkldnn_convolution``; ``""`` otherwise or at the timing level),
    ``duration_us`` the aggregated duration over the repeats, ``cv`` a robust coefficient of
    variation of that duration (1.4826 MAD / median), ``kind`` is for evaluation only (never set
    by :func:`capture_trace`).
    """

    name: str
    duration_us: float
    kernel: str = ""
    cv: float = 0.0
    kind: str | None = None


@validate_params({
    "events": Sequence_(Instance(TraceEvent), min_len=0),
    "level": Options("kernel", "timing"),
    "input_shape": Sequence_(Int(1, 1 << 16), min_len=2, max_len=5),
    "repeats": Int(1, 10_000),
    "num_threads": Int(1, 1024),
    "aggregate": Options("min", "median", "trimmed_mean"),
    "noise": Real(0.0, None),
    "noisy": Instance(bool),
    "meta": Instance(dict),
}, where="deeppeep.Trace")
@dataclass
class Trace:
    """An aggregated trace: ``events`` in execution order plus how it was observed."""

    events: list[TraceEvent]
    level: str
    input_shape: tuple[int, ...]
    repeats: int
    num_threads: int
    aggregate: str
    noise: float
    noisy: bool
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self.events)

    def __getitem__(self, i):
        return self.events[i]

    def timing_only(self) -> Trace:
        """The same observation at level ``"timing"``: compute events only, names removed."""
        if self.level == "timing":
            return self
        evs = [TraceEvent("", e.duration_us, "", e.cv) for e in self.events
               if e.name in COMPUTE_OPS]
        return replace(self, events=evs, level="timing")

    @property
    def total_us(self) -> float:
        return float(sum(e.duration_us for e in self.events))


def machine_meta(num_threads: int) -> dict:
    """What identifies the observing set-up (stored with traces and latency models)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"torch": torch.__version__, "num_threads": int(num_threads), "cpu": cpu}


def _kernel_of(ev) -> str:
    """The most specific convolution kernel below a profiler event ('' when none)."""
    best = ""
    stack = list(ev.cpu_children)
    while stack:
        c = stack.pop(0)
        if "conv" in c.name and c.name not in CONV_OPS:
            best = c.name
        stack.extend(c.cpu_children)
    return best


def _robust_cv(xs: list[float]) -> float:
    med = statistics.median(xs)
    if med <= 0:
        return 0.0
    mad = statistics.median(abs(x - med) for x in xs)
    return 1.4826 * mad / med


def _aggregate(xs: list[float], how: str) -> float:
    if how == "min":
        return min(xs)
    if how == "median":
        return float(statistics.median(xs))
    s = sorted(xs)  # trimmed mean: drop 20 % on each side
    k = int(0.2 * len(s))
    core = s[k:len(s) - k] or s
    return float(sum(core) / len(core))


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@validate_params({
    "model": Instance(nn.Module),
    "input_shape": Sequence_(Int(1, 1 << 16), min_len=2, max_len=5),
    "repeats": Int(3, 10_000),
    "warmup": Int(0, 1_000),
    "level": Options("kernel", "timing"),
    "num_threads": Int(1, 1024),
    "aggregate": Options("min", "median", "trimmed_mean"),
    "cv_threshold": Real(0.0, None, closed="neither"),
}, where="deeppeep.capture_trace")
def capture_trace(model: nn.Module, input_shape: Sequence[int], *, repeats: int = 30,
                  warmup: int = 3, level: str = "kernel", num_threads: int = 1,
                  aggregate: str = "min", cv_threshold: float = 0.5) -> Trace:
    """Profile ``repeats`` batch inferences of ``model`` and aggregate each operator's duration.

    Parameters
    ----------
    model : nn.Module
        The victim, on CPU (or CUDA: kernel times from the CUDA activity). Its modes are restored
        and nothing is left on it.
    input_shape : sequence of int
        Shape of the random input, e.g. ``(8, 3, 32, 32)``. Checked with one forward before
        profiling.
    repeats : int
        Profiled forward passes (>= 3); each event's duration is aggregated over them.
    warmup : int
        Un-profiled forward passes first.
    level : {"kernel", "timing"}
        Observation level L1 (names + durations) or L2 (compute-event durations only).
    num_threads : int
        torch intra-op threads while profiling (restored afterwards).
    aggregate : {"min", "median", "trimmed_mean"}
        How the repeats of one event are combined (min is the robust choice on a shared machine:
        interference only ever adds time).
    cv_threshold : float
        If the median robust coefficient of variation of the events exceeds it, the trace is
        marked ``noisy`` and a warning is logged.

    Returns
    -------
    Trace

    Raises
    ------
    ValueError
        ``input_shape`` inconsistent with the model; model on an unsupported device; profiler
        saw no operator event (compiled or fused model).
    """
    where = "deeppeep.capture_trace"
    dev = _device_of(model)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(param_error("model", where, "on a CPU or CUDA device", str(dev)))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    shape = tuple(int(s) for s in input_shape)
    x = torch.randn(shape, device=dev, dtype=dtype)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        with torch.no_grad(), eval_mode(model):
            try:
                model(x)
            except (RuntimeError, ValueError, TypeError) as exc:
                raise ValueError(param_error("input_shape", where, "consistent with the model",
                                             shape) + f" The forward pass failed: {exc}") from None
            passes = _profile(model, x, repeats, warmup, dev)
    finally:
        torch.set_num_threads(old_threads)
    if not passes or not any(passes):
        raise ValueError("deeppeep.capture_trace: the profiler recorded no operator event. A "
                         "compiled or fused model (torch.compile, TorchScript freezing) hides its "
                         "operators: trace the model in eager mode.")
    sigs = Counter(tuple(n for n, _, _ in p) for p in passes)
    sig, _ = sigs.most_common(1)[0]
    kept = [p for p in passes if tuple(n for n, _, _ in p) == sig]
    events = []
    for j, name in enumerate(sig):
        xs = [p[j][1] for p in kept]
        events.append(TraceEvent(name, _aggregate(xs, aggregate), kept[0][j][2], _robust_cv(xs)))
    if not any(e.name in COMPUTE_OPS for e in events):
        raise ValueError("deeppeep.capture_trace: no convolution or matmul event in the trace; "
                         "a compiled or fused model hides its operators: use eager mode.")
    heavy = [e.cv for e in events if e.name in COMPUTE_OPS]
    noise = float(statistics.median(heavy))
    noisy = noise > cv_threshold
    if noisy:
        log.warning("deeppeep: machine too noisy (median robust CV of compute events %.2f > %.2f);"
                    " results will have low confidence.", noise, cv_threshold)
    meta = machine_meta(num_threads)
    meta["device"] = str(dev)
    trace = Trace(events, "kernel", shape, len(kept), num_threads, aggregate, noise, noisy, meta)
    return trace.timing_only() if level == "timing" else trace


def _profile(model, x, repeats: int, warmup: int, dev: torch.device):
    from torch.profiler import ProfilerActivity, profile, record_function

    cuda = dev.type == "cuda"
    for _ in range(warmup):
        model(x)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        for _ in range(repeats):
            with record_function(_PASS):
                model(x)
            if cuda:
                torch.cuda.synchronize(dev)
    passes = []
    for ev in prof.events():
        if ev.name != _PASS or ev.cpu_parent is not None:
            continue
        row = []
        for c in sorted(ev.cpu_children, key=lambda e: e.time_range.start):
            dur = c.device_time_total if cuda else c.cpu_time_total
            row.append((c.name, float(dur), _kernel_of(c)))
        passes.append(row)
    return passes
