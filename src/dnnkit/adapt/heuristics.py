"""AdaPT's precision-switching heuristics as pure functions (Kummer et al., section 3).

- :func:`histogram_divergence` — the information-loss test of push-down: a divergence between the
  normalised histograms of ``w`` and ``Q(w)`` (``res`` bins over ``[min w, max w]``).
- :func:`push_down` — the smallest ``<WL, FL>`` (FL first, then WL, by bisection) whose stochastic
  quantization loses no information.
- :func:`gradient_diversity` and :func:`push_up` — more fractional bits when the (normalised)
  gradients of the last ``lookback`` steps point in diverse directions.
- :func:`adapt_lookback`, :func:`adapt_resolution`, :func:`next_strategy` — the bookkeeping rules.

All follow the official implementation (``lorenz0890/AdaPT``, ``optimizers/msgd_fp.py``) except
where the docstring says "corrected"; ``official_bisection=True`` / ``kind="official"`` restore
the official behaviour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from dnnkit.adapt.fixed_point import FixedPointFormat, _check_fmt, _check_x, _quantize
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Tensor,
    check_choice,
    check_int,
    check_interval,
    param_error,
    validate_params,
)

__all__ = [
    "histogram_divergence",
    "gradient_diversity",
    "push_down",
    "push_up",
    "adapt_lookback",
    "adapt_resolution",
    "next_strategy",
    "STRATEGIES",
    "DIVERGENCES",
]

STRATEGIES = ("min", "mean", "max")
DIVERGENCES = ("kl", "official")
Divergence = Literal["kl", "official"]
Strategy = Literal["min", "mean", "max"]


def _histc(x: torch.Tensor, bins: int, lo: float, hi: float, inside: bool = False
           ) -> torch.Tensor:
    """``torch.histc(x, bins, lo, hi)`` for a float64 ``x``, about 3x faster on CPU.

    The same arithmetic as histc's linear-interpolation kernel: bin
    ``trunc((x - lo) * bins / (hi - lo))``, the right edge in the last bin, values outside
    ``[lo, hi]`` dropped (a test holds it to ``torch.histc`` on edge values). ``inside``: the
    caller guarantees ``lo <= x <= hi``.
    """
    if not inside:
        keep = (x >= lo) & (x <= hi)
        if not bool(keep.all()):
            x = x[keep]
    idx = x.sub(lo).mul_(float(bins)).div_(hi - lo).to(torch.int64).clamp_(max=bins - 1)
    return torch.bincount(idx, minlength=bins).to(x.dtype)


def _histograms(w: torch.Tensor, w_hat: torch.Tensor, bins: int, clip_outside: bool
                ) -> tuple[torch.Tensor, torch.Tensor] | None:
    w = w.detach().reshape(-1).to(torch.float64)
    w_hat = w_hat.detach().reshape(-1).to(torch.float64)
    lo, hi = float(w.min()), float(w.max())
    if not hi > lo:
        return None                                    # constant tensor: nothing to lose
    if clip_outside:
        w_hat = w_hat.clamp(lo, hi)
    p = _histc(w, bins, lo, hi)
    q = _histc(w_hat, bins, lo, hi)                    # values outside [lo, hi] are dropped
    p = p / p.sum()
    s = q.sum()
    q = q / s if s > 0 else q
    return p, q


def _divergence(p: torch.Tensor, q: torch.Tensor, kind: str) -> float:
    # histograms have only `bins` entries: numpy on the host is ~10x cheaper than torch ops
    p = p.detach().cpu().numpy().astype(np.float64, copy=False)
    q = q.detach().cpu().numpy().astype(np.float64, copy=False)
    if kind == "kl":
        pos = p > 0
        if bool((pos & (q == 0)).any()):
            return math.inf
        pp, qq = p[pos], q[pos]
        return max(float(np.sum(pp * np.log(pp / qq))), 0.0)
    # official: KLDivLoss(reduction="batchmean", log_target=True)(P, Q) on probabilities
    return float(np.sum(np.exp(q) * (q - p)) / p.size)


@validate_params({"w": Tensor(dtype="floating"), "w_hat": Tensor(dtype="floating"),
                  "bins": Int(1, 100_000), "kind": Options(*DIVERGENCES)})
def histogram_divergence(w: torch.Tensor, w_hat: torch.Tensor, bins: int, *,
                         kind: Divergence = "kl", clip_outside: bool = True) -> float:
    """Divergence between the histograms of ``w`` and its quantized copy ``w_hat``.

    Both histograms use ``bins`` equal bins over ``[min w, max w]`` and are normalised to sum 1.

    Parameters
    ----------
    w, w_hat : Tensor
        Same number of elements, real floating dtype.
    bins : int
        Histogram resolution (``res`` in the paper), ``1..100000``.
    kind : {"kl", "official"}
        ``"kl"`` (default): ``KL(P || Q) = sum_b P_b ln(P_b / Q_b)`` (``+inf`` when a bin with
        ``P_b > 0`` is empty in ``Q``). ``"official"``: what the official code computes,
        ``torch.nn.KLDivLoss(reduction="batchmean", log_target=True)(P, Q)`` on *probabilities*,
        ``sum_b e^{Q_b} (Q_b - P_b) / bins`` — zero when ``P = Q`` but possibly negative.
    clip_outside : bool
        Count values of ``w_hat`` outside ``[min w, max w]`` (stochastic rounding can step out by
        one grid point) in the edge bins (default). ``False``: drop them, as ``torch.histc`` in
        the official code does.

    Returns
    -------
    float
        ``0.0`` for a constant ``w`` (empty histogram range: no information to lose).

    Examples
    --------
    >>> w = torch.linspace(-1, 1, 101)
    >>> histogram_divergence(w, w.clone(), 10)
    0.0
    """
    where = "adapt.histogram_divergence"
    _check_x(w, where)
    if not isinstance(w_hat, torch.Tensor) or not w_hat.is_floating_point():
        raise TypeError(param_error("w_hat", where, "a real floating-point tensor",
                                    getattr(w_hat, "dtype", type(w_hat).__name__)))
    if w.numel() == 0:
        raise ValueError(param_error("w", where, "a non-empty tensor", "an empty tensor"))
    if w_hat.numel() != w.numel():
        raise ValueError(param_error("w_hat", where, f"a tensor with {w.numel()} elements",
                                     f"{w_hat.numel()} elements"))
    check_int(bins, "bins", 1, 100_000, where=where)
    check_choice(kind, "kind", DIVERGENCES, where=where)
    for name, t in (("w", w), ("w_hat", w_hat)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(param_error(name, where, "finite (no NaN or inf)",
                                         "non-finite entries"))
    h = _histograms(w, w_hat, bins, clip_outside)
    return 0.0 if h is None else _divergence(*h, kind)


def gradient_diversity(grads: Sequence[torch.Tensor]) -> float:
    """Gradient diversity ``sum_j ||g_j|| / ||sum_j g_j||`` (>= 1 by the triangle inequality).

    ``inf`` when the gradients cancel exactly; ``1.0`` when all of them are zero.

    Examples
    --------
    >>> round(gradient_diversity([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]), 6)
    1.414214
    """
    where = "adapt.gradient_diversity"
    if isinstance(grads, torch.Tensor) or not isinstance(grads, Sequence) or len(grads) == 0:
        raise TypeError(param_error("grads", where, "a non-empty sequence of tensors",
                                    type(grads).__name__))
    shape = None
    for g in grads:
        _check_x(g, where)
        if shape is not None and g.shape != shape:
            raise ValueError(param_error("grads", where, "tensors of one shape",
                                         f"shapes {shape} and {tuple(g.shape)}"))
        shape = g.shape
    gs = [g.detach().to(torch.float64) for g in grads]
    norms = float(sum(g.norm() for g in gs))
    total = float(torch.stack(gs).sum(0).norm())
    return _diversity(norms, total)


def _diversity(sum_of_norms: float, norm_of_sum: float) -> float:
    if sum_of_norms == 0.0:
        return 1.0
    return sum_of_norms / norm_of_sum if norm_of_sum > 0 else math.inf


def _bisect_first_ok(lo: int, hi: int, ok) -> int:
    """Smallest v in [lo, hi] with ok(v), assuming monotone; hi when none below hi is ok."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def _bisect_official(lo: int, hi: int, lossy_at) -> int:
    """The official loop: returns the lower bound (``lossy_at(lo, mid)`` picks the test point)."""
    for _ in range(hi - lo):
        mid = math.ceil((hi + lo) / 2)
        if lossy_at(lo, mid):
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1:
            break
    return lo


