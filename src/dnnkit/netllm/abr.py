"""Adaptive-bitrate (ABR) substrate with Pensieve/Genet semantics (NetLLM spec section 2.5).

A trace-driven chunk-download simulator (Mahimahi-style trace consumption), synthetic and file
traces, VBR video sizes, the classic controllers (BBA, RobustMPC, rate-based, random) and the
linear-QoE evaluation used by Pensieve, Genet and NetLLM. numpy only; silent; no file I/O except
the explicit trace/video readers.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from dnnkit.core.seeding import make_rng
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    PathArg,
    Real,
    Seed,
    Sequence_,
    Str,
    Tensor,
    check_int,
    check_interval,
    param_error,
    validate_params,
)

__all__ = [
    "BITRATES_KBPS",
    "Trace",
    "VideoSizes",
    "synthetic_traces",
    "load_traces",
    "ABREnv",
    "ABRPolicy",
    "BBA",
    "RobustMPC",
    "RateBased",
    "RandomPolicy",
    "evaluate_abr",
    "linear_qoe",
]

BITRATES_KBPS = (300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0)
CHUNK_MS = 4000.0
BUFFER_THRESH_MS = 60000.0
DRAIN_SLEEP_MS = 500.0
PAYLOAD_FRACTION = 0.95
LINK_RTT_MS = 80.0
REBUF_PENALTY = 4.3
BUFFER_NORM_S = 10.0
HISTORY = 6
DEFAULT_LEVEL = 1


@validate_params({"bitrate_kbps": Real(0.0, 1e9), "rebuffer_s": Real(0.0, 1e9),
                  "last_bitrate_kbps": Real(0.0, 1e9), "rebuf_penalty": Real(0.0, 1e6)})
def linear_qoe(bitrate_kbps, rebuffer_s, last_bitrate_kbps, *, rebuf_penalty: float = REBUF_PENALTY):
    """Linear QoE of one chunk: ``b/1000 - mu * rebuf - |b - b_prev|/1000`` (b in kbps).

    Pensieve (Mao et al. 2017) eq. (QoE_lin); NetLLM spec section 2.5.
    """
    return (bitrate_kbps / 1000.0 - rebuf_penalty * rebuffer_s
            - abs(bitrate_kbps - last_bitrate_kbps) / 1000.0)


# ----------------------------------------------------------------------------------------------
# traces and video


@validate_params({"times_s": Tensor(ndim=1), "mbps": Tensor(ndim=1), "name": Str(allow_empty=True)})
@dataclass(frozen=True)
class Trace:
    """A bandwidth trace: ``times_s`` (strictly increasing) and ``mbps`` (>= 0, some > 0).

    Raises ``ValueError`` on non-increasing time, no positive bandwidth, fewer than 2 points or a
    duration shorter than one chunk (4 s).
    """

    times_s: np.ndarray
    mbps: np.ndarray
    name: str = ""

    def __post_init__(self):
        t = np.asarray(self.times_s, dtype=np.float64).reshape(-1)
        b = np.asarray(self.mbps, dtype=np.float64).reshape(-1)
        where = "netllm.Trace"
        if t.shape != b.shape:
            raise ValueError(param_error("mbps", where, f"an array of the same length as times_s "
                                         f"({t.size})", f"length {b.size}"))
        if t.size < 2:
            raise ValueError(param_error("times_s", where, "at least 2 time stamps", t.size))
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(b))):
            raise ValueError(param_error("mbps", where, "finite values", "non-finite values"))
        if np.any(np.diff(t) <= 0):
            i = int(np.argmax(np.diff(t) <= 0))
            raise ValueError(param_error("times_s", where, "strictly increasing",
                                         f"t[{i}]={t[i]}, t[{i + 1}]={t[i + 1]}"))
        if np.any(b < 0) or not np.any(b > 0):
            raise ValueError(param_error("mbps", where, "non-negative with at least one positive "
                                         "value", f"min {b.min()}, max {b.max()}"))
        if t[-1] - t[0] < CHUNK_MS / 1000.0:
            raise ValueError(param_error("times_s", where, "a trace at least one chunk (4 s) long",
                                         f"duration {t[-1] - t[0]:.3g} s"))
        object.__setattr__(self, "times_s", t)
        object.__setattr__(self, "mbps", b)

    @property
    def mean_mbps(self) -> float:
        return float(self.mbps.mean())


@validate_params({"n": Int(1, 100_000), "max_hold_steps": Int(1, 10_000),
                  "duration_s": Real(4.0, 1e7), "seed": Seed()})
def synthetic_traces(n: int, *, mbps_range: tuple[float, float] = (0.5, 5.0),
                     max_hold_steps: int = 5, dt_range: tuple[float, float] = (0.1, 3.5),
                     duration_s: float = 320.0, seed=0) -> list[Trace]:
    """Piecewise-constant synthetic bandwidth traces (NetLLM spec section 5, experiment N1).

    Time advances by ``U(dt_range)`` seconds per sample; a bandwidth drawn from ``U(mbps_range)``
    is held for ``U{1..max_hold_steps}`` samples.
    """
    where = "netllm.synthetic_traces"
    n = check_int(n, "n", 1, 100_000, where=where)
    max_hold_steps = check_int(max_hold_steps, "max_hold_steps", 1, 10_000, where=where)
    duration_s = check_interval(duration_s, "duration_s", 4.0, 1e7, where=where)
    lo, hi = (check_interval(v, "mbps_range", 0.0, 1e6, where=where) for v in mbps_range)
    if not 0 < hi or lo > hi:
        raise ValueError(param_error("mbps_range", where, "(low, high) with 0 <= low <= high, "
                                     "high > 0", mbps_range))
    dlo, dhi = (check_interval(v, "dt_range", 0.0, 1e4, closed="neither", where=where)
                for v in dt_range)
    if dlo > dhi:
        raise ValueError(param_error("dt_range", where, "(low, high) with low <= high", dt_range))
    rng = make_rng(seed)
    out = []
    for i in range(n):
        times, bws, t = [0.0], [], 0.0
        hold, bw = 0, 0.0
        while t < duration_s:
            if hold == 0:
                bw = rng.uniform(lo, hi)
                hold = int(rng.integers(1, max_hold_steps + 1))
            bws.append(bw)
            hold -= 1
            t += rng.uniform(dlo, dhi)
            times.append(t)
        bws.append(bws[-1])
        out.append(Trace(np.array(times), np.array(bws), name=f"synthetic-{i}"))
    return out


def _read_trace_file(path: Path) -> Trace:
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if not rows:
        raise ValueError(f"Trace file {str(path)!r} is empty.")
    if all(len(r) == 1 for r in rows):
        # Mahimahi: one line per 1500-byte delivery opportunity, time stamp in ms
        ms = np.array([float(r[0]) for r in rows])
        if np.any(np.diff(ms) < 0):
            raise ValueError(f"Mahimahi trace {str(path)!r}: time stamps must be non-decreasing.")
        n_bins = int(ms[-1] // 1000) + 1
        counts = np.bincount((ms // 1000).astype(int), minlength=n_bins)
        mbps = counts * 1500 * 8 / 1e6
        return Trace(np.arange(n_bins, dtype=float), mbps, name=path.name)
    try:
        data = np.array([[float(r[0]), float(r[1])] for r in rows])
    except (ValueError, IndexError):
        raise ValueError(f"Trace file {str(path)!r}: expected 'time_s bandwidth_mbps' per line "
                         "(cooked format) or one millisecond time stamp per line (Mahimahi)."
                         ) from None
    return Trace(data[:, 0], data[:, 1], name=path.name)


@validate_params({"path": PathArg()})
def load_traces(path: str | Path) -> list[Trace]:
    """Read a trace file or a directory of them (sorted by name).

    Two formats are recognised per file: the "cooked" format of Pensieve/Genet (two columns,
    ``time_s bandwidth_mbps``) and raw Mahimahi traces (one delivery time stamp in ms per line,
    1500 bytes each; converted to 1-s bandwidth bins).
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        if not files:
            raise ValueError(param_error("path", "netllm.load_traces",
                                         "a directory with trace files", str(p)))
        return [_read_trace_file(f) for f in files]
    if p.is_file():
        return [_read_trace_file(p)]
    raise FileNotFoundError(f"The 'path' parameter of netllm.load_traces: {str(p)!r} does not exist.")


