"""Latency lookup tables (FBNet Sec. 3.2): measured, MAC-based, or systolic-array cycles.

FBNet's LUT holds the latency of every candidate at every layer's input shape, measured on the
target device, and assumes the network's latency is the sum of its layers' (FBNet eq. 4).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dnnkit.core.checkpoint import load_tensors, save_tensors
from dnnkit.core.hooks import eval_mode
from dnnkit.core.report import write_text
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    AnyOf,
    Instance,
    Int,
    Optional_,
    Options,
    PathArg,
    Real,
    Sequence_,
    Str,
    Tensor,
    check_choice,
    check_int,
    check_interval,
    param_error,
    suggest,
    validate_params,
)
from dnnkit.fbnet.space import (
    BlockFactory,
    LayerSlot,
    build_checked,
    check_candidates,
    check_slots,
    count_macs,
)

__all__ = ["LatencyTable", "measure_latency_table", "flops_table", "systolic_table"]

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
MAC_UNITS = {"MAC": 1.0, "kMAC": 1e3, "MMAC": 1e6}
CYCLE_UNITS = {"cycles": 1.0, "kcycles": 1e3}


@validate_params({"names": Sequence_(Str()), "values": Tensor(ndim=2, finite=False),
                  "unit": Str(), "meta": Instance(dict)}, where="fbnet.LatencyTable")
@dataclass
class LatencyTable:
    """Latency of each candidate (columns, ``names``) at each slot (rows): ``values [L, K]``.

    Entries must be finite and > 0. ``meta`` records how the table was made (device, batch,
    threads, reducer...). Saved as JSON or safetensors (never pickle).
    """

    names: list[str]
    values: torch.Tensor
    unit: str = "us"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = "LatencyTable"
        if isinstance(self.names, str) or not isinstance(self.names, Sequence) or not self.names:
            raise TypeError(param_error("names", where, "a non-empty list of str", self.names))
        self.names = [str(n) for n in self.names]
        if len(set(self.names)) != len(self.names):
            raise ValueError(param_error("names", where, "unique names", self.names))
        if not isinstance(self.values, torch.Tensor):
            try:
                self.values = torch.as_tensor(self.values, dtype=torch.float64)
            except (TypeError, ValueError):
                raise TypeError(param_error("values", where, "a 2-D tensor [slots, candidates]",
                                            type(self.values).__name__)) from None
        v = self.values
        if v.ndim != 2 or v.shape[1] != len(self.names) or v.shape[0] < 1:
            raise ValueError(param_error("values", where,
                                         f"a tensor of shape [slots, {len(self.names)}]",
                                         f"shape {tuple(v.shape)}"))
        if not v.is_floating_point():
            v = v.double()
        if not bool(torch.isfinite(v).all()):
            raise ValueError(param_error("values", where, "finite (no NaN or inf)",
                                         f"{int((~torch.isfinite(v)).sum())} non-finite entries"))
        if bool((v <= 0).any()):
            raise ValueError(param_error("values", where, "strictly positive latencies",
                                         f"min {float(v.min())}"))
        self.values = v.detach().to("cpu", torch.float64)
        if not isinstance(self.unit, str) or not self.unit:
            raise TypeError(param_error("unit", where, "a non-empty str", self.unit))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.values.shape)

    def _indices(self, arch: Sequence[int | str]) -> list[int]:
        where = "LatencyTable.total"
        if isinstance(arch, str) or not isinstance(arch, Sequence) or len(arch) != self.shape[0]:
            raise ValueError(param_error("arch", where, f"a sequence of {self.shape[0]} choices",
                                         arch))
        out = []
        for a in arch:
            if isinstance(a, str):
                if a not in self.names:
                    raise KeyError(f"Unknown candidate {a!r}; known: {self.names}."
                                   f"{suggest(a, self.names)}")
                out.append(self.names.index(a))
            elif isinstance(a, int) and not isinstance(a, bool) and 0 <= a < self.shape[1]:
                out.append(int(a))
            else:
                raise ValueError(param_error("arch", where, "candidate names or indices", a))
        return out

    @validate_params({"arch": Sequence_(AnyOf(Str(), Int(0, 1 << 20)))},
                     where="fbnet.LatencyTable.total")
    def total(self, arch: Sequence[int | str]) -> float:
        """Latency of an architecture (one choice per slot): the sum of its entries (eq. 4)."""
        idx = self._indices(arch)
        return float(sum(self.values[i, j] for i, j in enumerate(idx)))

    def min_total(self) -> float:
        """The fastest architecture's latency (sum of the row minima)."""
        return float(self.values.min(1).values.sum())

    @validate_params({"path": PathArg()}, where="fbnet.LatencyTable.save")
    def save(self, path: str | Path) -> None:
        """Write ``.json`` (plain lists) or ``.safetensors`` (tensor + JSON metadata)."""
        path = Path(path)
        if path.suffix == ".json":
            write_text(path, json.dumps({"names": self.names, "unit": self.unit,
                                         "meta": self.meta, "values": self.values.tolist()},
                                        indent=1))
        elif path.suffix == ".safetensors":
            save_tensors(path, {"values": self.values},
                         {"names": self.names, "unit": self.unit, "meta": self.meta})
        else:
            raise ValueError(param_error("path", "LatencyTable.save",
                                         "a path ending in .json or .safetensors", str(path)))

    @classmethod
    @validate_params({"path": PathArg(must_exist=True, kind="file")},
                     where="fbnet.LatencyTable.load")
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by :meth:`save`."""
        path = Path(path)
        if path.suffix == ".json":
            d = json.loads(path.read_text())
            return cls(d["names"], torch.tensor(d["values"], dtype=torch.float64),
                       d.get("unit", "us"), d.get("meta", {}))
        if path.suffix == ".safetensors":
            tensors, meta = load_tensors(path)
            return cls(meta["names"], tensors["values"], meta.get("unit", "us"),
                       meta.get("meta", {}))
        raise ValueError(param_error("path", "LatencyTable.load",
                                     "a path ending in .json or .safetensors", str(path)))


def _build_all(candidates, slots, where):
    check_candidates(candidates, where)
    slots = check_slots(slots, where)
    return slots, [[build_checked(f, n, s, i) for n, f in candidates.items()]
                   for i, s in enumerate(slots)]


@validate_params({"candidates": Instance(Mapping), "slots": Instance(Sequence),
                  "batch_size": Int(1, 1 << 16), "warmup": Int(0, 100_000),
                  "runs": Int(1, 100_000), "threads": Optional_(Int(1, 4096)),
                  "reducer": Options("median", "mean", "min"), "unit": Options(*TIME_UNITS),
                  "seed": Int(0, 2**63 - 1), "clock": Options("wall", "process")})
def measure_latency_table(candidates: Mapping[str, BlockFactory], slots: Sequence[LayerSlot], *,
                          batch_size: int = 1, warmup: int = 10, runs: int = 50,
                          threads: int | None = 1, reducer: str = "median", unit: str = "us",
                          device: str | torch.device = "cpu", seed: int = 0,
                          clock: str = "wall") -> LatencyTable:
    """Measure every candidate at every slot's input shape on ``device`` (FBNet Sec. 3.2).

    Each block runs in eval mode under ``no_grad`` on a random input ``[batch, c_in, H, W]``;
    ``warmup`` untimed runs, then ``runs`` timed ones reduced by ``reducer``. ``threads`` pins
    torch's intra-op threads during the measurement (restored afterwards; None = leave).
    ``clock='process'`` times with the process CPU clock instead of the wall clock: on a shared
    CPU a wall-clock run that is pre-empted is counted as slow, and longer runs are pre-empted
    more often, so CPU time is the fairer single-thread measure there (CPU devices only).

    Returns
    -------
    LatencyTable
        ``values[l, i]`` in ``unit`` ('s', 'ms' or 'us'); ``meta`` records the settings.
    """
    where = "fbnet.measure_latency_table"
    check_int(batch_size, "batch_size", 1, 1 << 16, where=where)
    check_int(warmup, "warmup", 0, 100_000, where=where)
    check_int(runs, "runs", 1, 100_000, where=where)
    if threads is not None:
        check_int(threads, "threads", 1, 4096, where=where)
    check_choice(reducer, "reducer", ("median", "mean", "min"), where=where)
    check_choice(unit, "unit", tuple(TIME_UNITS), where=where)
    device = torch.device(device)
    if clock == "process" and device.type != "cpu":
        raise ValueError(param_error("clock", where, "'wall' on a non-CPU device", clock))
    now = time.process_time if clock == "process" else time.perf_counter
    slots, blocks = _build_all(candidates, slots, where)
    gen = make_generator(seed)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    red = {"median": statistics.median, "mean": statistics.fmean, "min": min}[reducer]
    values = torch.zeros(len(slots), len(candidates), dtype=torch.float64)
    try:
        for i, (slot, row) in enumerate(zip(slots, blocks)):
            x = torch.rand(batch_size, slot.c_in, *slot.input_hw, generator=gen).to(device)
            for j, block in enumerate(row):
                block = block.to(device)
                with eval_mode(block), torch.no_grad():
                    for _ in range(warmup):
                        block(x)
                    sync()
                    times = []
                    for _ in range(runs):
                        t0 = now()
                        block(x)
                        sync()
                        times.append(now() - t0)
                values[i, j] = red(times) / TIME_UNITS[unit]
    finally:
        torch.set_num_threads(old_threads)
    values = values.clamp_min(1e-12)
    return LatencyTable(list(candidates), values, unit,
                        {"source": "measured", "device": str(device), "batch_size": batch_size,
                         "threads": threads, "warmup": warmup, "runs": runs, "reducer": reducer,
                         "clock": clock,
                         "slots": [[s.c_in, s.c_out, s.stride, *s.input_hw] for s in slots]})


@validate_params({"candidates": Instance(Mapping), "slots": Instance(Sequence),
                  "batch_size": Int(1, 1 << 16), "unit": Options(*MAC_UNITS),
                  "overhead": Real(0.0, 1e12, closed="right")})
def flops_table(candidates: Mapping[str, BlockFactory], slots: Sequence[LayerSlot], *,
                batch_size: int = 1, unit: str = "kMAC", overhead: float = 1.0) -> LatencyTable:
    """A deterministic LUT: each candidate's multiply-adds (:func:`count_macs`) plus ``overhead``.

    ``overhead`` (in ``unit``) is a fixed per-block cost, so that ``skip`` (0 MACs) has a
    positive entry, as a measured table would.
    """
    where = "fbnet.flops_table"
    check_int(batch_size, "batch_size", 1, 1 << 16, where=where)
    check_choice(unit, "unit", tuple(MAC_UNITS), where=where)
    check_interval(overhead, "overhead", 0.0, 1e12, closed="right", where=where)
    slots, blocks = _build_all(candidates, slots, where)
    values = torch.tensor([[count_macs(b, (batch_size, s.c_in, *s.input_hw)) / MAC_UNITS[unit]
                            + overhead for b in row] for s, row in zip(slots, blocks)],
                          dtype=torch.float64)
    return LatencyTable(list(candidates), values, unit,
                        {"source": "macs", "batch_size": batch_size, "overhead": overhead,
                         "slots": [[s.c_in, s.c_out, s.stride, *s.input_hw] for s in slots]})


@validate_params({"candidates": Instance(Mapping), "slots": Instance(Sequence),
                  "batch_size": Int(1, 1 << 16), "unit": Options(*CYCLE_UNITS),
                  "overhead": Real(0.0, 1e12, closed="right")})
def systolic_table(candidates: Mapping[str, BlockFactory], slots: Sequence[LayerSlot],
                   array=None, *, batch_size: int = 1, unit: str = "cycles",
                   overhead: float = 1.0) -> LatencyTable:
    """A LUT from a systolic accelerator's compute cycles (``dnnkit.systolic``, SCALE-Sim model).

    Every candidate is traced by :func:`dnnkit.systolic.simulate` on ``array`` (default a 16x16
    output-stationary array); its entry is the total compute cycles plus ``overhead`` (a fixed
    per-block cost in ``unit``; a block without conv layers, e.g. the identity ``skip``, costs
    only that). This searches for a chip the user does not have.
    """
    from dnnkit.systolic import SystolicArray, simulate

    where = "fbnet.systolic_table"
    if array is None:
        array = SystolicArray(16, 16, "os")
    if not isinstance(array, SystolicArray):
        raise TypeError(param_error("array", where, "a dnnkit.systolic.SystolicArray",
                                    type(array).__name__))
    check_int(batch_size, "batch_size", 1, 1 << 16, where=where)
    check_choice(unit, "unit", tuple(CYCLE_UNITS), where=where)
    check_interval(overhead, "overhead", 0.0, 1e12, closed="right", where=where)
    slots, blocks = _build_all(candidates, slots, where)
    values = torch.zeros(len(slots), len(candidates), dtype=torch.float64)
    for i, (s, row) in enumerate(zip(slots, blocks)):
        for j, b in enumerate(row):
            has_gemm = any(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in b.modules())
            cyc = simulate(b, array, input_shape=(batch_size, s.c_in, *s.input_hw)).total_cycles \
                if has_gemm else 0
            values[i, j] = cyc / CYCLE_UNITS[unit] + overhead
    return LatencyTable(list(candidates), values, unit,
                        {"source": "systolic", "array": [array.rows, array.cols, array.dataflow],
                         "batch_size": batch_size, "overhead": overhead,
                         "slots": [[s.c_in, s.c_out, s.stride, *s.input_hw] for s in slots]})


def check_lut_for_log(lut: LatencyTable, where: str) -> None:
    """The log-based loss needs every architecture's latency > 1 in the table's unit."""
    m = lut.min_total()
    if not m > 1.0 or math.isnan(m):
        raise ValueError(param_error(
            "lut", where, "a table whose fastest architecture takes > 1 (in its unit) for the "
            "log-latency loss; use a smaller unit (e.g. unit='us' or 'MAC') or scale the values",
            f"min total {m:g} {lut.unit}"))