def _push_down(w: torch.Tensor, fmt: FixedPointFormat, resolution: int, fl_floor: int,
               tol: float, kind: str, official_bisection: bool,
               generator) -> FixedPointFormat:
    w = w.detach()
    # the histogram of w is the same for every candidate format: compute it once
    w64 = w.reshape(-1).to(torch.float64)
    lo, hi = float(w64.min()), float(w64.max())
    if not hi > lo:                                    # constant tensor: nothing to lose
        p_hist = None
    else:
        p_hist = _histc(w64, resolution, lo, hi, inside=True)
        p_hist = p_hist / p_hist.sum()

    def lossy(wl: int, fl: int) -> bool:
        if p_hist is None:
            return False
        q = _quantize(w, FixedPointFormat(wl, fl, fmt.symmetric), "stochastic", generator)
        q = q.reshape(-1).to(torch.float64)
        if not official_bisection:
            q = q.clamp_(lo, hi)
        qh = _histc(q, resolution, lo, hi, inside=not official_bisection)
        s = qh.sum()
        qh = qh / s if s > 0 else qh
        return _divergence(p_hist, qh, kind) > tol

    if official_bisection:
        fl = _bisect_official(fl_floor, fmt.fl, lambda lo, mid: lossy(fmt.wl, lo))
        wl = _bisect_official(fl, fmt.wl, lambda lo, mid: lossy(mid, fl))
        return FixedPointFormat(max(1, min(wl, 32)), min(fl, 32), fmt.symmetric)
    fl = fmt.fl if fl_floor >= fmt.fl else _bisect_first_ok(
        fl_floor, fmt.fl, lambda f: not lossy(fmt.wl, f))
    wl_lo = max(fl, 1)
    wl = fmt.wl if wl_lo >= fmt.wl else _bisect_first_ok(wl_lo, fmt.wl,
                                                        lambda v: not lossy(v, fl))
    return FixedPointFormat(wl, fl, fmt.symmetric)