@validate_params({"sizes": Tensor(ndim=2), "chunk_s": Real(0.0, 1e4, closed="right")})
@dataclass(frozen=True)
class VideoSizes:
    """Per-chunk sizes in bytes, shape ``(levels, chunks)``, with the level bitrates in kbps."""

    sizes: np.ndarray
    bitrates_kbps: tuple[float, ...] = BITRATES_KBPS
    chunk_s: float = CHUNK_MS / 1000.0

    def __post_init__(self):
        s = np.asarray(self.sizes, dtype=np.float64)
        where = "netllm.VideoSizes"
        L = len(self.bitrates_kbps)
        if s.ndim != 2 or s.shape[0] != L or s.shape[1] < 2:
            raise ValueError(param_error("sizes", where, f"an array of shape (levels={L}, chunks>=2)",
                                         f"shape {s.shape}"))
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError(param_error("sizes", where, "finite positive byte counts",
                                         f"min {np.nanmin(s)}"))
        if list(self.bitrates_kbps) != sorted(self.bitrates_kbps):
            raise ValueError(param_error("bitrates_kbps", where, "increasing", self.bitrates_kbps))
        object.__setattr__(self, "sizes", s)
        object.__setattr__(self, "bitrates_kbps", tuple(float(b) for b in self.bitrates_kbps))

    @property
    def levels(self) -> int:
        return self.sizes.shape[0]

    @property
    def chunks(self) -> int:
        return self.sizes.shape[1]

    @classmethod
    @validate_params({"n_chunks": Int(2, 1_000_000), "vbr": Real(0.0, 1.0, closed="left"),
                      "chunk_s": Real(0.0, 1e4, closed="right"), "seed": Seed()})
    def synthetic(cls, *, bitrates_kbps=BITRATES_KBPS, n_chunks: int = 48, vbr: float = 0.15,
                  chunk_s: float = 4.0, seed=0) -> VideoSizes:
        """VBR sizes ``bitrate * chunk_s / 8 * U[1-vbr, 1+vbr]``, one factor per chunk shared by
        every level (scene complexity)."""
        where = "netllm.VideoSizes.synthetic"
        n_chunks = check_int(n_chunks, "n_chunks", 2, 1_000_000, where=where)
        vbr = check_interval(vbr, "vbr", 0.0, 1.0, closed="left", where=where)
        rng = make_rng(seed)
        factor = rng.uniform(1 - vbr, 1 + vbr, size=n_chunks)
        b = np.asarray(bitrates_kbps, dtype=np.float64)[:, None]
        return cls(b * 1000.0 * chunk_s / 8.0 * factor[None, :], tuple(bitrates_kbps), chunk_s)

    @classmethod
    @validate_params({"paths": Sequence_(PathArg()), "chunk_s": Real(0.0, 1e4, closed="right")})
    def from_files(cls, paths, *, bitrates_kbps=BITRATES_KBPS, chunk_s: float = 4.0) -> VideoSizes:
        """Read Pensieve's ``video_size_<level>`` files (one byte count per line), one per level."""
        cols = [np.array([float(x) for x in Path(p).read_text().split()]) for p in paths]
        n = {len(c) for c in cols}
        if len(n) != 1:
            raise ValueError(param_error("paths", "netllm.VideoSizes.from_files",
                                         "files with the same number of chunks",
                                         sorted(len(c) for c in cols)))
        return cls(np.stack(cols), tuple(bitrates_kbps), chunk_s)


