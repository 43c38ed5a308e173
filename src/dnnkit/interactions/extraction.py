"""Sparse AND-OR interactions: single-model extraction (Li & Zhang 2023) and the joint
extraction of interactions shared by several models (Chen et al., ICLR 2024, Eq. (6)).

Both objectives are convex and piecewise linear in the split ``gamma`` and the noise ``eps``
(linear programs). ``solver="lp"`` solves the exact LP with scipy's HiGHS on a sparse "lifted"
formulation (every stage of the fast Moebius transform has its own variables: O(n 2**n)
non-zeros; ``n <= 10``); ``solver="adam"`` minimises them with Adam and a cosine-decayed step on
values normalised by ``|v(N) - v(empty)|`` (any n, but it stops tens of percent above the optimum
on games of trained models); ``solver="auto"`` (default) uses the exact LP where it is fast
(n <= ``AUTO_LP_SINGLE`` for one model, n <= ``AUTO_LP_SHARED`` for the joint problem) and Adam
beyond.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from dnnkit.core.validation import (
    AnyOf,
    Int,
    Optional_,
    Options,
    Real,
    Sequence_,
    Tensor,
    check_choice,
    check_int,
    check_interval,
    check_positive,
    param_error,
    validate_params,
)
from dnnkit.interactions.subsets import index_to_subset
from dnnkit.interactions.transforms import (
    _check_values,
    _or_transform,
    merge_singletons,
    moebius,
    moebius_t_,
    or_transform_t_,
    reconstruct,
)

__all__ = [
    "AUTO_LP_SHARED",
    "AUTO_LP_SINGLE",
    "LP_MAX_PLAYERS",
    "InteractionResult",
    "extract_interactions",
    "extract_shared_interactions",
    "shared_objective",
    "single_objective",
]

log = logging.getLogger("dnnkit")

SOLVERS = ("auto", "adam", "lp")
#: Largest n the exact LP solver accepts.
LP_MAX_PLAYERS = 10
#: ``solver="auto"`` uses the exact LP up to this n for one model (about 1.5 CPU-s per sample at
#: n = 10, 0.1-0.5 s at n = 8) ...
AUTO_LP_SINGLE = 10
#: ... and up to this n for the joint problem of m = 2 models (about 0.7 s per sample at n = 8,
#: 17 s at n = 10).
AUTO_LP_SHARED = 8


@dataclass(frozen=True)
class InteractionResult:
    """AND-OR interactions of one model on one sample (or a batch of samples).

    All tensors have shape ``(..., 2**n)`` indexed by subset bitmask (bit i <=> player i),
    except ``tau`` and ``objective`` whose shape is the batch shape ``(...)``.

    Attributes
    ----------
    n : int
        Number of players.
    values : torch.Tensor
        The explained outputs ``v(x_T)``.
    i_and, i_or : torch.Tensor
        AND and OR interactions after the ``|S| <= 1`` merge (``i_or`` is 0 there).
    gamma, eps : torch.Tensor
        The split and the noise used (``|eps| <= tau``).
    tau : torch.Tensor
        The noise bound ``tau_ratio * |v(N) - v(empty)|``.
    objective : torch.Tensor
        The minimised objective in units of ``values`` (for a joint extraction the joint
        objective, identical for every model).
    """

    n: int
    values: torch.Tensor
    i_and: torch.Tensor
    i_or: torch.Tensor
    gamma: torch.Tensor
    eps: torch.Tensor
    tau: torch.Tensor
    objective: torch.Tensor

    def reconstruct(self) -> torch.Tensor:
        """``v(x_T) + eps_T`` rebuilt from the interactions (universal matching)."""
        return reconstruct(self.i_and, self.i_or)

    def _single(self, what: str) -> None:
        if self.values.ndim != 1:
            raise ValueError(f"InteractionResult.{what} needs a single sample; this result holds "
                             f"a batch of shape {tuple(self.values.shape[:-1])} (index it first "
                             f"with result_at).")

    def salient(self, rel_threshold: float = 0.05) -> list[tuple[str, frozenset[int], float]]:
        """Interactions with ``|I(S)| > rel_threshold * max |I|`` (max over AND and OR), as
        ``(kind, players, value)`` sorted by decreasing strength; kind is 'and' or 'or'."""
        self._single("salient")
        check_interval(rel_threshold, "rel_threshold", 0.0, 1.0, where="salient")
        both = torch.cat([self.i_and, self.i_or])
        thr = rel_threshold * float(both.abs().max())
        out = []
        for kind, vec in (("and", self.i_and), ("or", self.i_or)):
            for s in torch.nonzero(vec.abs() > thr).flatten().tolist():
                out.append((kind, index_to_subset(s), float(vec[s])))
        out.sort(key=lambda t: -abs(t[2]))
        return out

    def to_dict(self) -> dict[tuple[int, ...], tuple[float, float]]:
        """``{sorted players: (I_and, I_or)}`` for every subset of a single sample."""
        self._single("to_dict")
        a, o = self.i_and.tolist(), self.i_or.tolist()
        return {tuple(sorted(index_to_subset(s))): (a[s], o[s]) for s in range(len(a))}


def result_at(res: InteractionResult, index: int | tuple) -> InteractionResult:
    """The result of one sample (or sub-batch) of a batched :class:`InteractionResult`."""
    return InteractionResult(res.n, res.values[index], res.i_and[index], res.i_or[index],
                             res.gamma[index], res.eps[index], res.tau[index],
                             res.objective[index])


# --- objectives -------------------------------------------------------------------------------
def _single_loss(v: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    half = 0.5 * (v + eps)
    return moebius(half + gamma).abs().sum(-1) + _or_transform(half - gamma).abs().sum(-1)


def _shared_loss(v: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor, alpha: float
                 ) -> torch.Tensor:
    """v, gamma, eps: (m, ..., K). Returns (...)."""
    half = 0.5 * (v + eps)
    return (_shared_value(moebius(half + gamma), alpha)
            + _shared_value(_or_transform(half - gamma), alpha))


def single_objective(values: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor
                     ) -> torch.Tensor:
    r"""The single-model sparsity objective ``sum_S |I_and(S)| + |I_or(S)|`` (before the merge).

    References
    ----------
    Li & Zhang (ICML 2023); Chen et al. (ICLR 2024), the "traditional" baseline of Sec. 3.
    """
    return _single_loss(values, gamma, eps)


def shared_objective(values: Sequence[torch.Tensor], gammas: Sequence[torch.Tensor],
                     eps: Sequence[torch.Tensor], alpha: float = 0.1) -> torch.Tensor:
    r"""The joint objective of Chen et al. (ICLR 2024), Eq. (6), summed over AND and OR:

    .. math:: \sum_{type} \sum_S (1-\alpha) \max_i |I^{(i)}_{type}(S)|
              + \alpha \sum_i |I^{(i)}_{type}(S)|
    """
    return _shared_loss(torch.stack(list(values)), torch.stack(list(gammas)),
                        torch.stack(list(eps)), alpha)


# --- helpers ----------------------------------------------------------------------------------
def _gain(v: torch.Tensor) -> torch.Tensor:
    return (v[..., -1] - v[..., 0]).abs()


def _scale(gain: torch.Tensor, spread: torch.Tensor, where: str) -> torch.Tensor:
    """Normalisation per sample: |v(N) - v(empty)|, or max_T |v(T) - v(empty)| when that is 0."""
    tiny = gain <= 1e-12 * spread
    if bool(tiny.any()):
        log.warning("%s: %d sample(s) have v(N) == v(empty); their noise bound tau is 0 and they "
                    "are normalised by max_T |v(T) - v(empty)| instead.", where, int(tiny.sum()))
    s = torch.where(tiny, spread, gain)
    return torch.where(s > 0, s, torch.ones_like(s))


def _spread(v: torch.Tensor) -> torch.Tensor:
    return (v - v[..., :1]).abs().amax(-1)


class _Adam:
    """Adam (Kingma & Ba 2015) on one tensor with a cosine-decayed step, updated in place."""

    def __init__(self, p: torch.Tensor, lr: float, steps: int,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.p, self.lr, self.steps, self.b1, self.b2, self.eps = p, lr, steps, *betas, eps
        self.m = torch.zeros_like(p)
        self.v = torch.zeros_like(p)
        self.t = 0

    def step(self, grad: torch.Tensor) -> None:
        lr_t = self.lr * 0.5 * (1.0 + math.cos(math.pi * self.t / self.steps))
        self.t += 1
        self.m.mul_(self.b1).add_(grad, alpha=1 - self.b1)
        self.v.mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        denom = (self.v / (1 - self.b2 ** self.t)).sqrt_().add_(self.eps)
        self.p.addcdiv_(self.m, denom, value=-lr_t / (1 - self.b1 ** self.t))


def _keep_best(best: torch.Tensor, best_loss: torch.Tensor, p: torch.Tensor,
               loss: torch.Tensor) -> None:
    """Per sample (dim -2 of p), keep the parameters with the lowest loss so far."""
    better = loss < best_loss
    best_loss.copy_(torch.where(better, loss, best_loss))
    best.copy_(torch.where(better[..., None], p, best))


@torch.no_grad()
def _adam_single(vn: torch.Tensor, taun: torch.Tensor, steps: int, lr: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected Adam on (gamma, eps) for normalised values vn (B, K); exact subgradients.

    The iterate with the lowest objective over the last 20% of the steps is returned."""
    p = torch.zeros((2,) + vn.shape, dtype=vn.dtype, device=vn.device)  # [gamma, eps]
    opt = _Adam(p, lr, steps)
    best = p.clone()
    best_loss = torch.full(vn.shape[:-1], math.inf, dtype=vn.dtype, device=vn.device)
    grad = torch.empty_like(p)
    track_from = int(0.8 * steps)  # the best iterate is kept over the last 20% (small steps)
    for it in range(steps + 1):
        p[1].clamp_(min=-taun, max=taun)
        half = 0.5 * (vn + p[1])
        ia = moebius(half + p[0])
        io = _or_transform(half - p[0])
        if it >= track_from:
            _keep_best(best, best_loss, p, ia.abs().sum(-1) + io.abs().sum(-1))
        if it == steps:
            break
        ga = moebius_t_(ia.sign_())
        go = or_transform_t_(io.sign_())
        torch.sub(ga, go, out=grad[0])
        torch.add(ga, go, out=grad[1]).mul_(0.5)
        opt.step(grad)
    return best[0], best[1].clamp_(min=-taun, max=taun)