@validate_params({"w": Tensor(dtype="floating", finite=False),
                  "fmt": Instance(FixedPointFormat),
                  "resolution": Int(1, 100_000), "fl_floor": Int(0, 32),
                  "tol": Real(0.0, None), "kind": Options(*DIVERGENCES),
                  "generator": Optional_(Instance(torch.Generator))})
def push_down(w: torch.Tensor, fmt: FixedPointFormat, resolution: int, *, fl_floor: int = 4,
              tol: float = 0.0, kind: Divergence = "kl", official_bisection: bool = False,
              generator: torch.Generator | None = None) -> FixedPointFormat:
    """PushDown: the lowest precision whose quantization of ``w`` loses no information.

    "No loss" at ``<WL, FL>`` means ``D(hist(w), hist(Q^stoch_<WL,FL>(w))) <= tol``
    (:func:`histogram_divergence`, ``resolution`` bins). Corrected algorithm (default):
    (a) bisection for the smallest ``FL`` in ``[fl_floor, fmt.fl]`` with no loss at
    ``WL = fmt.wl``; (b) bisection for the smallest ``WL`` in ``[max(FL, 1), fmt.wl]`` with no
    loss at that ``FL``. A lossy upper end keeps the current value: push-down never raises
    precision.

    Parameters
    ----------
    w : Tensor
        The (float master) weights of one layer.
    fmt : FixedPointFormat
        The layer's current format.
    resolution : int
        Number of histogram bins.
    fl_floor : int
        Smallest fractional length (4 in the official code).
    tol : float
        Divergence tolerated as "no loss" (0 in the paper).
    kind : {"kl", "official"}
        Divergence, see :func:`histogram_divergence`.
    official_bisection : bool
        Reproduce the official search: the FL loop tests the *lower bound* instead of the
        midpoint, the WL loop returns the last *lossy* WL, values outside the histogram range are
        dropped (spec section 3, quirks).
    generator : torch.Generator, optional
        Draws of the stochastic rounding used in the test.

    Returns
    -------
    FixedPointFormat
    """
    where = "adapt.push_down"
    _check_x(w, where)
    _check_fmt(fmt, where)
    if w.numel() == 0:
        raise ValueError(param_error("w", where, "a non-empty tensor", "an empty tensor"))
    if not bool(torch.isfinite(w).all()):
        raise FloatingPointError(param_error("w", where, "finite (no NaN or inf)",
                                             "non-finite entries"))
    check_int(resolution, "resolution", 1, 100_000, where=where)
    check_int(fl_floor, "fl_floor", 0, 32, where=where)
    check_interval(tol, "tol", 0.0, None, where=where)
    check_choice(kind, "kind", DIVERGENCES, where=where)
    return _push_down(w, fmt, resolution, fl_floor, float(tol), kind, bool(official_bisection),
                      generator)


