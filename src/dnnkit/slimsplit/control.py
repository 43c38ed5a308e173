"""Run-time adaptation: bandwidth estimate, deadline-aware mode choice, closed-loop simulation.

After each frame the device measures the link's throughput (bytes / transfer time) and updates
an exponential moving average, ``B <- alpha * measured + (1 - alpha) * B`` (alpha = 0.4 in the
authors' device code). The next mode is the most accurate one whose predicted latency fits the
safety-scaled deadline (Assine et al. 2023; ``src/device.py`` of the authors' benchmark):

    encoder_ms(k, b) + 1000 * bytes(k, b) / B + server_ms  <  safety * deadline_ms

When no mode fits, the cheapest mode (smallest predicted latency) is chosen and flagged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dnnkit.core.seeding import make_rng
from dnnkit.core.validation import (
    Callable_,
    Instance,
    Int,
    Optional_,
    Real,
    Seed,
    Sequence_,
    check_int,
    check_interval,
    check_positive,
    param_error,
    validate_params,
)
from dnnkit.slimsplit.split import ModeStats

_POS = Real(0.0, None, closed="neither")

__all__ = ["BandwidthEstimator", "ModeController", "ModeChoice", "bandwidth_trace",
           "simulate_stream", "StreamTrace"]

Mode = tuple[int, int]


@validate_params({"alpha": Real(0.0, 1.0, closed="right"), "initial_Bps": _POS})
class BandwidthEstimator:
    """Exponential moving average of the measured link throughput (bytes per second).

    Parameters
    ----------
    alpha : float
        Weight of the newest measurement, in (0, 1] (authors: 0.4).
    initial_Bps : float
        Estimate before the first measurement (bytes / s, > 0).
    """

    def __init__(self, alpha: float = 0.4, initial_Bps: float = 200e3) -> None:
        where = "slimsplit.BandwidthEstimator"
        self.alpha = check_interval(alpha, "alpha", 0.0, 1.0, closed="right", where=where)
        self.estimate = check_positive(initial_Bps, "initial_Bps", where=where)

    @validate_params({"nbytes": Int(1, 2**39), "seconds": _POS},
                     where="slimsplit.BandwidthEstimator.update")
    def update(self, nbytes: int, seconds: float) -> float:
        """Fold one transfer (``nbytes`` in ``seconds``) into the estimate; return it."""
        where = "slimsplit.BandwidthEstimator.update"
        nbytes = check_int(nbytes, "nbytes", 1, 2**39, where=where)
        seconds = check_positive(seconds, "seconds", where=where)
        self.estimate = self.alpha * (nbytes / seconds) + (1.0 - self.alpha) * self.estimate
        return self.estimate


@dataclass(frozen=True)
class ModeChoice:
    """The controller's answer: the mode, whether it fits, and its predicted latency."""

    k: int
    bits: int
    feasible: bool
    predicted_ms: float
    accuracy: float

    @property
    def mode(self) -> Mode:
        return (self.k, self.bits)


@validate_params({"table": Instance(Mapping), "safety": Real(0.0, 1.0, closed="right"),
                  "server_ms": Real(0.0, 1e9),
                  "required_modes": Optional_(Sequence_(Sequence_(Int(1, 64), min_len=2,
                                                                   max_len=2)))})
