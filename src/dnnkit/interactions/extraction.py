"""Sparse AND-OR interactions: single-model extraction (Li & Zhang 2023) and the joint
extraction of interactions shared by several models (Chen et al., ICLR 2024, Eq. (6)).

Both objectives are convex and piecewise linear in the split ``gamma`` and the noise ``eps``
(linear programs). ``solver="adam"`` minimises them with Adam and a cosine-decayed step on values
normalised by ``|v(N) - v(empty)|`` (so one learning rate fits every model and output scale);
``solver="lp"`` solves the exact LP with scipy's HiGHS (``n <= 10``).
"""

from __future__ import annotations

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
    "LP_MAX_PLAYERS",
    "InteractionResult",
    "extract_interactions",
    "extract_shared_interactions",
    "shared_objective",
    "single_objective",
]

log = logging.getLogger("dnnkit")

SOLVERS = ("adam", "lp")
#: Largest n the exact LP solver accepts (the LP has O(4**n) non-zeros in the worst case).
LP_MAX_PLAYERS = 10


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
def _dense_maps(n: int):
    import numpy as np
    from scipy import sparse

    eye = torch.eye(1 << n, dtype=torch.float64)
    a = moebius(eye).T.numpy()          # I_and = A @ v
    o = _or_transform(eye).T.numpy()    # I_or = O @ v
    clean = lambda m: sparse.csr_matrix(np.where(np.abs(m) > 0.25, m, 0.0))
    return clean(a), clean(o)


def _lp_single(v, tau: float, n: int):
    """Exact optimum for one normalised sample; returns (gamma, eps) as float64 numpy."""
    import numpy as np
    from scipy import sparse
    from scipy.optimize import linprog

    k = 1 << n
    a, o = _dense_maps(n)
    eye = sparse.identity(k, format="csr")
    z = sparse.csr_matrix((k, k))
    av, ov = a @ v * 0.5, o @ v * 0.5
    # x = [gamma, eps, t_and, t_or]
    a_ub = sparse.bmat([[a, 0.5 * a, -eye, z], [-a, -0.5 * a, -eye, z],
                        [-o, 0.5 * o, z, -eye], [o, -0.5 * o, z, -eye]], format="csr")
    b_ub = np.concatenate([-av, av, -ov, ov])
    c = np.concatenate([np.zeros(2 * k), np.ones(2 * k)])
    bounds = [(None, None)] * k + [(-tau, tau)] * k + [(0, None)] * (2 * k)
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"extract_interactions: the LP solver failed ({res.message}).")
    return res.x[:k], np.clip(res.x[k:2 * k], -tau, tau)


def _lp_shared(vs, taus, bounds_, alpha: float, n: int):
    """Exact joint optimum for one normalised sample; vs (m, K). Returns gamma (m,K), eps (m,K)."""
    import numpy as np
    from scipy import sparse
    from scipy.optimize import linprog

    m, k = vs.shape
    a, o = _dense_maps(n)
    eye = sparse.identity(k, format="csr")
    # blocks: gbar | ghat_1..m | eps_1..m | t_and_1..m | t_or_1..m | u_and | u_or
    nvar = k * (1 + 4 * m + 2)
    col = {"gbar": 0}
    for i in range(m):
        col[("ghat", i)] = k * (1 + i)
        col[("eps", i)] = k * (1 + m + i)
        col[("tand", i)] = k * (1 + 2 * m + i)
        col[("tor", i)] = k * (1 + 3 * m + i)
    col["uand"], col["uor"] = k * (1 + 4 * m), k * (2 + 4 * m)
    rows, rhs = [], []

    def row(blocks: dict) -> sparse.csr_matrix:
        parts = [sparse.csr_matrix((k, k))] * (nvar // k)
        parts = list(parts)
        for key, mat in blocks.items():
            parts[col[key] // k] = mat
        return sparse.hstack(parts, format="csr")

    for i in range(m):
        for mat, sg, t, u in ((a, 1.0, ("tand", i), "uand"), (o, -1.0, ("tor", i), "uor")):
            const = 0.5 * (mat @ vs[i])
            for s in (1.0, -1.0):  # s * I - t <= 0
                rows.append(row({"gbar": s * sg * mat, ("ghat", i): s * sg * mat,
                                 ("eps", i): 0.5 * s * mat, t: -eye}))
                rhs.append(-s * const)
            rows.append(row({t: eye, u: -eye}))  # t_i <= u
            rhs.append(np.zeros(k))
    c = np.zeros(nvar)
    c[col[("tand", 0)]:col["uand"]] = alpha
    c[col["uand"]:] = 1.0 - alpha
    bnds = [(None, None)] * k
    bnds += [b for i in range(m) for b in [(-bounds_[i], bounds_[i])] * k]
    bnds += [b for i in range(m) for b in [(-taus[i], taus[i])] * k]
    bnds += [(0, None)] * (k * (2 * m + 2))
    res = linprog(c, A_ub=sparse.vstack(rows, format="csr"), b_ub=np.concatenate(rhs),
                  bounds=bnds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"extract_shared_interactions: the LP solver failed ({res.message}).")
    x = res.x
    gbar = x[:k]
    gam = np.stack([gbar + np.clip(x[col[("ghat", i)]:col[("ghat", i)] + k], -bounds_[i],
                                   bounds_[i]) for i in range(m)])
    eps = np.stack([np.clip(x[col[("eps", i)]:col[("eps", i)] + k], -taus[i], taus[i])
                    for i in range(m)])
    return gam, eps


# --- public extraction ------------------------------------------------------------------------
_EXTRACT = {"tau_ratio": Real(0.0, 1.0), "solver": Options("adam", "lp"),
            "steps": Int(1, 10_000_000), "lr": Real(0.0, 100.0, closed="right")}


@validate_params({"values": Tensor(), **_EXTRACT})
def extract_interactions(
    values: torch.Tensor,
    *,
    tau_ratio: float = 0.02,
    solver: Literal["adam", "lp"] = "adam",
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
    solver : {'adam', 'lp'}
        ``'adam'``: Adam with cosine-decayed learning rate on values normalised by
        ``|v(N) - v(empty)|``; ``'lp'``: exact linear program (scipy HiGHS, n <= 10).
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
    solver: Literal["adam", "lp"] = "adam",
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
        As in :func:`extract_interactions`. All models are normalised by one common scale per
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
