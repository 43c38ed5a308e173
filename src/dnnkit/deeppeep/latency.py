"""The attacker's offline latency model of its own hardware (DeepPeep stage 2, Jha et al. 2020,
section 4: the adversary profiles the building blocks' operators on a copy of the platform).

Each convolution class (1x1, grouped 1x1, 3x3, depthwise 3x3, grouped 3x3) gets a model
``t = a + b MACs + c (input + output elements)`` (fixed overhead, compute, memory traffic; non-
negative coefficients fitted by least squares on the *relative* error) to min-of-R latencies
measured with the same profiler as the victim's trace; each element-wise op (batch norm, ReLU,
ReLU6, add, cat) gets ``t = a + b elements``. The model also records
which kernel names each convolution class dispatched to, and the set-up it was measured on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dnnkit.core.report import write_text
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Options,
    PathArg,
    Real,
    Str,
    param_error,
    validate_params,
)

from .trace import _kernel_of, machine_meta

__all__ = ["LatencyModel", "profile_latency_model", "conv_class", "DEFAULT_GRID", "ELEMENTWISE"]

log = logging.getLogger("dnnkit")

ELEMENTWISE = ("batch_norm", "relu", "hardtanh", "add", "cat")
CONV_CLASSES = ("conv1", "gconv1", "conv3", "dw3", "gconv3")

#: default profiling grid (small: ~10-30 s at one thread on a quiet core)
DEFAULT_GRID: dict = {
    "batch": 8,
    "channels": (16, 32, 64, 128, 256, 512, 768),
    "sizes": (32, 16, 8, 4),
    "strides": (1, 2),
    "group_widths": (4, 8, 16),
    "pointwise_groups": (2, 4),
    "samples_per_class": 20,
    "max_macs": 3e8,
}


def conv_class(k: int, cin: int, cout: int, groups: int) -> str:
    """The latency-model class of a convolution: conv1 / gconv1 / conv3 / dw3 / gconv3."""
    if k == 1:
        return "conv1" if groups == 1 else "gconv1"
    if groups == 1:
        return "conv3"
    if groups == cin == cout:
        return "dw3"
    return "gconv3"


def conv_features(k: int, cin: int, cout: int, groups: int, h: int, stride: int,
                  batch: int) -> tuple[float, float, float]:
    """(MACs, input elements, output elements) of a same-padded convolution."""
    ho = (h + 2 * (k // 2) - k) // stride + 1
    macs = batch * ho * ho * cout * (cin // groups) * k * k
    return float(macs), float(batch * cin * h * h), float(batch * cout * ho * ho)


_SIZE = Int(1, 1 << 20)


@validate_params({"batch": Int(1, 1 << 16), "coef": Instance(dict), "kernels": Instance(dict),
                  "meta": Instance(dict), "fit_error": Instance(dict),
                  "samples": Int(0, 1 << 40), "profile_s": Real(0.0, None)},
                 where="deeppeep.LatencyModel")
@dataclass
class LatencyModel:
    """Fitted per-op latency models (microseconds) of the attacker's set-up.

    ``coef[op]`` are the least-squares coefficients (see the module docstring), ``kernels`` maps
    ``"<class>/s<stride>"`` to the kernel names seen, ``meta`` holds torch version, threads, CPU
    and batch, ``fit_error`` the median |log error| of each fit on its own samples.
    """

    batch: int
    coef: dict[str, list[float]]
    kernels: dict[str, list[str]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    fit_error: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    profile_s: float = 0.0

    @validate_params({"k": Int(1, 64), "cin": _SIZE, "cout": _SIZE, "groups": _SIZE,
                      "h": Int(1, 1 << 16), "stride": Int(1, 64)})
    def conv_us(self, k: int, cin: int, cout: int, groups: int, h: int, stride: int = 1) -> float:
        """Predicted latency of a same-padded conv at this model's batch size."""
        if cin % groups or cout % groups:
            raise ValueError(param_error("groups", "deeppeep.LatencyModel.conv_us",
                                         f"a divisor of cin={cin} and cout={cout}", groups))
        return self._conv_us(k, cin, cout, groups, h, stride)

    def _conv_us(self, k: int, cin: int, cout: int, groups: int, h: int, stride: int) -> float:
        # unchecked: the attack's scorer calls it for every hypothesis (see conv_us)
        cls = conv_class(k, cin, cout, groups)
        macs, xin, xout = conv_features(k, cin, cout, groups, h, stride, self.batch)
        a, b, c = self.coef[cls]
        return a + b * macs + c * (xin + xout)

    @validate_params({"op": Options(*ELEMENTWISE), "numel": Real(0.0, None)})
    def elementwise_us(self, op: str, numel: float) -> float:
        """Predicted latency of an element-wise op over ``numel`` output elements."""
        return self._elementwise_us(op, numel)

    def _elementwise_us(self, op: str, numel: float) -> float:
        a, b = self.coef[op]
        return a + b * float(numel)

    @validate_params({"op": Options("conv", *ELEMENTWISE)})
    def predict(self, op: str, **shape) -> float:
        """``predict("conv", k=3, cin=32, cout=32, groups=32, h=16, stride=1)`` or
        ``predict("relu", numel=8 * 32 * 16 * 16)``."""
        if op == "conv":
            return self.conv_us(**shape)
        if set(shape) != {"numel"}:
            raise TypeError(param_error("shape", "deeppeep.LatencyModel.predict",
                                        f"the single keyword 'numel' for op {op!r}",
                                        sorted(shape)))
        return self.elementwise_us(op, shape["numel"])

    @validate_params({"cls": Options(*CONV_CLASSES), "stride": Int(1, 64),
                      "kernel": Str(allow_empty=True)})
    def kernel_ok(self, cls: str, stride: int, kernel: str) -> bool:
        """Whether a conv of class ``cls`` was seen dispatching to ``kernel`` when profiled."""
        return self._kernel_ok(cls, stride, kernel)

    def _kernel_ok(self, cls: str, stride: int, kernel: str) -> bool:
        seen = self.kernels.get(f"{cls}/s{stride}")
        return True if not seen or not kernel else kernel in seen

    @validate_params({"meta": Instance(dict), "batch": Optional_(Int(1, 1 << 16))})
    def compatible(self, meta: dict, batch: int | None = None) -> list[str]:
        """Differences between this model's set-up and another (a trace's ``meta``)."""
        diffs = [f"{k}: model {self.meta.get(k)!r} vs trace {meta.get(k)!r}"
                 for k in ("torch", "num_threads", "cpu") if self.meta.get(k) != meta.get(k)]
        if batch is not None and batch != self.batch:
            diffs.append(f"batch: model {self.batch} vs trace {batch}")
        return diffs

    @validate_params({"meta": Instance(dict), "batch": Optional_(Int(1, 1 << 16))})
    def warn_if_incompatible(self, meta: dict, batch: int | None = None) -> None:
        """Log a warning listing :meth:`compatible`'s differences, if any."""
        diffs = self.compatible(meta, batch)
        if diffs:
            log.warning("deeppeep: the latency model was profiled on a different set-up (%s); "
                        "predictions may be off.", "; ".join(diffs))

    def to_dict(self) -> dict:
        return {"batch": self.batch, "coef": self.coef, "kernels": self.kernels,
                "meta": self.meta, "fit_error": self.fit_error, "samples": self.samples,
                "profile_s": self.profile_s, "format": "dnnkit.deeppeep.LatencyModel/1"}

    @classmethod
    @validate_params({"d": Instance(dict)})
    def from_dict(cls, d: dict) -> LatencyModel:
        """Rebuild a model from :meth:`to_dict`'s output."""
        missing = [k for k in ("batch", "coef") if k not in d]
        if missing:
            raise KeyError(param_error("d", "deeppeep.LatencyModel.from_dict",
                                       "a dict holding the keys ['batch', 'coef'] (the "
                                       "output of LatencyModel.to_dict)", list(d)))
        try:
            args = (int(d["batch"]), {k: list(map(float, v)) for k, v in d["coef"].items()},
                    {k: list(v) for k, v in d.get("kernels", {}).items()},
                    dict(d.get("meta", {})), dict(d.get("fit_error", {})),
                    int(d.get("samples", 0)), float(d.get("profile_s", 0.0)))
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(param_error("d", "deeppeep.LatencyModel.from_dict",
                                         "the output of LatencyModel.to_dict",
                                         f"unreadable fields ({exc})")) from None
        return cls(*args)

    @validate_params({"path": PathArg()})
    def save(self, path: str | Path) -> None:
        """Write the model as JSON (atomic replace through a unique temporary file)."""
        write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    @validate_params({"path": PathArg(must_exist=True, kind="file")})
    def load(cls, path: str | Path) -> LatencyModel:
        """Read a model written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def _conv_configs(grid: dict, g: torch.Generator) -> list[tuple]:
    chans, sizes, strides = grid["channels"], grid["sizes"], grid["strides"]
    batch, cap = grid["batch"], grid["max_macs"]
    out: dict[str, list[tuple]] = {c: [] for c in CONV_CLASSES}
    for h in sizes:
        for s in strides:
            for ci in chans:
                out["dw3"].append((3, ci, ci, ci, h, s))
                for gw in grid["group_widths"]:
                    if ci % gw == 0 and ci > gw:
                        out["gconv3"].append((3, ci, ci, ci // gw, h, s))
                for co in chans:
                    out["conv3"].append((3, ci, co, 1, h, s))
                    if s == 1:
                        out["conv1"].append((1, ci, co, 1, h, 1))
                        for pg in grid["pointwise_groups"]:
                            if ci % pg == 0 and co % pg == 0:
                                out["gconv1"].append((1, ci, co, pg, h, 1))
    picked = []
    for cls, cfgs in out.items():
        cfgs = [c for c in cfgs if conv_features(c[0], c[1], c[2], c[3], c[4], c[5], batch)[0]
                <= cap]
        perm = torch.randperm(len(cfgs), generator=g).tolist()
        picked += [(cls, cfgs[i]) for i in perm[: grid["samples_per_class"]]]
    return picked


def _elementwise_configs(grid: dict) -> list[tuple[str, int, int]]:
    sizes = sorted(set(grid["sizes"]))
    chans = sorted(set(grid["channels"]))
    pts = sorted({(c, h) for c in chans[::2] + [chans[-1]] for h in sizes})
    return [(op, c, h) for op in ELEMENTWISE for c, h in pts]


@validate_params({
    "repeats": Int(3, 1000),
    "num_threads": Int(1, 1024),
    "seed": Optional_(Int(0, 2**63 - 1)),
    "aggregate": Options("min", "median"),
}, where="deeppeep.profile_latency_model")
def profile_latency_model(grid: dict | None = None, *, repeats: int = 10, num_threads: int = 1,
                          seed: int | None = 0, aggregate: str = "min") -> LatencyModel:
    """Profile the attacker's hardware over a grid of conv and glue ops and fit the models.

    Parameters
    ----------
    grid : dict, optional
        Keys of :data:`DEFAULT_GRID` to override (``batch``, ``channels``, ``sizes``,
        ``strides``, ``group_widths``, ``pointwise_groups``, ``samples_per_class``,
        ``max_macs``).
    repeats : int
        Timed calls per configuration (min or median taken).
    num_threads : int
        torch threads while profiling (restored afterwards); use the trace's.
    seed : int, optional
        Seeds which grid points are sampled.

    Returns
    -------
    LatencyModel
    """
    import time

    from torch.profiler import ProfilerActivity, profile, record_function

    where = "deeppeep.profile_latency_model"
    g_all = dict(DEFAULT_GRID)
    if grid is not None:
        if not isinstance(grid, dict):
            raise TypeError(f"The 'grid' parameter of {where} must be a dict. "
                            f"Got {type(grid).__name__} instead.")
        unknown = set(grid) - set(DEFAULT_GRID)
        if unknown:
            from dnnkit.core.validation import suggest

            raise KeyError(f"The 'grid' parameter of {where} has unknown key(s) "
                           f"{sorted(unknown)}.{suggest(sorted(unknown)[0], DEFAULT_GRID)}")
        g_all.update(grid)
    batch = int(g_all["batch"])
    gen = make_generator(seed)
    t0 = time.perf_counter()
    convs = _conv_configs(g_all, gen)
    elts = _elementwise_configs(g_all)
    old = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    times: dict[str, list[float]] = {}
    kernels: dict[str, set[str]] = {}
    try:
        with torch.no_grad():
            jobs = []
            for i, (cls, (k, ci, co, gr, h, s)) in enumerate(convs):
                m = nn.Conv2d(ci, co, k, s, k // 2, groups=gr, bias=False).eval()
                x = torch.randn(batch, ci, h, h, generator=gen)
                jobs.append((f"c{i}", "aten::conv2d", lambda m=m, x=x: m(x)))
            # element-wise ops run on a freshly produced (cache-hot) tensor, as after a conv
            # in a network: isolated cold-cache timings overestimate them 1.5-2.5x
            for i, (op, c, h) in enumerate(elts):
                x = torch.randn(batch, c, h, h, generator=gen)
                if op == "batch_norm":
                    bn = nn.BatchNorm2d(c).eval()
                    fn, name = (lambda bn=bn, x=x: bn(x.clone())), "aten::batch_norm"
                elif op == "relu":  # in place, as nn.ReLU(inplace=True)
                    fn, name = (lambda x=x: F.relu_(x.clone())), "aten::relu_"
                elif op == "hardtanh":
                    fn, name = (lambda x=x: F.hardtanh_(x.clone(), 0.0, 6.0)), "aten::hardtanh_"
                elif op == "add":
                    fn, name = (lambda x=x: x + x.clone()), "aten::add"
                else:
                    a, b = x[:, : c // 2].contiguous(), x[:, c // 2:].contiguous()
                    fn, name = (lambda a=a, b=b: torch.cat([a.clone(), b.clone()], 1)), "aten::cat"
                jobs.append((f"e{i}", name, fn))
            for _, _, fn in jobs:  # warm-up
                fn()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(repeats):
                    for tag, _, fn in jobs:
                        with record_function(tag):
                            fn()
    finally:
        torch.set_num_threads(old)
    target = {tag: op for tag, op, _ in jobs}
    for ev in prof.events():
        if ev.name not in target:
            continue
        kids = [c for c in ev.cpu_children if c.name == target[ev.name]]
        if not kids:
            kids = list(ev.cpu_children)
        if not kids:
            continue
        times.setdefault(ev.name, []).append(sum(c.cpu_time_total for c in kids))
        if ev.name.startswith("c"):
            cls, (k, ci, co, gr, h, s) = convs[int(ev.name[1:])]
            kn = _kernel_of(kids[0])
            if kn:
                kernels.setdefault(f"{cls}/s{s}", set()).add(kn)

    def agg(xs):
        return min(xs) if aggregate == "min" else float(np.median(xs))

    coef: dict[str, list[float]] = {}
    fit_err: dict[str, float] = {}
    for cls in CONV_CLASSES:
        rows, ys = [], []
        for i, (c2, (k, ci, co, gr, h, s)) in enumerate(convs):
            if c2 != cls or f"c{i}" not in times:
                continue
            macs, xin, xout = conv_features(k, ci, co, gr, h, s, batch)
            rows.append([1.0, macs, xin + xout])
            ys.append(max(agg(times[f"c{i}"]), 1e-3))
        if rows:
            coef[cls], fit_err[cls] = _lstsq(rows, ys, 3)
    for op in ELEMENTWISE:
        rows, ys = [], []
        for i, (o, c, h) in enumerate(elts):
            if o != op or f"e{i}" not in times:
                continue
            rows.append([1.0, float(batch * c * h * h)])
            ys.append(max(agg(times[f"e{i}"]), 1e-3))
        coef[op], fit_err[op] = _lstsq(rows, ys, 2)
    for cls, fallback in (("gconv3", "conv3"), ("gconv1", "conv1"), ("dw3", "gconv3"),
                          ("conv3", "gconv3"), ("conv1", "gconv1")):
        if cls not in coef and fallback in coef:
            log.warning("deeppeep: no grid point of class %s; using %s's fit.", cls, fallback)
            coef[cls], fit_err[cls] = list(coef[fallback]), float("nan")
    meta = machine_meta(num_threads)
    meta["batch"] = batch
    return LatencyModel(batch, coef, {k: sorted(v) for k, v in kernels.items()}, meta, fit_err,
                        len(jobs), time.perf_counter() - t0)


def _lstsq(rows: Sequence[Sequence[float]], ys: Sequence[float], n: int):
    if not rows:
        raise RuntimeError("deeppeep: no profiled point for an op; widen the grid.")
    from scipy.optimize import nnls

    a, y = np.asarray(rows, dtype=float), np.asarray(ys, dtype=float)
    sol, _ = nnls(a / y[:, None], np.ones(len(y)))
    if sol[0] <= 0:  # keep predictions positive
        sol[0] = float(np.min(y)) * 0.1
    err = float(np.median(np.abs(np.log((a @ sol) / y))))
    return [float(v) for v in sol], err