class ModeController:
    """Pick the most accurate mode whose predicted latency fits the safety-scaled deadline.

    Parameters
    ----------
    table : mapping (k, bits) -> ModeStats
        The profiled modes (:func:`~dnnkit.slimsplit.split.profile_modes`).
    safety : float
        Fraction of the deadline the prediction may use, in (0, 1] (authors: 0.8).
    server_ms : float
        Server-side time per frame added to every prediction (>= 0).
    required_modes : sequence of (k, bits), optional
        Modes the table must contain (e.g. ``model.modes``); a missing one raises.
    """

    def __init__(self, table: Mapping[Mode, ModeStats], *, safety: float = 0.8,
                 server_ms: float = 0.0, required_modes: Sequence[Mode] | None = None) -> None:
        where = "slimsplit.ModeController"
        if not isinstance(table, Mapping):
            raise TypeError(param_error("table", where, "a dict (k, bits) -> ModeStats",
                                        type(table).__name__))
        if not table:
            raise ValueError(param_error("table", where, "a non-empty mode table", {}))
        for mode, st in table.items():
            if not (isinstance(mode, tuple) and len(mode) == 2
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in mode)):
                raise ValueError(param_error("table", where, "keys (k, bits) of ints", mode))
            if not isinstance(st, ModeStats):
                raise TypeError(param_error("table", where, "ModeStats values",
                                            f"{type(st).__name__} for mode {mode}"))
            if not (math.isfinite(st.accuracy) and math.isfinite(st.encoder_ms)
                    and st.encoder_ms >= 0 and st.payload_bytes > 0):
                raise ValueError(param_error("table", where, "finite stats with positive bytes",
                                             f"{st} for mode {mode}"))
        if required_modes is not None:
            missing = [tuple(m) for m in required_modes if tuple(m) not in table]
            if missing:
                raise ValueError(param_error("table", where, "an entry for every required mode",
                                             f"missing {missing}"))
        self.safety = check_interval(safety, "safety", 0.0, 1.0, closed="right", where=where)
        self.server_ms = check_interval(server_ms, "server_ms", 0.0, 1e9, where=where)
        # most accurate first; ties: faster first (by encoder time then bytes)
        self._order = sorted(table.items(), key=lambda kv: (-kv[1].accuracy, kv[1].encoder_ms,
                                                            kv[1].payload_bytes))
        self.table = dict(table)

    @validate_params({"mode": Sequence_(Int(1, 1 << 16), min_len=2, max_len=2),
                      "bandwidth_Bps": _POS}, where="slimsplit.ModeController.predict_ms")
    def predict_ms(self, mode: Mode, bandwidth_Bps: float) -> float:
        """Predicted latency of ``mode``: encoder + transfer + server, milliseconds."""
        mode = tuple(mode)
        if mode not in self.table:
            raise KeyError(param_error("mode", "slimsplit.ModeController.predict_ms",
                                       f"one of the table's modes {sorted(self.table)}", mode))
        st = self.table[mode]
        return st.encoder_ms + 1e3 * st.payload_bytes / bandwidth_Bps + self.server_ms

    @validate_params({"bandwidth_Bps": _POS, "deadline_ms": _POS},
                     where="slimsplit.ModeController.select")
    def select(self, bandwidth_Bps: float, deadline_ms: float) -> ModeChoice:
        """The most accurate feasible mode, or the cheapest one flagged infeasible."""
        where = "slimsplit.ModeController.select"
        bw = check_positive(bandwidth_Bps, "bandwidth_Bps", where=where)
        deadline = check_positive(deadline_ms, "deadline_ms", where=where)
        budget = self.safety * deadline
        for mode, st in self._order:
            t = self.predict_ms(mode, bw)
            if t < budget:
                return ModeChoice(mode[0], mode[1], True, t, st.accuracy)
        mode, st = min(self._order, key=lambda kv: self.predict_ms(kv[0], bw))
        return ModeChoice(mode[0], mode[1], False, self.predict_ms(mode, bw), st.accuracy)


@validate_params({"n_frames": Int(1, 10_000_000), "high_Bps": _POS, "low_Bps": _POS,
                  "period": Int(1, 10_000_000), "noise": Real(0.0, 5.0), "seed": Seed()})