def _shared_subgrad(inter: torch.Tensor, alpha: float) -> torch.Tensor:
    """Subgradient of sum_S (1-a) max_i |I_i(S)| + a sum_i |I_i(S)| w.r.t. I (m, B, K).

    The max term's subgradient goes to the first model attaining the max (a loop over the few
    models; torch.argmax over the leading dim is very slow on CPU)."""
    a = inter.abs()
    mx = a.amax(0)
    weight = torch.full_like(inter, alpha)
    taken = torch.zeros_like(mx, dtype=torch.bool)
    for i in range(inter.shape[0]):
        top = (a[i] == mx) & ~taken
        weight[i] += (1.0 - alpha) * top.to(inter.dtype)
        taken |= top
    return weight.mul_(inter.sign())


@torch.no_grad()
def _adam_shared(vn: torch.Tensor, taun: torch.Tensor, bn: torch.Tensor, alpha: float,
                 steps: int, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Projected Adam on (gammabar, gammahat_i, eps_i) for vn (m, B, K)."""
    m = vn.shape[0]
    p = torch.zeros((2 * m + 1,) + vn.shape[1:], dtype=vn.dtype, device=vn.device)
    gbar, ghat, eps = p[0], p[1:m + 1], p[m + 1:]
    opt = _Adam(p, lr, steps)
    best = p.clone()
    best_loss = torch.full(vn.shape[1:-1], math.inf, dtype=vn.dtype, device=vn.device)
    grad = torch.empty_like(p)
    track_from = int(0.8 * steps)  # the best iterate is kept over the last 20% (small steps)
    for it in range(steps + 1):
        eps.clamp_(min=-taun, max=taun)
        ghat.clamp_(min=-bn, max=bn)
        half = 0.5 * (vn + eps)
        gam = gbar + ghat
        ia = moebius(half + gam)
        io = _or_transform(half - gam)
        if it >= track_from:
            _keep_best(best, best_loss, p, _shared_value(ia, alpha) + _shared_value(io, alpha))
        if it == steps:
            break
        ga = moebius_t_(_shared_subgrad(ia, alpha))
        go = or_transform_t_(_shared_subgrad(io, alpha))
        torch.sub(ga, go, out=grad[1:m + 1])
        grad[0] = grad[1:m + 1].sum(0)
        torch.add(ga, go, out=grad[m + 1:]).mul_(0.5)
        opt.step(grad)
    gb, gh, ep = best[0], best[1:m + 1], best[m + 1:]
    return gb, gh.clamp_(min=-bn, max=bn), ep.clamp_(min=-taun, max=taun)


def _shared_value(inter: torch.Tensor, alpha: float) -> torch.Tensor:
    a = inter.abs()
    return (1.0 - alpha) * a.amax(0).sum(-1) + alpha * a.sum(0).sum(-1)


def _check_common(tau_ratio: float, solver: str, steps: int, lr: float, where: str) -> None:
    check_interval(tau_ratio, "tau_ratio", 0.0, 1.0, where=where)
    check_choice(solver, "solver", SOLVERS, where=where)
    check_int(steps, "steps", 1, where=where)
    check_positive(lr, "lr", where=where)


# --- exact LP ---------------------------------------------------------------------------------
class _Butterfly:
    """Builder of the sparse ("lifted") LP: every stage of the fast Moebius transform gets its
    own variables, so each constraint row has at most five non-zeros (O(n 2**n) in all) instead
    of the O(3**n) of the dense 2**n x 2**n maps; HiGHS solves the n = 10 problem in about a
    second instead of tens of seconds.

    Columns are opened with :meth:`block`; a linear expression is a ``{column: coefficient}``
    dict; equality rows ``sum coef * x = rhs`` are collected for ``A_eq``."""

    def __init__(self, n: int) -> None:
        self.n, self.k = n, 1 << n
        self.ncol = 0
        self.rows: list[int] = []
        self.cols: list[int] = []
        self.vals: list[float] = []
        self.nrow = 0
        self.lb: list[float] = []
        self.ub: list[float] = []

    def block(self, size: int, lo: float = -math.inf, hi: float = math.inf) -> int:
        start = self.ncol
        self.ncol += size
        self.lb += [lo] * size
        self.ub += [hi] * size
        return start

    def row(self, terms: dict) -> int:
        for c, a in terms.items():
            if a != 0.0:
                self.rows.append(self.nrow)
                self.cols.append(c)
                self.vals.append(a)
        self.nrow += 1
        return self.nrow - 1

    def moebius(self, expr: list[dict]) -> list[dict]:
        """Expressions of ``M(x)`` for the expressions ``x`` (one per subset): for every bit i
        and every S containing i, a new column y = x[S] - x[S without i] (one row each)."""
        expr = list(expr)
        for i in range(self.n):
            bit = 1 << i
            for s in range(self.k):
                if s & bit:
                    c = self.block(1)
                    t = {c: 1.0}
                    for key, a in expr[s].items():
                        t[key] = t.get(key, 0.0) - a
                    for key, a in expr[s ^ bit].items():
                        t[key] = t.get(key, 0.0) + a
                    self.row(t)
                    expr[s] = {c: 1.0}
        return expr

    def split(self, expr: list[dict]) -> tuple[int, int, list[int]]:
        """Columns p, m >= 0 with ``p - m = expr + const`` (one row per subset; the constants
        are the right-hand sides, filled per sample). Returns (p start, m start, row ids)."""
        p, m = self.block(self.k, 0.0), self.block(self.k, 0.0)
        rows = []
        for s in range(self.k):
            t = {p + s: 1.0, m + s: -1.0}
            for key, a in expr[s].items():
                t[key] = t.get(key, 0.0) - a
            rows.append(self.row(t))
        return p, m, rows

    def interactions(self, gamma: list[dict], eps: list[dict]) -> tuple[tuple, tuple]:
        """Split columns of I_and = M(v/2 + eps/2 + gamma) and I_or = O(v/2 + eps/2 - gamma),
        the v/2 parts left to the right-hand side (see :func:`_lp_rhs`)."""
        k = self.k
        x_and = [{**gamma[s]} for s in range(k)]
        x_or = [{key: -a for key, a in gamma[s].items()} for s in range(k)]
        for s in range(k):
            for key, a in eps[s].items():
                x_and[s][key] = x_and[s].get(key, 0.0) + 0.5 * a
                x_or[s][key] = x_or[s].get(key, 0.0) + 0.5 * a
        ia = self.moebius(x_and)
        # O(f)(S) = -M(f(N \ .))(S) for S != empty, O(f)(empty) = f(empty)
        mo = self.moebius([x_or[k - 1 - s] for s in range(k)])
        io = [x_or[0]] + [{key: -a for key, a in mo[s].items()} for s in range(1, k)]
        return self.split(ia), self.split(io)

    def matrix(self):
        from scipy import sparse

        return sparse.csr_matrix((self.vals, (self.rows, self.cols)),
                                 shape=(self.nrow, self.ncol))


def _lp_rhs(v) -> tuple:
    """Right-hand sides of the AND and OR split rows: M(v/2) and O(v/2)."""
    half = torch.from_numpy(0.5 * v)
    return moebius(half).numpy(), _or_transform(half).numpy()


def _linprog(c, a_eq, b_eq, lb, ub, a_ub=None, b_ub=None, where: str = ""):
    import numpy as np
    from scipy.optimize import linprog

    res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
                  bounds=np.stack([lb, ub], 1), method="highs-ipm")
    if res.status != 0:
        res = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
                      bounds=np.stack([lb, ub], 1), method="highs-ds")
    if res.status != 0:
        raise RuntimeError(f"{where}: the LP solver failed ({res.message}).")
    return res.x


@functools.lru_cache(maxsize=8)
def _single_structure(n: int):
    import numpy as np

    b = _Butterfly(n)
    k = b.k
    g, e = b.block(k), b.block(k)
    (ap, am, ra), (op, om, ro) = b.interactions([{g + s: 1.0} for s in range(k)],
                                                [{e + s: 1.0} for s in range(k)])
    c = np.zeros(b.ncol)
    c[ap:ap + k] = c[am:am + k] = c[op:op + k] = c[om:om + k] = 1.0
    return b.matrix(), np.array(ra), np.array(ro), b.nrow, np.array(b.lb), np.array(b.ub), c, g, e


def _lp_single(v, tau: float, n: int):
    """Exact optimum for one normalised sample (sparse lifted LP, scipy HiGHS interior point);
    returns (gamma, eps) as float64 numpy."""
    import numpy as np

    a, ra, ro, nrow, lb, ub, c, g, e = _single_structure(n)
    k = 1 << n
    rhs = np.zeros(nrow)
    rhs[ra], rhs[ro] = _lp_rhs(v)
    lb, ub = lb.copy(), ub.copy()
    lb[e:e + k], ub[e:e + k] = -tau, tau
    x = _linprog(c, a, rhs, lb, ub, where="extract_interactions")
    return x[g:g + k], np.clip(x[e:e + k], -tau, tau)


@functools.lru_cache(maxsize=8)
def _shared_structure(n: int, m: int):
    import numpy as np
    from scipy import sparse

    b = _Butterfly(n)
    k = b.k
    gbar = b.block(k)
    ghat = [b.block(k) for _ in range(m)]
    eps = [b.block(k) for _ in range(m)]
    splits = [b.interactions([{gbar + s: 1.0, ghat[i] + s: 1.0} for s in range(k)],
                             [{eps[i] + s: 1.0} for s in range(k)]) for i in range(m)]
    u_and, u_or = b.block(k, 0.0), b.block(k, 0.0)
    c = np.zeros(b.ncol)
    ub_rows, ub_cols, ub_vals = [], [], []
    for i, ((ap, am, _), (op, om, _)) in enumerate(splits):
        for p_, m_, u in ((ap, am, u_and), (op, om, u_or)):
            c[p_:p_ + k] = c[m_:m_ + k] = 0.0
            c[p_:p_ + k] += 1.0
            c[m_:m_ + k] += 1.0
            for s in range(k):   # |I_i(S)| = p + m <= u(S)
                r = len(ub_rows) // 3
                ub_rows += [r, r, r]
                ub_cols += [p_ + s, m_ + s, u + s]
                ub_vals += [1.0, 1.0, -1.0]
    a_ub = sparse.csr_matrix((ub_vals, (ub_rows, ub_cols)), shape=(2 * m * k, b.ncol))
    ra = [np.array(sp[0][2]) for sp in splits]
    ro = [np.array(sp[1][2]) for sp in splits]
    return (b.matrix(), a_ub, ra, ro, b.nrow, np.array(b.lb), np.array(b.ub), c, gbar, ghat, eps,
            u_and, u_or)


def _lp_shared(vs, taus, bounds_, alpha: float, n: int):
    """Exact joint optimum for one normalised sample; vs (m, K). Returns gamma (m,K), eps (m,K).

    Objective alpha sum_i (|I_i|) + (1 - alpha) u with |I_i(S)| <= u(S), on the sparse lifted
    LP (see :class:`_Butterfly`)."""
    import numpy as np

    m, k = vs.shape
    (a, a_ub, ra, ro, nrow, lb, ub, c, gbar, ghat, eps, u_and, u_or) = _shared_structure(n, m)
    c = alpha * c
    c[u_and:u_and + k] = c[u_or:u_or + k] = 1.0 - alpha
    rhs = np.zeros(nrow)
    lb, ub = lb.copy(), ub.copy()
    for i in range(m):
        rhs[ra[i]], rhs[ro[i]] = _lp_rhs(vs[i])
        lb[ghat[i]:ghat[i] + k], ub[ghat[i]:ghat[i] + k] = -bounds_[i], bounds_[i]
        lb[eps[i]:eps[i] + k], ub[eps[i]:eps[i] + k] = -taus[i], taus[i]
    x = _linprog(c, a, rhs, lb, ub, a_ub=a_ub, b_ub=np.zeros(a_ub.shape[0]),
                 where="extract_shared_interactions")
    g0 = x[gbar:gbar + k]
    gam = np.stack([g0 + np.clip(x[ghat[i]:ghat[i] + k], -bounds_[i], bounds_[i])
                    for i in range(m)])
    ep = np.stack([np.clip(x[eps[i]:eps[i] + k], -taus[i], taus[i]) for i in range(m)])
    return gam, ep


# --- public extraction ------------------------------------------------------------------------
_EXTRACT = {"tau_ratio": Real(0.0, 1.0), "solver": Options("auto", "adam", "lp"),
            "steps": Int(1, 10_000_000), "lr": Real(0.0, 100.0, closed="right")}


@validate_params({"values": Tensor(), **_EXTRACT})
def extract_interactions(
    values: torch.Tensor,
    *,
    tau_ratio: float = 0.02,
    solver: Literal["auto", "adam", "lp"] = "auto",
    steps: int = 3000,
    lr: float = 0.05,
) -> InteractionResult:
    r"""Sparsest AND-OR interactions of one model ("traditional" extraction, Li & Zhang 2023).

    Solves

    .. math:: \min_{\gamma, \epsilon} \sum_{S \subseteq N} |I_{and}(S)| + |I_{or}(S)|
              \quad \text{s.t.} \; |\epsilon_T| \le \tau = \text{tau\_ratio} \cdot
              |v(x_N) - v(x_\emptyset)|

    independently for every sample of the batch.

    Parameters
    ----------
    values : torch.Tensor, shape (2**n,) or (B, 2**n)
        ``v(x_T)`` from :func:`masked_outputs` (one row per sample).
    tau_ratio : float in [0, 1]
        Noise bound relative to ``|v(N) - v(empty)|`` (paper: 0.02).
    solver : {'auto', 'adam', 'lp'}
        ``'lp'``: exact linear program (scipy HiGHS interior point on the sparse lifted
        formulation, n <= 10); ``'adam'``: Adam with cosine-decayed learning rate on values
        normalised by ``|v(N) - v(empty)|`` (fast for large batches, but on games of trained
        models it stops 10-150 % above the optimum); ``'auto'``: the LP for n <=
        ``AUTO_LP_SINGLE`` (10), Adam beyond.
    steps, lr : int, float
        Adam iterations and initial learning rate (ignored by the LP).

    Returns
    -------
    InteractionResult
        Batched like ``values``; interactions after the ``|S| <= 1`` merge.

    Raises
    ------
    ValueError
        Bad ``values`` (length not 2**n, n > 20, non-finite), ``tau_ratio`` outside [0, 1],
        unknown solver, or ``solver='lp'`` with n > 10.

    Notes
    -----
    A degenerate sample with ``v(N) == v(empty)`` gets ``tau = 0`` and is normalised by
    ``max_T |v(T) - v(empty)|`` (a warning is logged); a constant ``v`` gives all-zero
    interactions except ``I_and(empty) = v(empty)``.

    References
    ----------
    Li & Zhang, "Does a neural network really encode symbolic concepts?", ICML 2023;
    Chen et al., ICLR 2024, Sec. 3.1 (the traditional extraction used as baseline).

    Examples
    --------
    >>> import torch
    >>> v = torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64)  # "either player"
    >>> res = extract_interactions(v, tau_ratio=0.0, steps=500)
    >>> round(float(res.i_or[3]), 3), round(float(res.i_and.abs().sum()), 3)
    (1.0, 0.0)
    """
    where = "extract_interactions"
    values = _check_values(values, "values", where)
    _check_common(tau_ratio, solver, steps, lr, where)
    n = values.shape[-1].bit_length() - 1
    if solver == "auto":
        solver = "lp" if n <= AUTO_LP_SINGLE else "adam"
    batch = values.shape[:-1]
    v = values.reshape(-1, values.shape[-1])
    gain = _gain(v)
    s = _scale(gain, _spread(v), where)
    vn = v / s[:, None]
    taun = (tau_ratio * gain / s)[:, None]
    if solver == "lp":
        if n > LP_MAX_PLAYERS:
            raise ValueError(param_error("solver", where, f"'adam' for n > {LP_MAX_PLAYERS} "
                                         f"players (the LP is too large)", solver))
        gs, es = [], []
        for b in range(v.shape[0]):
            g, e = _lp_single(vn[b].detach().cpu().double().numpy(), float(taun[b]), n)
            gs.append(torch.from_numpy(g))
            es.append(torch.from_numpy(e))
        gamma_n = torch.stack(gs).to(v)
        eps_n = torch.stack(es).to(v)
    else:
        gamma_n, eps_n = _adam_single(vn.detach(), taun, steps, lr)
    gamma = gamma_n * s[:, None]
    tau = (tau_ratio * gain)[:, None]
    eps = torch.maximum(torch.minimum(eps_n * s[:, None], tau), -tau)  # exact bound after scaling
    i_and, i_or = merge_singletons(moebius(0.5 * (v + eps) + gamma),
                                   _or_transform(0.5 * (v + eps) - gamma))
    obj = _single_loss(v, gamma, eps)
    shape = batch + (v.shape[-1],)
    return InteractionResult(n, values, i_and.reshape(shape), i_or.reshape(shape),
                             gamma.reshape(shape), eps.reshape(shape),
                             (tau_ratio * gain).reshape(batch), obj.reshape(batch))


@validate_params({"values": Sequence_(Tensor()), "alpha": Real(0.0, 1.0),
                  "specific_bound": Optional_(AnyOf(Real(0.0, None), Sequence_(Real(0.0, None)))),
                  **_EXTRACT})
def extract_shared_interactions(
    values: Sequence[torch.Tensor],
    *,
    alpha: float = 0.1,
    tau_ratio: float = 0.02,
    specific_bound: float | Sequence[float] | None = None,
    solver: Literal["auto", "adam", "lp"] = "auto",
    steps: int = 3000,
    lr: float = 0.05,
) -> list[InteractionResult]:
    r"""Interactions shared by several models on the same samples (Chen et al., ICLR 2024).

    Each model's split is ``gamma^(i) = gammabar + gammahat^(i)`` with a shared, unbounded
    ``gammabar`` and a model-specific ``|gammahat^(i)| <= B_i``; the noise of model i satisfies
    ``|eps^(i)| <= tau_i``. Minimises Eq. (6):

    .. math:: \sum_{type \in \{and, or\}} \sum_S (1-\alpha) \max_i |I^{(i)}_{type}(S)|
              + \alpha \sum_i |I^{(i)}_{type}(S)|

    so a pattern salient in one model costs little to keep salient in the others.

    Parameters
    ----------
    values : sequence of m >= 1 tensors, each (2**n,) or (B, 2**n)
        ``v^(i)(x_T)`` of each model on the same samples and players. With one model the
        problem is exactly :func:`extract_interactions` (the shared split is unbounded and Eq. (6)
        reduces to the L1 norm), and that function's result is returned in a list.
    alpha : float in [0, 1]
        Weight of the plain L1 term (paper: 0.1). With ``alpha=1`` the models are coupled only
        through ``gammabar``.
    tau_ratio : float in [0, 1]
        ``tau_i = tau_ratio * |v^(i)(N) - v^(i)(empty)|``.
    specific_bound : float, sequence of m floats, or None
        ``B_i`` in units of the values (the paper uses 0.5 x the dataset mean of
        ``v^(i)(N) - v^(i)(empty)``); ``None`` gives ``0.5 * |v^(i)(N) - v^(i)(empty)|`` per
        sample.
    solver, steps, lr
        As in :func:`extract_interactions`, except that ``'auto'`` uses the exact LP only for
        n <= ``AUTO_LP_SHARED`` (8; the joint LP takes ~17 s per sample at n = 10). All models are normalised by one common scale per
        sample (the mean of their ``|v(N) - v(empty)|``), so the minimiser is that of the raw
        objective.

    Returns
    -------
    list of InteractionResult
        One per model (``gamma`` = that model's total split; ``objective`` = the joint one).

    Raises
    ------
    ValueError
        No model, models with different n or sample counts, ``alpha`` outside
        [0, 1], ``tau_ratio`` outside [0, 1], a negative ``specific_bound`` or one of the
        wrong length.

    References
    ----------
    Chen, Lou, Huang & Zhang, "Defining and Extracting Generalizable Interaction Primitives
    from DNNs", ICLR 2024 (arXiv:2401.16318), Sec. 3.2, Eq. (6).

    Examples
    --------
    >>> import torch
    >>> v1 = torch.tensor([0.0, 1.0, 1.0, 2.0], dtype=torch.float64)
    >>> res = extract_shared_interactions([v1, 2 * v1], steps=300)
    >>> len(res), res[0].i_and.shape
    (2, torch.Size([4]))
    """
    where = "extract_shared_interactions"
    if isinstance(values, torch.Tensor) or not isinstance(values, Sequence):
        raise TypeError(param_error("values", where, "a list of tensors, one per model",
                                    type(values).__name__))
    if len(values) < 1:
        raise ValueError(param_error("values", where, "a list of at least 1 model's values",
                                     "an empty list"))
    if len(values) == 1:
        # Eq. (6) with m = 1 is (1 - alpha) |I| + alpha |I| = |I| with an unbounded split: the
        # single-model extraction, exactly (a sweep over the number of models starts here).
        check_interval(alpha, "alpha", 0.0, 1.0, where=where)
        if specific_bound is not None and not isinstance(specific_bound, (int, float)):
            if not isinstance(specific_bound, Sequence) or len(specific_bound) != 1:
                raise ValueError(param_error("specific_bound", where, "None, a float or 1 float",
                                             specific_bound))
        return [extract_interactions(values[0], tau_ratio=tau_ratio, solver=solver, steps=steps,
                                     lr=lr)]
    vals = [_check_values(v, f"values[{i}]", where) for i, v in enumerate(values)]
    for i, v in enumerate(vals[1:], 1):
        if v.shape != vals[0].shape:
            raise ValueError(f"{where}: model {i} has values of shape {tuple(v.shape)} but model 0 "
                             f"has {tuple(vals[0].shape)}; every model must be explained on the "
                             f"same samples with the same n players.")
    check_interval(alpha, "alpha", 0.0, 1.0, where=where)
    _check_common(tau_ratio, solver, steps, lr, where)
    m = len(vals)
    n = vals[0].shape[-1].bit_length() - 1
    if solver == "auto":
        solver = "lp" if n <= AUTO_LP_SHARED else "adam"
    batch = vals[0].shape[:-1]
    ref = vals[0]
    v = torch.stack([x.reshape(-1, x.shape[-1]).to(ref) for x in vals])  # (m, B, K)
    gain = _gain(v)                                                       # (m, B)
    if specific_bound is None:
        bound = 0.5 * gain
    else:
        if isinstance(specific_bound, (int, float)) and not isinstance(specific_bound, bool):
            sb = [specific_bound] * m
        elif isinstance(specific_bound, Sequence) and len(specific_bound) == m:
            sb = list(specific_bound)
        else:
            raise ValueError(param_error("specific_bound", where, f"None, a float or {m} floats",
                                         specific_bound))
        sb = [check_interval(b, "specific_bound", 0.0, None, where=where) for b in sb]
        bound = torch.tensor(sb, dtype=v.dtype, device=v.device)[:, None].expand_as(gain)
    s = _scale(gain.mean(0), _spread(v).mean(0), where)                 # (B,) common scale
    vn = v / s[None, :, None]
    taun = (tau_ratio * gain / s)[..., None]
    bn = (bound / s)[..., None]
    if solver == "lp":
        if n > LP_MAX_PLAYERS:
            raise ValueError(param_error("solver", where, f"'adam' for n > {LP_MAX_PLAYERS} "
                                         f"players (the LP is too large)", solver))
        gs, es = [], []
        for b in range(v.shape[1]):
            g, e = _lp_shared(vn[:, b].detach().cpu().double().numpy(),
                              taun[:, b, 0].tolist(), bn[:, b, 0].tolist(), alpha, n)
            gs.append(torch.from_numpy(g))
            es.append(torch.from_numpy(e))
        gamma_n = torch.stack(gs, 1).to(v)
        eps_n = torch.stack(es, 1).to(v)
    else:
        gb, gh, eps_n = _adam_shared(vn.detach(), taun, bn, alpha, steps, lr)
        gamma_n = gb.unsqueeze(0) + gh
    gamma = gamma_n * s[None, :, None]
    tau = (tau_ratio * gain)[..., None]
    eps = torch.maximum(torch.minimum(eps_n * s[None, :, None], tau), -tau)
    obj = _shared_loss(v, gamma, eps, alpha)
    shape = batch + (v.shape[-1],)
    out = []
    for i in range(m):
        i_and, i_or = merge_singletons(moebius(0.5 * (v[i] + eps[i]) + gamma[i]),
                                       _or_transform(0.5 * (v[i] + eps[i]) - gamma[i]))
        out.append(InteractionResult(n, vals[i], i_and.reshape(shape), i_or.reshape(shape),
                                     gamma[i].reshape(shape), eps[i].reshape(shape),
                                     (tau_ratio * gain[i]).reshape(batch), obj.reshape(batch)))
    return out