# ----------------------------------------------------------------------------------------------
# simulator


@dataclass
class _Download:
    delay_ms: float
    sleep_ms: float
    rebuffer_ms: float
    buffer_ms: float


@validate_params({"video": Instance(VideoSizes), "train_noise": Instance(bool), "seed": Seed()})
class ABREnv:
    """Trace-driven chunk-level streaming simulator (Pensieve's ``fixed_env``/Genet semantics).

    ``reset`` downloads chunk 0 at the default level (1) and returns the first observation; each
    ``step(level)`` downloads the next chunk and returns ``(obs, reward, done, info)``. An episode
    has ``chunks - 1`` decisions (the first chunk is not a decision, as in Pensieve's evaluation,
    which skips it).

    Observation (Pensieve's 6 x 6 state, split by component, float32 numpy):
    ``last_bitrate`` (1,) = kbps / max kbps; ``buffer`` (1,) = s / 10; ``throughput`` (6,) last
    throughputs in kilobytes/ms; ``download_time`` (6,) in s / 10; ``next_sizes`` (levels,) MB;
    ``chunks_left`` (1,) / chunks; ``flat`` = all of them concatenated. Raw values for the rule
    baselines: ``buffer_s``, ``last_level``, ``chunk_index`` (the next chunk to fetch),
    ``throughput_hist`` (all past throughputs), ``reward`` (the last chunk's QoE).
    """

    def __init__(self, traces, video: VideoSizes, *, train_noise: bool = False, seed=0):
        if isinstance(traces, Trace):
            traces = [traces]
        traces = [t if isinstance(t, Trace) else Trace(*t) for t in traces]
        if not traces:
            raise ValueError(param_error("traces", "netllm.ABREnv", "a non-empty list of traces",
                                         "[]"))
        if not isinstance(video, VideoSizes):
            raise TypeError(param_error("video", "netllm.ABREnv", "a VideoSizes",
                                        type(video).__name__))
        self.traces = traces
        self.video = video
        self.train_noise = bool(train_noise)
        self.rng = make_rng(seed)
        self._kbps = np.asarray(video.bitrates_kbps)
        self.trace_index = 0

    @property
    def n_actions(self) -> int:
        return self.video.levels

    # -- trace consumption ---------------------------------------------------------------
    def _download(self, size_bytes: float) -> float:
        t, bw = self._trace.times_s, self._trace.mbps
        delay, sent = 0.0, 0.0
        while True:
            throughput = bw[self._ptr] * 1e6 / 8.0  # bytes/s
            duration = t[self._ptr] - self._last_time
            payload = throughput * duration * PAYLOAD_FRACTION
            if sent + payload > size_bytes:
                frac = (size_bytes - sent) / throughput / PAYLOAD_FRACTION
                delay += frac
                self._last_time += frac
                break
            sent += payload
            delay += duration
            self._last_time = t[self._ptr]
            self._advance()
        return delay * 1000.0

    def _advance(self) -> None:
        self._ptr += 1
        if self._ptr >= len(self._trace.times_s):
            self._ptr = 1
            self._last_time = self._trace.times_s[0]

    def _sleep(self, sleep_ms: float) -> None:
        t = self._trace.times_s
        while True:
            duration = t[self._ptr] - self._last_time
            if duration > sleep_ms / 1000.0:
                self._last_time += sleep_ms / 1000.0
                break
            sleep_ms -= duration * 1000.0
            self._last_time = t[self._ptr]
            self._advance()

    def _fetch(self, level: int) -> _Download:
        size = self.video.sizes[level, self._chunk]
        delay = self._download(size) + LINK_RTT_MS
        if self.train_noise:
            delay *= self.rng.uniform(0.9, 1.1)
        rebuf = max(delay - self._buffer, 0.0)
        self._buffer = max(self._buffer - delay, 0.0) + CHUNK_MS * self.video.chunk_s / 4.0
        sleep = 0.0
        if self._buffer > BUFFER_THRESH_MS:
            sleep = math.ceil((self._buffer - BUFFER_THRESH_MS) / DRAIN_SLEEP_MS) * DRAIN_SLEEP_MS
            self._buffer -= sleep
            self._sleep(sleep)
        self._chunk += 1
        thr = size / delay / 1000.0  # kilobytes per ms (= MB/s)
        self._thr.append(thr)
        self._dl.append(delay / 1000.0)
        reward = linear_qoe(self._kbps[level], rebuf / 1000.0, self._kbps[self._last_level])
        self._last_level = level
        self._last_reward = float(reward)
        return _Download(delay, sleep, rebuf, self._buffer)

    def _obs(self) -> dict:
        L, C = self.video.levels, self.video.chunks
        thr = np.zeros(HISTORY, np.float32)
        dl = np.zeros(HISTORY, np.float32)
        h = self._thr[-HISTORY:]
        thr[HISTORY - len(h):] = h
        d = self._dl[-HISTORY:]
        dl[HISTORY - len(d):] = np.asarray(d) / BUFFER_NORM_S
        nxt = (self.video.sizes[:, self._chunk] / 1e6 if self._chunk < C
               else np.zeros(L)).astype(np.float32)
        comps = {
            "last_bitrate": np.array([self._kbps[self._last_level] / self._kbps[-1]], np.float32),
            "buffer": np.array([self._buffer / 1000.0 / BUFFER_NORM_S], np.float32),
            "throughput": thr,
            "download_time": dl,
            "next_sizes": nxt,
            "chunks_left": np.array([(C - self._chunk) / C], np.float32),
        }
        comps["flat"] = np.concatenate(list(comps.values()))
        comps.update(buffer_s=self._buffer / 1000.0, last_level=self._last_level,
                     chunk_index=self._chunk, throughput_hist=list(self._thr),
                     reward=self._last_reward)
        return comps

    @validate_params({"trace_index": Optional_(Int(0, 1 << 30)), "offset": Optional_(Int(1, 1 << 30))})
    def reset(self, trace_index: int | None = None, *, offset: int | None = None) -> dict:
        """Start an episode on trace ``trace_index`` (random if None) at sample ``offset``
        (random in ``[1, len)`` if None; evaluation uses 1) and download chunk 0 at level 1."""
        if trace_index is None:
            trace_index = int(self.rng.integers(len(self.traces)))
        trace_index = check_int(trace_index, "trace_index", 0, len(self.traces) - 1,
                                where="netllm.ABREnv.reset")
        self.trace_index = trace_index
        self._trace = self.traces[trace_index]
        n = len(self._trace.times_s)
        if offset is None:
            offset = int(self.rng.integers(1, n))
        offset = check_int(offset, "offset", 1, n - 1, where="netllm.ABREnv.reset")
        self._ptr = offset
        self._last_time = self._trace.times_s[offset - 1]
        self._buffer = 0.0
        self._chunk = 0
        self._thr, self._dl = [], []
        self._last_level = DEFAULT_LEVEL
        self._last_reward = 0.0
        d = self._fetch(DEFAULT_LEVEL)
        self._first = d
        return self._obs()

    @validate_params({"level": Int(0, 1 << 20)})
    def step(self, level: int) -> tuple[dict, float, bool, dict]:
        """Download the next chunk at ``level``; reward is the chunk's linear QoE."""
        if isinstance(level, (np.integer, torch.Tensor)):
            level = int(level)
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < self.n_actions:
            raise ValueError(param_error("level", "netllm.ABREnv.step",
                                         f"an int in [0, {self.n_actions - 1}]", level))
        if self._chunk >= self.video.chunks:
            raise RuntimeError("The episode is over: call reset() first.")
        d = self._fetch(level)
        done = self._chunk >= self.video.chunks
        info = {"delay_ms": d.delay_ms, "sleep_ms": d.sleep_ms, "rebuffer_s": d.rebuffer_ms / 1000,
                "buffer_s": d.buffer_ms / 1000, "bitrate_kbps": float(self._kbps[level])}
        return self._obs(), self._last_reward, done, info