def _push_up(fmt: FixedPointFormat, gd: float, strategy: str, buffer: int) -> FixedPointFormat:
    wl, fl, s = fmt.wl, fmt.fl, 1
    if 0 < gd < math.inf:
        ell = math.log(gd) - 1.0
        if ell > 0:
            e2 = ell * ell
            s1 = max(math.ceil(1.0 / e2), s) if e2 > 1e-18 else 2**31
            s2 = max(min(math.ceil(32 * e2), 32) - fl, 0)
            s = {"min": min(s1, s2), "mean": math.ceil(0.5 * (s1 + s2)),
                 "max": max(s1, s2)}[strategy]
    fl = min(fl + s, 32)
    wl = min(max(wl, fl) + 1, 32)
    fl = min(fl, 32 - buffer)
    wl = max(min(fl + buffer, 32), wl)
    return FixedPointFormat(wl, fl, fmt.symmetric)


@validate_params({"fmt": Instance(FixedPointFormat),
                  "grad_diversity": Real(0.0, None, allow_inf=True),
                  "strategy": Options(*STRATEGIES), "results_buffer": Int(0, 31)})
def push_up(fmt: FixedPointFormat, grad_diversity: float, *, strategy: Strategy = "min",
            results_buffer: int = 4) -> FixedPointFormat:
    """PushUp: add fractional bits when the gradient diversity is high.

    With ``l = ln(GD) - 1`` and ``s = 1``; if ``0 < GD < inf`` and ``l > 0``:
    ``s1 = max(ceil(1 / l^2), 1)``, ``s2 = max(min(ceil(32 l^2), 32) - FL, 0)`` and ``s`` is
    ``min(s1, s2)``, ``ceil((s1 + s2) / 2)`` or ``max(s1, s2)`` for the strategy. Then
    ``FL <- min(FL + s, 32)``, ``WL <- min(max(WL, FL) + 1, 32)``, and the results buffer ``B``
    (integer head-room bits) gives ``FL <- min(FL, 32 - B)``, ``WL <- max(min(FL + B, 32), WL)``.

    Examples
    --------
    >>> push_up(FixedPointFormat(8, 4), 1.0, results_buffer=4)   # GD = 1: one more bit
    FixedPointFormat(wl=9, fl=5, symmetric=False)
    """
    where = "adapt.push_up"
    _check_fmt(fmt, where)
    if isinstance(grad_diversity, bool) or not isinstance(grad_diversity, (int, float)):
        raise TypeError(param_error("grad_diversity", where, "a real number", grad_diversity))
    if math.isnan(grad_diversity) or grad_diversity < 0:
        raise ValueError(param_error("grad_diversity", where, "a float in [0, inf]",
                                     grad_diversity))
    check_choice(strategy, "strategy", STRATEGIES, where=where)
    check_int(results_buffer, "results_buffer", 0, 31, where=where)
    return _push_up(fmt, float(grad_diversity), strategy, results_buffer)


def adapt_lookback(lookback: int, grad_diversity: float, *, lookback_range: tuple[int, int],
                   momentum: float) -> int:
    """New lookback: ``ceil(mu * ceil(clip(lb_max / GD, lb_min, lb_max)) + (1 - mu) * lb)``.

    Diverse (noisy) gradients shorten the window; ``GD <= 0`` gives ``lb_max``.
    """
    lb_min, lb_max = lookback_range
    if grad_diversity > 0:
        new = math.ceil(min(max(lb_max / grad_diversity, lb_min), lb_max))
    else:
        new = lb_max
    return math.ceil(momentum * new + (1.0 - momentum) * lookback)


def adapt_resolution(resolution: int, lookback: int, *, lookback_range: tuple[int, int],
                     resolution_range: tuple[int, int]) -> int:
    """Histogram resolution +1 at the longest lookback, -1 at the shortest, clipped."""
    res = resolution
    if lookback == lookback_range[1]:
        res += 1
    if lookback == lookback_range[0]:
        res -= 1
    return int(min(max(res, resolution_range[0]), resolution_range[1]))


def next_strategy(strategy: Strategy, mean_loss: float, loss: float) -> str:
    """Push-up strategy switch: no improvement (``mean_loss <= |loss|``) escalates
    ``min -> mean -> max``; an improvement resets to ``min``."""
    if mean_loss > abs(loss):
        return "min"
    return {"min": "mean", "mean": "max", "max": "max"}[strategy]