def bandwidth_trace(n_frames: int, *, high_Bps: float, low_Bps: float, period: int = 50,
                    noise: float = 0.1, seed: int | None = None) -> np.ndarray:
    """A square-wave link rate (high phase first, ``period`` frames per phase), bytes / s.

    Each frame's rate is multiplied by ``exp(noise * N(0, 1))`` (log-normal jitter, seeded).
    """
    where = "slimsplit.bandwidth_trace"
    n = check_int(n_frames, "n_frames", 1, 10_000_000, where=where)
    hi = check_positive(high_Bps, "high_Bps", where=where)
    lo = check_positive(low_Bps, "low_Bps", where=where)
    period = check_int(period, "period", 1, 10_000_000, where=where)
    noise = check_interval(noise, "noise", 0.0, 5.0, where=where)
    phase_high = (np.arange(n) // period) % 2 == 0
    base = np.where(phase_high, hi, lo)
    return base * np.exp(noise * make_rng(seed).standard_normal(n))


@dataclass
class StreamTrace:
    """Per-frame record of a closed-loop run (arrays of length n_frames)."""

    bandwidth_Bps: np.ndarray
    estimate_Bps: np.ndarray
    k: np.ndarray
    bits: np.ndarray
    latency_ms: np.ndarray
    met: np.ndarray
    feasible: np.ndarray
    accuracy: np.ndarray
    deadline_ms: float

    @property
    def hit_rate(self) -> float:
        """Fraction of frames whose latency met the deadline."""
        return float(self.met.mean())

    @property
    def mean_accuracy(self) -> float:
        return float(self.accuracy.mean())


@validate_params({"controller": Instance(ModeController), "deadline_ms": _POS,
                  "estimator": Optional_(Instance(BandwidthEstimator)),
                  "frame": Optional_(Callable_())})
def simulate_stream(controller: ModeController, bandwidth_Bps: Sequence[float] | np.ndarray,
                    deadline_ms: float, *, estimator: BandwidthEstimator | None = None,
                    frame: Callable[[int, Mode], tuple[float, int, float]] | None = None
                    ) -> StreamTrace:
    """Stream frames over a link whose rate follows ``bandwidth_Bps`` (one value per frame).

    For frame ``t`` the controller picks a mode from the current estimate; the frame costs
    ``encoder_ms + 1000 * bytes / bandwidth_Bps[t] + server_ms``; the estimator then sees
    ``(bytes, transfer seconds)``. ``frame(t, mode) -> (accuracy, bytes, encoder_ms)`` may run
    the real model (e.g. 1.0/0.0 for a correct/wrong prediction and the real payload size);
    by default the mode table's values are used.
    """
    where = "slimsplit.simulate_stream"
    if not isinstance(controller, ModeController):
        raise TypeError(param_error("controller", where, "a ModeController",
                                    type(controller).__name__))
    bw = np.asarray(bandwidth_Bps, dtype=np.float64).reshape(-1)
    if bw.size == 0 or not np.all(np.isfinite(bw)) or np.any(bw <= 0):
        raise ValueError(param_error("bandwidth_Bps", where, "a non-empty trace of positive "
                                     "finite rates", f"{bw.size} values, min "
                                     f"{bw.min() if bw.size else None}"))
    deadline = check_positive(deadline_ms, "deadline_ms", where=where)
    est = estimator if estimator is not None else BandwidthEstimator(initial_Bps=float(bw[0]))
    if not isinstance(est, BandwidthEstimator):
        raise TypeError(param_error("estimator", where, "a BandwidthEstimator",
                                    type(estimator).__name__))
    n = bw.size
    rec = {name: np.zeros(n) for name in ("estimate", "k", "bits", "latency", "acc")}
    met = np.zeros(n, dtype=bool)
    feas = np.zeros(n, dtype=bool)
    for t in range(n):
        rec["estimate"][t] = est.estimate
        choice = controller.select(est.estimate, deadline)
        st = controller.table[choice.mode]
        acc, nbytes, enc_ms = frame(t, choice.mode) if frame else (st.accuracy,
                                                                   st.payload_bytes,
                                                                   st.encoder_ms)
        transfer_s = nbytes / bw[t]
        lat = enc_ms + 1e3 * transfer_s + controller.server_ms
        rec["k"][t], rec["bits"][t], rec["latency"][t], rec["acc"][t] = (choice.k, choice.bits,
                                                                        lat, acc)
        met[t] = lat <= deadline
        feas[t] = choice.feasible
        est.update(int(nbytes), transfer_s)
    return StreamTrace(bw, rec["estimate"], rec["k"].astype(int), rec["bits"].astype(int),
                       rec["latency"], met, feas, rec["acc"], deadline)