# ----------------------------------------------------------------------------------------------
# baselines


class ABRPolicy(Protocol):
    """Anything with ``reset()`` and ``act(obs) -> level``."""

    def reset(self) -> None: ...

    def act(self, obs: dict) -> int: ...


@validate_params({"n_levels": Int(1, 1000), "reservoir": Real(0.0, 1e4),
                  "cushion": Real(0.0, 1e4, closed="right")})
class BBA:
    """Buffer-based adaptation (Huang et al. 2014): level 0 below ``reservoir`` s, top level at or
    above ``reservoir + cushion`` s, linear (floored) in between."""

    def __init__(self, n_levels: int = 6, *, reservoir: float = 5.0, cushion: float = 10.0):
        self.n_levels = check_int(n_levels, "n_levels", 1, 1000, where="netllm.BBA")
        self.reservoir = check_interval(reservoir, "reservoir", 0.0, 1e4, where="netllm.BBA")
        self.cushion = check_interval(cushion, "cushion", 0.0, 1e4, closed="neither",
                                      where="netllm.BBA")

    def reset(self) -> None:
        pass

    @validate_params({"obs": Instance(dict)})
    def act(self, obs: dict) -> int:
        b = float(obs["buffer_s"])
        if b < self.reservoir:
            return 0
        if b >= self.reservoir + self.cushion:
            return self.n_levels - 1
        return int((self.n_levels - 1) * (b - self.reservoir) / self.cushion)


