"""DeepPeep's two stages on a captured trace (Jha et al. 2020, sections 4-5; our CPU realisation,
see ``docs/deeppeep.md``).

1. Segment the trace into layers (each convolution event plus the glue events after it: batch
   norm, ReLU / ReLU6, add, cat, the view/transpose of a channel shuffle).
2. Parse the layers into building blocks with a grammar whose templates are the blocks'
   signatures (``dwsep``: 3x3 -> ReLU -> 1x1 -> ReLU; ``inverted_residual``: [1x1 -> ReLU6] ->
   3x3 dw -> ReLU6 -> 1x1 [-> add]; ``fire``: 1x1 -> 1x1, 3x3 -> cat; ``shuffle``: grouped 1x1
   -> shuffle -> 3x3 dw -> grouped 1x1 -> add; ``grouped``; ``standard``) and a dynamic programme
   over (layer position, channels, spatial size): every template instance with concrete
   hyper-parameters predicts its events' latencies from the attacker's
   :class:`~dnnkit.deeppeep.LatencyModel`, and the parse minimises
   ``sum (log t_measured - log t_model)^2`` with output channels of block i = input channels of
   block i + 1 (stage 2). At level ``"kernel"`` the glue signature is a hard constraint and the
   kernel names a soft one; at level ``"timing"`` only the convolution durations are left.

Depthwise vs grouped vs standard 3x3 is decided by timing alone (on CPU all three dispatch to the
same kernel), the CPU analogue of the paper's "design ramification" signal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from torch import nn

from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Options,
    Sequence_,
    param_error,
    validate_params,
)

from .latency import LatencyModel
from .trace import CONV_OPS, Trace, capture_trace
from .truth import BlockGuess

__all__ = ["identify_blocks", "infer_hyperparameters", "deeppeep", "segment_layers",
           "ATTACK_GRID"]

#: the attacker's hypothesis space (override any key with ``grid=``)
ATTACK_GRID: dict = {
    "channels": (16, 32, 64, 128),
    "expansions": (1, 2, 3, 4, 6),
    "group_widths": (4, 8, 16),
    "shuffle_groups": (2, 4, 8),
    "strides": (1, 2),
}

_GLUE = {"batch_norm", "relu", "hardtanh", "add", "cat", "view", "transpose", "reshape",
         "contiguous", "channel_shuffle", "native_channel_shuffle", "clone", "dropout",
         "_unsafe_view", "permute"}
_POOL = {"max_pool2d", "avg_pool2d", "max_pool2d_with_indices"}
_HEAD = {"adaptive_avg_pool2d", "mean", "flatten", "linear", "addmm", "dropout", "t", "matmul",
         "softmax", "log_softmax", "view", "reshape"}
_ELT = ("batch_norm", "relu", "hardtanh", "add", "cat")
_SLOW_1X1 = ("aten::_slow_conv2d_forward", "aten::thnn_conv2d")
_GLUE_WEIGHT = 0.5
_KERNEL_PENALTY = 4.0


def _short(name: str) -> str:
    s = name.split("::")[-1]
    return s[:-1] if s.endswith("_") and not s.startswith("_") else s


@dataclass
class Layer:
    """A convolution event with the glue that follows it (``glue``: (op, duration_us))."""

    index: int
    duration_us: float
    kernel: str = ""
    glue: list[tuple[str, float]] = field(default_factory=list)
    pool_before: bool = False
    unknown_before: bool = False

    @property
    def signature(self) -> tuple[str | None, bool, bool, bool]:
        ops = [g for g, _ in self.glue]
        act = "hardtanh" if "hardtanh" in ops else ("relu" if "relu" in ops else None)
        shuf = "transpose" in ops or "channel_shuffle" in ops or "native_channel_shuffle" in ops
        return act, "add" in ops, "cat" in ops, shuf


def segment_layers(trace: Trace) -> tuple[list[Layer], bool]:
    """Split a trace into conv layers; also whether unsupported ops appeared before the first
    conv. At level ``"timing"`` every event but the last (the classifier) is a layer."""
    if trace.level == "timing":
        evs = trace.events[:-1] if len(trace.events) > 1 else trace.events
        return [Layer(i, e.duration_us) for i, e in enumerate(evs)], False
    layers: list[Layer] = []
    pending: list[str] = []
    lead_unknown = False
    for e in trace.events:
        op = _short(e.name)
        if e.name in CONV_OPS:
            unknown = any(p not in _HEAD and p not in _POOL and p not in _GLUE for p in pending)
            if not layers and unknown:
                lead_unknown = True
            layers.append(Layer(len(layers), e.duration_us, e.kernel, [],
                                any(p in _POOL for p in pending), unknown and bool(layers)))
            pending = []
        elif layers and not pending and op in _GLUE:
            layers[-1].glue.append((op, e.duration_us))
        else:
            pending.append(op)
    return layers, lead_unknown


class _Spec(NamedTuple):
    k: int
    cin: int
    cout: int
    groups: int
    h: int
    stride: int
    sig: tuple
    kind: str


def _templates(c: int, h: int, g: dict, allowed: set | None):
    """Every block hypothesis starting with ``c`` channels at spatial size ``h``."""
    out = []

    def ok(t):
        return allowed is None or t in allowed

    for s in g["strides"]:
        h2 = (h + 1) // 2 if s == 2 else h
        for co in g["channels"]:
            if ok("standard"):
                for k in (3, 1):
                    if k == 1 and s == 2:
                        continue
                    out.append(("standard", {"in_channels": c, "out_channels": co, "stride": s,
                                             "kernel_size": k},
                                [_Spec(k, c, co, 1, h, s, ("relu", False, False, False),
                                       "std3" if k == 3 else "pw")], co, h2))
            if ok("dwsep"):
                out.append(("dwsep", {"in_channels": c, "out_channels": co, "stride": s},
                            [_Spec(3, c, c, c, h, s, ("relu", False, False, False), "dw3"),
                             _Spec(1, c, co, 1, h2, 1, ("relu", False, False, False), "pw")],
                            co, h2))
            if ok("grouped"):
                for gw in g["group_widths"]:
                    if c % gw or c <= gw:
                        continue
                    out.append(("grouped", {"in_channels": c, "out_channels": co, "stride": s,
                                            "groups": c // gw},
                                [_Spec(3, c, c, c // gw, h, s, ("relu", False, False, False),
                                       "g3"),
                                 _Spec(1, c, co, 1, h2, 1, ("relu", False, False, False), "pw")],
                                co, h2))
            if ok("inverted_residual"):
                res = s == 1 and c == co
                for t in g["expansions"]:
                    hid = c * t
                    specs = [] if t == 1 else [
                        _Spec(1, c, hid, 1, h, 1, ("hardtanh", False, False, False), "pw")]
                    specs += [_Spec(3, hid, hid, hid, h, s, ("hardtanh", False, False, False),
                                    "dw3"),
                              _Spec(1, hid, co, 1, h2, 1, (None, res, False, False), "pw")]
                    out.append(("inverted_residual", {"in_channels": c, "out_channels": co,
                                                      "stride": s, "expansion": t,
                                                      "residual": res}, specs, co, h2))
            if ok("fire") and s == 1 and co % 2 == 0:
                e = co // 2
                sqs = sorted({q for q in (*g["channels"], co // 4, co // 8) if q >= 4})
                for sq in sqs:
                    out.append(("fire", {"in_channels": c, "out_channels": co, "stride": 1,
                                         "squeeze": sq, "expand1": e, "expand3": e},
                                [_Spec(1, c, sq, 1, h, 1, ("relu", False, False, False), "pw"),
                                 _Spec(1, sq, e, 1, h, 1, ("relu", False, False, False), "pw"),
                                 _Spec(3, sq, e, 1, h, 1, ("relu", False, True, False), "std3")],
                                co, h))
        if ok("shuffle") and s == 1:
            for gr in g["shuffle_groups"]:
                if c % (4 * gr):
                    continue
                mid = max(gr, c // 4 // gr * gr)
                out.append(("shuffle", {"in_channels": c, "out_channels": c, "stride": 1,
                                        "groups": gr},
                            [_Spec(1, c, mid, gr, h, 1, ("relu", False, False, True), "gpw"),
                             _Spec(3, mid, mid, mid, h, 1, (None, False, False, False), "dw3"),
                             _Spec(1, mid, c, gr, h, 1, ("relu", True, False, False), "gpw")],
                            c, h))
    return out


class _Scorer:
    """Local costs of template instances against measured layers (memoised predictions)."""

    def __init__(self, layers: list[Layer], lm: LatencyModel | None, level: str, batch: int):
        self.layers, self.lm, self.level, self.batch = layers, lm, level, batch
        self._conv: dict = {}
        self._elt: dict = {}
        self._memo: dict = {}

    def cost(self, p: int, s: _Spec) -> float | None:
        """Memoised :meth:`layer_cost` of layer ``p``."""
        key = (p, s)
        if key not in self._memo:
            self._memo[key] = self.layer_cost(self.layers[p], s)
        return self._memo[key]

    def conv(self, s: _Spec) -> float:
        key = (s.k, s.cin, s.cout, s.groups, s.h, s.stride)
        v = self._conv.get(key)
        if v is None:
            v = self._conv[key] = math.log(max(self.lm._conv_us(*key), 1e-3))
        return v

    def elt(self, op: str, numel: int) -> float:
        key = (op, numel)
        v = self._elt.get(key)
        if v is None:
            v = self._elt[key] = math.log(max(self.lm._elementwise_us(op, numel), 1e-3))
        return v

    def layer_cost(self, lay: Layer, s: _Spec) -> float | None:
        """None when the layer cannot be this spec (structure), else the squared log error."""
        if self.level == "kernel":
            if lay.signature != s.sig:
                return None
        cost = 0.0
        if self.level == "kernel" and lay.kernel:
            if self.lm is not None:
                from .latency import conv_class
                if not self.lm._kernel_ok(conv_class(s.k, s.cin, s.cout, s.groups), s.stride,
                                          lay.kernel):
                    cost += _KERNEL_PENALTY
            elif self.batch > 1 and (lay.kernel in _SLOW_1X1) != (s.k == 1):
                return None
        if self.lm is None:
            return cost
        cost += (math.log(max(lay.duration_us, 1e-3)) - self.conv(s)) ** 2
        if self.level == "kernel":
            ho = (s.h + 2 * (s.k // 2) - s.k) // s.stride + 1
            numel = self.batch * s.cout * ho * ho
            for op, d in lay.glue:
                if op not in _ELT:
                    continue
                n = numel * 2 if op == "cat" else numel  # cat: both halves of a Fire output
                cost += _GLUE_WEIGHT * (math.log(max(d, 1e-3)) - self.elt(op, n)) ** 2
        return cost


_PRIOR = {"dwsep": 0.0, "inverted_residual": 0.0, "fire": 0.0, "shuffle": 0.0,
          "standard": 0.05, "grouped": 0.1}


def _parse(layers: list[Layer], scorer: _Scorer, g: dict, c0: int | None, h0: int,
           fixed: list[BlockGuess] | None):
    """Backward DP over (position, channels, size); returns the chosen blocks."""
    n = len(layers)
    hs = [h0]
    while hs[-1] > 1:
        hs.append((hs[-1] + 1) // 2)
    states = [(c, h) for c in g["channels"] for h in hs]
    start = [(c0, h0)] if c0 is not None else [(c, h0) for c in g["channels"]]
    fixed_at = {}
    if fixed is not None:
        for b in fixed:
            if b.layers:
                fixed_at[b.layers[0] - layers[0].index] = (b.block_type, len(b.layers))
    inf = float("inf")
    value: list[dict] = [dict() for _ in range(n + 1)]
    choice: list[dict] = [dict() for _ in range(n + 1)]
    for st in set(states) | set(start):
        value[n][st] = 0.0
    tcache: dict = {}
    for p in range(n - 1, -1, -1):
        lay = layers[p]
        allowed = None
        want_len = None
        if fixed is not None:
            if p not in fixed_at:
                continue
            t, want_len = fixed_at[p]
            allowed = {t}
        for st in (start if p == 0 else states):
            c, h = st
            h_in = (h + 1) // 2 if lay.pool_before else h
            key = (c, h_in, None if allowed is None else tuple(allowed))
            if key not in tcache:
                tcache[key] = _templates(c, h_in, g, allowed)
            cands = []
            for typ, params, specs, co, h2 in tcache[key]:
                m = len(specs)
                if p + m > n or (want_len is not None and m != want_len):
                    continue
                if any(layers[p + i].pool_before or layers[p + i].unknown_before
                       for i in range(1, m)):
                    continue
                cost = _PRIOR[typ]
                for i, sp in enumerate(specs):
                    lc = scorer.cost(p + i, sp)
                    if lc is None:
                        cost = inf
                        break
                    cost += lc
                if cost == inf:
                    continue
                nxt = (co, h2)
                if p + m < n and layers[p + m].unknown_before:
                    rest = min((v for v in value[p + m].values()), default=inf)
                else:
                    rest = value[p + m].get(nxt, inf)
                if rest == inf:
                    continue
                cands.append((cost + rest, typ, params, specs, nxt))
            if cands:
                cands.sort(key=lambda z: z[0])
                value[p][st] = cands[0][0]
                choice[p][st] = cands
    # forward read-out
    blocks: list[BlockGuess] = []
    p = 0
    cur = min(start, key=lambda s: value[0].get(s, inf))
    while p < n:
        cands = choice[p].get(cur)
        if not cands:
            blocks.append(BlockGuess("unknown", {}, 0.0, (layers[p].index,), ("?",)))
            p += 1
            cur = min(states, key=lambda s: value[p].get(s, inf)) if p < n else cur
            continue
        best, typ, params, specs, nxt = cands[0]
        alt = [z[0] for z in cands[1:] if z[1] != typ or
               z[2].get("out_channels") != params.get("out_channels")]
        margin = (alt[0] - best) if alt else 10.0
        conf = 1.0 - math.exp(-max(margin, 0.0))
        m = len(specs)
        blocks.append(BlockGuess(typ, dict(params), conf,
                                 tuple(layers[p + i].index for i in range(m)),
                                 tuple(sp.kind for sp in specs)))
        p += m
        if p < n and layers[p].unknown_before:
            blocks.append(BlockGuess("unknown", {}, 0.0))
            cur = min(states, key=lambda s: value[p].get(s, inf))
        else:
            cur = nxt
    return blocks


def _grid(grid: dict | None, where: str) -> dict:
    g = dict(ATTACK_GRID)
    if grid is not None:
        if not isinstance(grid, dict):
            raise TypeError(param_error("grid", where, "a dict", type(grid).__name__))
        bad = set(grid) - set(ATTACK_GRID)
        if bad:
            from dnnkit.core.validation import suggest

            raise KeyError(f"The 'grid' parameter of {where} has unknown key(s) {sorted(bad)}."
                           + suggest(sorted(bad)[0], ATTACK_GRID))
        g.update({k: tuple(v) for k, v in grid.items()})
    return g


def _run(trace: Trace, lm, input_shape, grid, fixed, where):
    if not isinstance(trace, Trace):
        raise TypeError(param_error("trace", where, "a deeppeep.Trace", type(trace).__name__))
    shape = tuple(int(s) for s in (input_shape if input_shape is not None else trace.input_shape))
    if len(shape) != 4:
        raise ValueError(param_error("input_shape", where, "a 4-d shape (B, C, H, W)", shape))
    if trace.level == "timing" and lm is None:
        raise ValueError(param_error("latency_model", where,
                                     "a LatencyModel at the 'timing' level", None))
    if lm is not None:
        lm.warn_if_incompatible(trace.meta, shape[0])
    g = _grid(grid, where)
    layers, lead_unknown = segment_layers(trace)
    if not layers:
        raise ValueError(f"{where}: the trace holds no convolution event; trace the model in "
                         "eager mode.")
    scorer = _Scorer(layers, lm, trace.level, shape[0])
    blocks = _parse(layers, scorer, g, shape[1], shape[2], fixed)
    if lead_unknown:
        blocks.insert(0, BlockGuess("unknown", {}, 0.0))
    if lm is None:  # hyper-parameters need timing: keep only what the glue shows
        for b in blocks:
            b.params = {k: v for k, v in b.params.items() if k == "residual"}
    if trace.noisy:
        for b in blocks:
            b.confidence *= 0.5
    return blocks


_TRACE_ARGS = {"latency_model": Optional_(Instance(LatencyModel)),
               "input_shape": Optional_(Sequence_(Int(1, 1 << 16), min_len=4, max_len=4))}


@validate_params({"trace": Instance(Trace), **_TRACE_ARGS}, where="deeppeep.identify_blocks")
def identify_blocks(trace: Trace, latency_model: LatencyModel | None = None, *,
                    input_shape: Sequence[int] | None = None,
                    grid: dict | None = None) -> list[BlockGuess]:
    """Stage 1: the building blocks of the traced model (types, layers, per-conv kinds).

    With a latency model the grammar is resolved by timing (depthwise vs grouped vs standard
    3x3, and at level ``"timing"`` also 1x1 vs 3x3), which also fills in hyper-parameters;
    without one (level ``"kernel"`` only) the glue signatures and kernel names decide and a
    3x3 -> 1x1 pair is called ``dwsep``.

    Parameters
    ----------
    trace : Trace
        From :func:`capture_trace`.
    latency_model : LatencyModel, optional
        The attacker's offline profile (:func:`profile_latency_model`).
    input_shape : sequence of 4 int, optional
        Defaults to the trace's.
    grid : dict, optional
        Overrides of :data:`ATTACK_GRID` (the hypothesis space).

    Returns
    -------
    list of BlockGuess
        Segments with unsupported operators are ``"unknown"`` blocks.
    """
    return _run(trace, latency_model, input_shape, grid, None, "deeppeep.identify_blocks")


@validate_params({"trace": Instance(Trace), "latency_model": Instance(LatencyModel),
                  "input_shape": Sequence_(Int(1, 1 << 16), min_len=4, max_len=4)},
                 where="deeppeep.infer_hyperparameters")
def infer_hyperparameters(trace: Trace, blocks: Sequence[BlockGuess],
                          latency_model: LatencyModel, input_shape: Sequence[int], *,
                          grid: dict | None = None) -> list[BlockGuess]:
    """Stage 2: hyper-parameters of given blocks (types and layers fixed) by the chain DP.

    Output channels, stride, expansion, squeeze and group counts minimise the squared log error
    between measured and modelled latencies, with block i's output channels = block i+1's input
    channels. ``confidence`` is ``1 - exp(-margin)``, the margin (in squared log units) to the
    best alternative with another type or channel count (halved on a noisy trace). When
    ``blocks`` hold ``"unknown"`` segments the chain is cut there and the types are re-decided
    (the full stage 1 + 2 parse).
    """
    where = "deeppeep.infer_hyperparameters"
    if not isinstance(blocks, (list, tuple)) or not all(isinstance(b, BlockGuess)
                                                        for b in blocks):
        raise TypeError(param_error("blocks", where, "a list of BlockGuess",
                                    type(blocks).__name__))
    known = [b for b in blocks if b.block_type != "unknown"]
    if any(b.block_type == "unknown" for b in blocks):
        return _run(trace, latency_model, input_shape, grid, None, where)
    return _run(trace, latency_model, input_shape, grid, known, where)


@validate_params({"model": Instance(nn.Module),
                  "input_shape": Sequence_(Int(1, 1 << 16), min_len=4, max_len=4),
                  "latency_model": Instance(LatencyModel),
                  "level": Options("kernel", "timing"), "repeats": Int(3, 10_000),
                  "num_threads": Int(1, 1024)}, where="deeppeep.deeppeep")
def deeppeep(model: nn.Module, input_shape: Sequence[int], latency_model: LatencyModel, *,
             level: str = "kernel", repeats: int = 30, num_threads: int = 1,
             grid: dict | None = None) -> tuple[list[BlockGuess], Trace]:
    """Both stages end to end: capture a trace, identify the blocks, infer hyper-parameters.

    Returns the blocks and the trace they were read from.
    """
    trace = capture_trace(model, input_shape, repeats=repeats, level=level,
                          num_threads=num_threads)
    blocks = identify_blocks(trace, latency_model, input_shape=input_shape, grid=grid)
    return infer_hyperparameters(trace, blocks, latency_model, input_shape, grid=grid), trace