def _harmonic(x) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(len(x) / np.sum(1.0 / x))


@validate_params({"window": Int(1, 1000)})
class RateBased:
    """Highest level whose bitrate is at most the harmonic mean of the last ``window``
    throughputs (kbps)."""

    def __init__(self, bitrates_kbps=BITRATES_KBPS, *, window: int = 5):
        self.kbps = np.asarray(bitrates_kbps, dtype=np.float64)
        self.window = check_int(window, "window", 1, 1000, where="netllm.RateBased")

    def reset(self) -> None:
        pass

    @validate_params({"obs": Instance(dict)})
    def act(self, obs: dict) -> int:
        hist = obs["throughput_hist"][-self.window:]
        est = _harmonic(hist) * 8000.0  # kB/ms -> kbps
        return int(max(0, np.searchsorted(self.kbps, est, side="right") - 1))


@validate_params({"n_levels": Int(1, 1000), "seed": Seed()})
class RandomPolicy:
    """Uniformly random level (seeded)."""

    def __init__(self, n_levels: int = 6, *, seed=0):
        self.n_levels = check_int(n_levels, "n_levels", 1, 1000, where="netllm.RandomPolicy")
        self.rng = make_rng(seed)

    def reset(self) -> None:
        pass

    @validate_params({"obs": Instance(dict)})
    def act(self, obs: dict) -> int:
        return int(self.rng.integers(self.n_levels))


def mpc_plans(n_levels: int, horizon: int, *, max_jump: int | None = None,
              last_level: int | None = None) -> np.ndarray:
    """All level plans of length ``horizon`` (``n_levels ** horizon`` rows, itertools order).

    With ``max_jump`` keep only plans whose consecutive levels differ by at most ``max_jump``
    (the official NetLLM/Genet MPC uses 1); with ``last_level`` also the first step's jump from it.
    """
    plans = np.array(list(itertools.product(range(n_levels), repeat=horizon)), dtype=np.int64)
    if max_jump is not None:
        full = plans if last_level is None else np.hstack(
            [np.full((len(plans), 1), last_level), plans])
        ok = np.all(np.abs(np.diff(full, axis=1)) <= max_jump, axis=1) if full.shape[1] > 1 \
            else np.ones(len(plans), bool)
        plans = plans[ok]
    return plans


@validate_params({"video": Instance(VideoSizes), "horizon": Int(1, 7),
                  "max_jump": Optional_(Int(0, 1000)), "rebuf_penalty": Real(0.0, 1e6)})
class RobustMPC:
    """RobustMPC (Yin et al. 2015) as in Pensieve's ``mpc.py``.

    Bandwidth = harmonic mean of the last 5 throughputs / (1 + max relative prediction error of
    the last 5 steps); enumerate level plans over the next ``horizon`` chunks (vectorised), simulate
    buffer and rebuffering, return the first level of the plan with the highest linear QoE.
    ``max_jump=None`` enumerates all ``levels ** horizon`` plans; ``max_jump=1`` keeps the
    official code's plans whose consecutive levels differ by at most one.
    """

    def __init__(self, video: VideoSizes, *, horizon: int = 5, max_jump: int | None = None,
                 rebuf_penalty: float = REBUF_PENALTY):
        if not isinstance(video, VideoSizes):
            raise TypeError(param_error("video", "netllm.RobustMPC", "a VideoSizes",
                                        type(video).__name__))
        self.video = video
        self.horizon = check_int(horizon, "horizon", 1, 7, where="netllm.RobustMPC")
        if max_jump is not None:
            max_jump = check_int(max_jump, "max_jump", 0, video.levels, where="netllm.RobustMPC")
        self.max_jump = max_jump
        self.rebuf_penalty = check_interval(rebuf_penalty, "rebuf_penalty", 0.0, 1e6,
                                            where="netllm.RobustMPC")
        self._kbps = np.asarray(video.bitrates_kbps)
        self._plans = {h: mpc_plans(video.levels, h, max_jump=max_jump)
                       for h in range(1, self.horizon + 1)}
        self.reset()

    def reset(self) -> None:
        self._static_cache = getattr(self, "_static_cache", {})
        self._ests: list[float] = []
        self._errors: list[float] = []
        self._seen = 0

    @validate_params({"throughput_hist": Sequence_(Real(0.0, None, closed="neither"))})
    def predict_bandwidth(self, throughput_hist) -> float:
        """Robust bandwidth estimate (MB/s) from the throughput history; updates error state."""
        cur = float(throughput_hist[-1])
        err = abs(self._ests[-1] - cur) / cur if self._ests else 0.0
        self._errors.append(err)
        hm = _harmonic(throughput_hist[-5:])
        self._ests.append(hm)
        return hm / (1.0 + max(self._errors[-5:]))

    def _static(self, h: int, last_level: int) -> np.ndarray:
        """Bitrate and smoothness part of each plan's QoE (independent of bandwidth), cached."""
        key = (h, last_level)
        if key not in self._static_cache:
            plans = self._plans[h]
            kb = self._kbps[plans]
            prev = np.hstack([np.full((len(plans), 1), self._kbps[last_level]), kb[:, :-1]])
            self._static_cache[key] = (kb.sum(1) - np.abs(kb - prev).sum(1)) / 1000.0
        return self._static_cache[key]

    @validate_params({"bandwidth": Real(0.0, None, closed="neither"), "buffer_s": Real(0.0, 1e6),
                      "last_level": Int(0, 1 << 20), "chunk_index": Int(0, 1 << 30)})
    def plan_rewards(self, bandwidth: float, buffer_s: float, last_level: int,
                     chunk_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(plans, predicted QoE of each plan) for the given bandwidth (MB/s) and state."""
        h = min(self.horizon, self.video.chunks - chunk_index)
        plans = self._plans[h]
        buf = np.full(len(plans), float(buffer_s))
        rebuf = np.zeros(len(plans))
        chunk_s = self.video.chunk_s
        for k in range(h):
            dl = (self.video.sizes[:, chunk_index + k] / 1e6 / bandwidth)[plans[:, k]]
            buf -= dl
            rebuf -= np.minimum(buf, 0.0)
            np.maximum(buf, 0.0, out=buf)
            buf += chunk_s
        return plans, self._static(h, last_level) - self.rebuf_penalty * rebuf

    @validate_params({"obs": Instance(dict)})
    def act(self, obs: dict) -> int:
        hist = obs["throughput_hist"]
        bw = self.predict_bandwidth(hist)
        if obs["chunk_index"] >= self.video.chunks:
            return int(obs["last_level"])
        plans, r = self.plan_rewards(bw, obs["buffer_s"], int(obs["last_level"]),
                                     int(obs["chunk_index"]))
        return int(plans[int(np.argmax(r)), 0])


# ----------------------------------------------------------------------------------------------
# evaluation


@dataclass
class EpisodeLog:
    levels: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    buffer_s: list[float] = field(default_factory=list)
    rebuffer_s: list[float] = field(default_factory=list)
    bitrate_kbps: list[float] = field(default_factory=list)


def run_episode(policy, env: ABREnv, trace_index: int | None = None, *,
                offset: int | None = None) -> EpisodeLog:
    """Play one episode; returns per-decision levels, rewards, buffer, rebuffering, bitrate."""
    obs = env.reset(trace_index, offset=offset)
    policy.reset()
    log = EpisodeLog()
    done = False
    while not done:
        a = policy.act(obs)
        obs, r, done, info = env.step(a)
        log.levels.append(int(a))
        log.rewards.append(float(r))
        log.buffer_s.append(info["buffer_s"])
        log.rebuffer_s.append(info["rebuffer_s"])
        log.bitrate_kbps.append(info["bitrate_kbps"])
    return log


@validate_params({"env": Instance(ABREnv)})
def evaluate_abr(policy, env: ABREnv, trace_indices=None) -> dict[str, float]:
    """Mean linear QoE per chunk over one episode per trace (offset 1, Pensieve's test protocol;
    the first chunk, fetched at the default level, is not a decision and is skipped).

    Returns ``qoe``, ``bitrate_mbps`` (mean), ``rebuffer_ratio`` (stall time / (play + stall)),
    ``smoothness_mbps`` (mean |switch|), ``valid_fraction`` (decisions in range), ``decisions``.
    """
    if trace_indices is None:
        trace_indices = range(len(env.traces))
    rewards, kbps, rebuf, switch, n = [], [], 0.0, [], 0
    counter = _ValidCounter(policy, env.n_actions)
    logs = (_lockstep(policy, env, list(trace_indices), counter) if hasattr(policy, "act_batch")
            else (run_episode(counter, env, i, offset=1) for i in trace_indices))
    for log in logs:
        rewards += log.rewards
        kbps += log.bitrate_kbps
        rebuf += sum(log.rebuffer_s)
        switch += list(np.abs(np.diff(log.bitrate_kbps)))
        n += len(log.levels)
    valid = n - counter.invalid
    play = n * env.video.chunk_s
    return {"qoe": float(np.mean(rewards)), "bitrate_mbps": float(np.mean(kbps)) / 1000.0,
            "rebuffer_ratio": rebuf / (play + rebuf), "smoothness_mbps":
            float(np.mean(switch)) / 1000.0 if switch else 0.0,
            "valid_fraction": valid / max(n, 1), "decisions": n}


def _lockstep(policy, env: ABREnv, indices: list[int], counter) -> list[EpisodeLog]:
    """Episodes on several traces stepped together; ``policy.act_batch(obs_list)`` decides for
    all of them at once (same results as one episode at a time for a deterministic policy)."""
    envs = [ABREnv([env.traces[i]], env.video, train_noise=env.train_noise, seed=k)
            for k, i in enumerate(indices)]
    obs = [e.reset(0, offset=1) for e in envs]
    policy.reset()
    logs = [EpisodeLog() for _ in envs]
    done = False
    while not done:
        acts = policy.act_batch(obs)
        for k, (e, a) in enumerate(zip(envs, acts)):
            if isinstance(a, (np.integer, torch.Tensor)):
                a = int(a)
            if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < env.n_actions:
                counter.invalid += 1
                a = int(obs[k]["last_level"])
            obs[k], r, done, info = e.step(a)
            log = logs[k]
            log.levels.append(a)
            log.rewards.append(float(r))
            log.buffer_s.append(info["buffer_s"])
            log.rebuffer_s.append(info["rebuffer_s"])
            log.bitrate_kbps.append(info["bitrate_kbps"])
    return logs


class _ValidCounter:
    """Wraps a policy; counts out-of-range or non-integer actions and replaces them by the last
    level (what a player would do with an unusable answer)."""

    def __init__(self, policy, n_actions: int):
        self.policy, self.n, self.invalid = policy, n_actions, 0

    def reset(self) -> None:
        self.policy.reset()

    def act(self, obs: dict) -> int:
        a = self.policy.act(obs)
        if isinstance(a, (np.integer, torch.Tensor)):
            a = int(a)
        if isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < self.n:
            self.invalid += 1
            return int(obs["last_level"])
        return a
