"""Calibration of model parameters to quoted prices: through a differentiable pricer
(surrogate-in-the-loop, box-constrained, multi-start) or with an inverse network.

References
----------
Karatas, Oskoui, Hirsa (2019), arXiv:1902.05810: calibration with the trained network.
Spec section 2.5: route (A) ``theta* = argmin_{theta in box} sum_j w_j (f(theta, c_j) - p_j)^2``
with ``theta = low + (high - low) sigmoid(z)``; route (B) an inverse map from a price grid to
parameters (Horvath, Muguruza, Tomas 2021, "Deep learning volatility", section 3 discuss both).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import expit, logit
from torch import nn

from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    AnyOf,
    Callable_,
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Seed,
    Str,
    Tensor,
    check_choice,
    check_int,
    check_memory,
    check_tensor,
    param_error,
    validate_params,
)
from dnnkit.options.data import Box, Quotes
from dnnkit.options.fused import fused_value_and_jacobian
from dnnkit.options.processes import check_contracts

__all__ = [
    "CalibrationResult",
    "InverseCalibrator",
    "calibrate",
    "reprice_rmse",
    "surrogate_price_fn",
]


@dataclass
class CalibrationResult:
    """Best parameters found, their names, the repricing RMSE under the pricer that was used,
    the number of pricer evaluations, wall time and whether the best start converged."""

    params: torch.Tensor
    names: tuple[str, ...]
    rmse: float
    n_evals: int
    wall_s: float
    converged: bool
    starts: list | None = None
    reference_rmse: float | None = None

    def as_dict(self) -> dict:
        return {"params": dict(zip(self.names, (float(v) for v in self.params))),
                "rmse": self.rmse, "n_evals": self.n_evals, "wall_s": self.wall_s,
                "converged": self.converged, "reference_rmse": self.reference_rmse}


def reprice_rmse(reference, params: torch.Tensor, quotes: Quotes) -> float:
    """RMSE of ``quotes.prices`` repriced at ``params (p,)`` by a reference pricer: a model
    name for :func:`~dnnkit.options.pricers.price_european` or a row-wise callable."""
    from dnnkit.options.pricers import price_european

    c = quotes.contracts
    P = torch.as_tensor(params, dtype=torch.float64).reshape(1, -1).expand(c.shape[0], -1)
    with torch.no_grad():
        out = (price_european(reference, P, c, quotes.option) if isinstance(reference, str)
               else reference(P, c))
    return float(torch.sqrt(torch.mean((out.to(torch.float64) - quotes.prices) ** 2)))


def surrogate_price_fn(net) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Row-wise ``price_fn(params (n, p), contracts (n, 4)) -> (n,)`` from a SurrogatePricer
    (no box warnings: the calibration keeps the parameters inside the box by construction)."""

    def f(params: torch.Tensor, contracts: torch.Tensor) -> torch.Tensor:
        return net(torch.cat([params.to(contracts.dtype), contracts], -1))   # follows the input

    return f


@validate_params({"price_fn": Callable_(), "quotes": Instance(Quotes),
                  "box": Optional_(Instance(Box)),
                  "method": Options("lm", "lbfgs", "adam", "nelder-mead"),
                  "n_starts": Int(1, 100_000), "max_iter": Int(1, 10_000_000),
                  "tol": Real(0.0, 1.0), "seed": Seed(),
                  "race": Optional_(Real(1.0, None, closed="neither"))})
def calibrate(price_fn, quotes: Quotes, box: Box | None = None, *, method: str = "lm",
              n_starts: int = 8, max_iter: int = 200, tol: float = 1e-10, seed=0,
              reference=None, race: float | None = 10.0) -> CalibrationResult:
    """Calibrate parameters to quotes (spec 2.5, route A), box-constrained and multi-start.

    Minimises ``sum_j w_j (f(theta, c_j) - p_j)^2`` over ``theta = low + (high - low)
    sigmoid(z)`` from ``n_starts`` scrambled-Sobol starting points and returns the best. All
    starts are solved together: one batched pricer call per iteration prices every start, and
    the Jacobian comes from a single backward pass (the pricer is row-wise).

    Parameters
    ----------
    price_fn : callable or SurrogatePricer
        Row-wise pricer ``f(params (N, p), contracts (N, 4)) -> (N,)`` (prices per unit strike),
        differentiable in ``params`` for ``lm``/``lbfgs``/``adam``: a :class:`SurrogatePricer`
        (wrapped with :func:`surrogate_price_fn`, its contract features checked against its box)
        or e.g. ``lambda p, c: price_european("heston", p, c)``.
    quotes : Quotes
    box : Box, optional
        Parameter box; default: the first ``p`` features of the surrogate's box.
    method : {"lm", "lbfgs", "adam", "nelder-mead"}
        ``lm``: Levenberg-Marquardt with per-start damping; ``lbfgs``: strong-Wolfe L-BFGS on
        the separable sum over starts; ``nelder-mead`` (scipy, per start) needs no gradients.
    n_starts, max_iter : int
    tol : float
        Relative decrease of the objective below which a start counts as converged.
    seed : int
    reference : str or callable, optional
        Reference pricer (model name or row-wise callable) that reprices the best parameters;
        its RMSE is returned as ``reference_rmse`` (the meaningful error of a surrogate fit).
    race : float or None
        Multi-start racing (``lm`` only): once a start has converged with cost ``c*``, starts
        whose cost is above ``race * c*`` are stopped at once (a worse basin, or crawling along
        a bound) and the others get 3 more iterations to converge or beat it; stopped starts
        keep their last cost in ``starts`` and count as not converged. ``None`` runs every start
        to its own convergence (the classical multi-start; on the benchmark market it returns
        the same parameters with ~2.5x more pricer passes).

    Returns
    -------
    CalibrationResult
        ``rmse`` is the unweighted repricing RMSE under ``price_fn``; ``n_evals`` counts batched
        pricer calls.

    Raises
    ------
    ValueError
        Fewer quotes than parameters, an unknown method, quotes outside the surrogate's box.
    """
    from dnnkit.options.surrogate import SurrogatePricer

    check_choice(method, "method", ("lm", "lbfgs", "adam", "nelder-mead"), where="calibrate")
    check_int(n_starts, "n_starts", 1, where="calibrate")
    check_int(max_iter, "max_iter", 1, where="calibrate")
    if not isinstance(quotes, Quotes):
        raise TypeError(param_error("quotes", "calibrate", "a Quotes", type(quotes).__name__))
    fused, on_numpy = None, False
    if isinstance(price_fn, SurrogatePricer):
        net = price_fn
        p_dim = net.feature_box.dim - 4
        fb = net.feature_box
        if box is None:     # the surrogate's own parameter box (no Box built: it is valid)
            box = _ParamBox(fb.names[:p_dim], fb.low[:p_dim], fb.high[:p_dim])
        qc = quotes.contracts
        if bool(((qc < fb.low[p_dim:].to(qc)) | (qc > fb.high[p_dim:].to(qc))).any()):
            bad = Box(fb.names[p_dim:], fb.low[p_dim:], fb.high[p_dim:]).violations(qc)
            raise ValueError("calibrate: quotes lie outside the surrogate's training box: "
                             + "; ".join(bad) + ".")
        price_fn = surrogate_price_fn(net)
        if method == "lm" and box.names == net.feature_box.names[:p_dim]:
            on_numpy = (quotes.contracts.device.type == "cpu"
                        and all(t.device.type == "cpu" for t in net.parameters()))
            fused = fused_value_and_jacobian(net, p_dim, quotes.contracts, raw=True,
                                             backend="numpy" if on_numpy else "torch")
    if not isinstance(box, (Box, _ParamBox)):
        raise TypeError(param_error("box", "calibrate", "a Box of model parameters", box))
    n, p = quotes.contracts.shape[0], box.dim
    if n < p:
        raise ValueError(param_error("quotes", "calibrate", f"at least {p} quotes (one per "
                                     "parameter)", f"{n} quotes"))
    c, y = quotes.contracts, quotes.prices
    w = quotes.weights if quotes.weights is not None else torch.ones_like(y)
    sw = torch.sqrt(w / w.sum() * n)
    lo, hi = box.low.to(c), box.high.to(c)
    S = n_starts
    evals = [0]

    def theta_of(z):
        return lo + (hi - lo) * torch.sigmoid(z)

    def rows(zr):                       # per-row z (s n, p) -> weighted residuals (s n,)
        evals[0] += 1
        k = zr.shape[0] // n
        return sw.repeat(k) * (price_fn(theta_of(zr), c.repeat(k, 1)) - y.repeat(k))

    def resid(z):                       # z (s, p) -> residuals (s, n)
        return rows(z.repeat_interleave(n, 0)).reshape(z.shape[0], n)

    u = _sobol_starts(p, S, int(torch.randint(0, 2**31 - 1, (1,),
                                              generator=make_generator(seed))))
    z = torch.from_numpy(logit(0.05 + 0.9 * u))
    t0 = time.perf_counter()
    cost = None
    if method == "lm":
        # the LM bookkeeping (p x p systems, damping, stopping) runs in numpy on tiny arrays;
        # the pricer's pass is the only torch work per iteration
        if fused is not None:
            jac_np = _fused_problem(fused, on_numpy, lo, hi, sw, y, evals)
            resid_np = None
            # the cost is resolved only to the surrogate's float precision
            noise = 10 * torch.finfo(next(net.parameters()).dtype).eps
        else:
            def jac_np(zn):
                r, J = _jacobian(rows, torch.as_tensor(zn, device=c.device), n)
                return r.cpu().numpy(), J.cpu().numpy()

            def resid_np(zn):
                with torch.no_grad():
                    return resid(torch.as_tensor(zn, device=c.device)).cpu().numpy()
            noise = 0.0
        zn, conv, cost = _levenberg_marquardt(jac_np, resid_np, z.numpy(), max_iter, tol,
                                              noise=noise, race=race,
                                              jac_at_trial=fused is not None)
        z, conv, cost = (torch.as_tensor(zn, device=c.device), torch.from_numpy(conv),
                         torch.from_numpy(cost))
    elif method == "lbfgs":
        z.requires_grad_(True)
        opt = torch.optim.LBFGS([z], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                                tolerance_change=1e-14, line_search_fn="strong_wolfe",
                                history_size=20)

        def closure():
            opt.zero_grad()
            loss = torch.sum(resid(z) ** 2)
            loss.backward()
            return loss

        opt.step(closure)
        z = z.detach()
        state = opt.state[opt.param_groups[0]["params"][0]]
        conv = torch.full((S,), state.get("n_iter", max_iter) < max_iter)
    elif method == "adam":
        z.requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.05)
        prev = torch.full((S,), math.inf, dtype=torch.float64)
        conv = torch.zeros(S, dtype=torch.bool)
        for _ in range(max_iter * 5):
            opt.zero_grad()
            cost = torch.sum(resid(z) ** 2, 1)
            cost.sum().backward()
            opt.step()
            conv = (prev - cost.detach()).abs() < tol * cost.detach().clamp(min=1e-300)
            if bool(conv.all()):
                break
            prev = cost.detach()
        z = z.detach()
    else:
        z, conv = _nelder_mead(resid, z, max_iter, tol)
    if cost is None:
        with torch.no_grad():
            cost = torch.sum(resid(z) ** 2, 1)
    k = int(torch.argmin(cost))
    with torch.no_grad():
        theta = theta_of(z[k:k + 1])
        if fused is not None:
            t3 = theta[:, None, :].cpu().numpy()
            fit = (fused(t3, False)[0][0] if on_numpy
                   else fused(torch.from_numpy(t3), False)[0][0].cpu().numpy())
            fit = torch.as_tensor(fit, device=c.device)
        else:
            fit = price_fn(theta.expand(n, -1), c)
        rmse = float(torch.sqrt(torch.mean((fit - y) ** 2)))
    wall = time.perf_counter() - t0
    ref = reprice_rmse(reference, theta[0].detach(), quotes) if reference is not None else None
    return CalibrationResult(theta[0].detach(), box.names, rmse, evals[0], wall, bool(conv[k]),
                             starts=cost.tolist(), reference_rmse=ref)


@dataclass(frozen=True)
class _ParamBox:
    """The parameter part of a surrogate's feature box (names, float64 bounds)."""

    names: tuple[str, ...]
    low: torch.Tensor
    high: torch.Tensor

    @property
    def dim(self) -> int:
        return len(self.names)


@functools.lru_cache(maxsize=64)
def _sobol_starts(p: int, n: int, seed: int) -> np.ndarray:
    """``n`` scrambled-Sobol points in ``[0, 1)^p`` (float64, read-only; cached: a pure
    function of its arguments, and scrambling costs more than a small calibration pass)."""
    u = torch.quasirandom.SobolEngine(p, scramble=True, seed=seed).draw(
        n, dtype=torch.float64).numpy()
    u.flags.writeable = False
    return u


def _jacobian(rows, z, n):
    """Residuals ``(S, n)`` and Jacobian ``(S, n, p)`` in one backward pass: each priced row
    depends only on its own parameter row, so per-row leaf copies give the per-row gradients."""
    S, p = z.shape
    zr = z.detach().repeat_interleave(n, 0).requires_grad_(True)       # (S n, p)
    r = rows(zr)
    (g,) = torch.autograd.grad(r.sum(), zr)
    return r.detach().reshape(S, n), g.reshape(S, n, p)


_RACE_PATIENCE = 3   # LM iterations the other starts get once one start has converged


def _fused_problem(fused, on_numpy, lo, hi, sw, y, evals):
    """``z (k, p) -> (residuals (k, n), Jacobian in z (k, n, p))`` in numpy float64 from one
    fused surrogate pass pricing the ``k`` parameter sets at every quote."""
    lo_n, span_n = lo.cpu().numpy(), (hi - lo).cpu().numpy()
    sw_n, y_n = sw.cpu().numpy(), y.cpu().numpy()
    sw_col = sw_n[:, None]

    def jac(z):
        evals[0] += 1
        sg = expit(z)
        theta = (lo_n + span_n * sg)[:, None, :]
        if on_numpy:
            price, J = fused(theta, True)
        else:
            price, J = (t.cpu().numpy() for t in fused(torch.from_numpy(theta), True))
        r = sw_n * (price - y_n)
        J *= sw_col
        J *= (span_n * sg * (1 - sg))[:, None, :]                          # d theta / d z
        return r, J

    return jac


def _levenberg_marquardt(jac, resid, z, max_iter, tol, xtol=1e-9, noise=0.0,
                         jac_at_trial=False, race=None):
    """Batched Levenberg-Marquardt over the starts (rows of ``z``, numpy float64) with
    Marquardt scaling and Nielsen's damping update (gain ratio of actual to predicted decrease).

    ``jac(z) -> (r (k, n), J (k, n, p))`` and ``resid(z) -> r`` work on numpy arrays. A start
    stops when an accepted step changes the cost by at most ``tol`` relative (actual and
    predicted), when the Gauss-Newton model predicts a decrease below the pricer's ``noise``
    (relative cost resolution, e.g. float32 surrogates: nothing left to gain), when its step is
    below ``xtol`` relative to ``z``, or when its damping explodes. Stopped starts leave the
    batch, so later iterations price only the starts still moving. With ``jac_at_trial`` (cheap
    Jacobians, e.g. the fused surrogate pass) the trial point is evaluated with its Jacobian in
    one call, so an accepted step needs no second call. Returns ``z``, the converged flags and
    each start's final cost (``sum r^2`` at its returned ``z``).
    """
    S, p = z.shape
    z = np.array(z, dtype=np.float64)
    lam = np.full(S, 1e-3)
    nu = np.full(S, 2.0)
    conv = np.zeros(S, dtype=bool)
    final = np.empty(S)
    act = np.arange(S)
    best_done, since = math.inf, 0
    r, J = jac(z)
    cost = np.einsum("kn,kn->k", r, r)
    with np.errstate(all="ignore"):
        for _ in range(max_iter):
            Jt = J.transpose(0, 2, 1)
            A = Jt @ J
            g = (Jt @ r[:, :, None])[:, :, 0]
            la = lam[act]
            M = A.copy()
            M.reshape(len(M), -1)[:, ::p + 1] += la[:, None] * np.maximum(
                A.reshape(len(A), -1)[:, ::p + 1], 1e-12)
            step = np.linalg.solve(M, -g[:, :, None])[:, :, 0]
            pred = -(2 * (g * step).sum(1) + (step * (A @ step[:, :, None])[:, :, 0]).sum(1))
            za = z[act]
            # stopped before pricing the trial point: the model predicts a decrease below the
            # pricer's resolution (the start takes that last Gauss-Newton step unpriced), or
            # the step is negligible
            flat = (pred <= noise * cost) & (pred > 0)
            pre = flat | (pred <= 0) | (
                (step * step).sum(1) <= (xtol * (np.sqrt((za * za).sum(1)) + xtol)) ** 2)
            if flat.any():
                z[act[flat]] = za[flat] + step[flat]
            stop = pre.copy()
            if race is not None:
                if pre.any():
                    best_done = min(best_done, float(cost[pre].min()))
                if best_done < math.inf:     # racing: stop starts far above a converged one
                    stop |= cost > race * best_done
                    since += 1
                    if since > _RACE_PATIENCE:   # and crawlers that have not converged since
                        stop[:] = True
            if stop.any():
                conv[act[pre]] = True
                final[act[stop]] = cost[stop]
                go = ~stop
                if not go.any():
                    return z, conv, final
                act, r, J, cost, A, g, la, step, pred, za = (
                    t[go] for t in (act, r, J, cost, A, g, la, step, pred, za))
            zt = za + step
            if jac_at_trial:
                rc, Jc = jac(zt)
            else:
                rc, Jc = resid(zt), None
            cc = np.einsum("kn,kn->k", rc, rc)
            actual = cost - cc
            better = actual > 0
            rho = actual / np.maximum(pred, 1e-300)
            # Nielsen (1999): shrink lam by up to 3x on good steps, double the growth on bad ones
            lam[act] = np.where(better, la * np.maximum(1 - (2 * rho - 1) ** 3, 1 / 3),
                                la * nu[act])
            nu[act] = np.where(better, 2.0, nu[act] * 2)
            small_f = better & (actual <= tol * cost) & (pred <= tol * cost)
            stuck = lam[act] > 1e16
            z[act] = np.where(better[:, None], zt, za)
            cur = np.where(better, cc, cost)
            final[act] = cur
            done = small_f | stuck | (cc <= 1e-30)
            conv[act] = done & ~stuck
            if race is not None and (done & ~stuck).any():
                best_done = min(best_done, float(cur[done & ~stuck].min()))
            keep = ~done
            if not keep.any():
                return z, conv, final
            upd = better & keep
            if upd.any():
                if Jc is not None:
                    ru, Ju = rc[upd], Jc[upd]
                else:           # recompute residuals and Jacobian only where the step was taken
                    ru, Ju = jac(z[act[upd]])
                r[upd], J[upd], cost[upd] = ru, Ju, np.einsum("kn,kn->k", ru, ru)
            act, r, J, cost = act[keep], r[keep], J[keep], cost[keep]
    final[act] = cost
    return z, conv, final


def _nelder_mead(resid, z, max_iter, tol):
    import numpy as np
    from scipy.optimize import minimize

    out, conv = [], []
    for k in range(z.shape[0]):
        def f(x):
            with torch.no_grad():
                r = resid(torch.as_tensor(x, dtype=z.dtype).unsqueeze(0))
            return float((r * r).sum())

        res = minimize(f, z[k].numpy(), method="Nelder-Mead",
                       options={"maxiter": max_iter * 20, "xatol": 1e-8, "fatol": tol})
        out.append(torch.as_tensor(np.asarray(res.x), dtype=z.dtype))
        conv.append(bool(res.success))
    return torch.stack(out), torch.tensor(conv)


_PRICER = AnyOf(Str(), Callable_())


@validate_params({"grid_contracts": Tensor(ndim=2), "param_box": Instance(Box),
                  "depth": Int(1, 1_000), "width": Int(1, 1_000_000)})
class InverseCalibrator(nn.Module):
    """Inverse map from prices on a fixed contract grid to model parameters (spec 2.5, route B).

    ``predict(prices (b, g)) -> params (b, p)``; the output layer is a ``tanh`` mapped onto the
    parameter box, so predictions always lie in the box.

    Parameters
    ----------
    grid_contracts : Tensor, shape (g, 4)
        The fixed quotes grid ``[K/S, tau, r, q]`` (e.g. 9 strikes x 5 maturities).
    param_box : Box
        Parameter box that training surfaces are drawn from.
    depth, width : int
    """

    def __init__(self, grid_contracts, param_box: Box, *, depth: int = 4, width: int = 128):
        super().__init__()
        c = check_contracts(grid_contracts, where="InverseCalibrator")
        if not isinstance(param_box, Box):
            raise TypeError(param_error("param_box", "InverseCalibrator", "a Box", param_box))
        check_int(depth, "depth", 1, where="InverseCalibrator")
        check_int(width, "width", 1, where="InverseCalibrator")
        check_memory(8.0 * depth * (width + 1) * (width + c.shape[0]), "width",
                     "options.InverseCalibrator")
        self.param_box = param_box
        self.register_buffer("grid", c)
        layers: list[nn.Module] = []
        prev = c.shape[0]
        for _ in range(depth):
            layers += [nn.Linear(prev, width), nn.ELU()]
            prev = width
        layers += [nn.Linear(prev, param_box.dim), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.register_buffer("x_mean", torch.zeros(c.shape[0], dtype=torch.float64))
        self.register_buffer("x_std", torch.ones(c.shape[0], dtype=torch.float64))

    @validate_params({"pricer": _PRICER, "params": Tensor(ndim=2)})
    def surfaces(self, pricer, params: torch.Tensor) -> torch.Tensor:
        """Price the grid for each row of ``params (b, p)`` -> ``(b, g)`` with ``pricer``
        (a model name for :func:`price_european`, or ``f(params (n, p), contracts (n, 4))``)."""
        from dnnkit.options.pricers import price_european

        b, g = params.shape[0], self.grid.shape[0]
        P = params.repeat_interleave(g, 0)
        C = self.grid.repeat(b, 1)
        with torch.no_grad():
            out = price_european(pricer, P, C) if isinstance(pricer, str) else pricer(P, C)
        return out.reshape(b, g).to(torch.float64)

    @validate_params({"pricer": _PRICER, "n_surfaces": Int(2, 100_000_000),
                      "epochs": Int(1, 10_000_000), "time_budget_s": Real(0.0, 1e7, closed="right"),
                      "lr": Real(0.0, 10.0, closed="right"), "batch_size": Int(1, 100_000_000),
                      "seed": Seed()})
    def fit(self, pricer, n_surfaces: int, *, epochs: int = 2000, time_budget_s: float = 30.0,
            lr: float = 2e-3, batch_size: int = 256, seed=0, surfaces=None) -> dict:
        """Draw ``n_surfaces`` parameter sets from the box, price the grid, and train the map
        (MSE on box-scaled parameters, learning rate decayed to 1 % over the budget).
        Pass ``surfaces=(params, prices)`` to reuse labelled surfaces."""
        check_int(n_surfaces, "n_surfaces", 2, where="InverseCalibrator.fit")
        gen = make_generator(seed)
        if surfaces is None:
            params = self.param_box.sample(n_surfaces, "sobol", gen)
            prices = self.surfaces(pricer, params)
        else:
            params, prices = surfaces
        ok = torch.isfinite(prices).all(1)
        params, prices = params[ok], prices[ok]
        self.x_mean.copy_(prices.mean(0))
        self.x_std.copy_(prices.std(0).clamp(min=1e-12))
        Xn = ((prices - self.x_mean) / self.x_std).float()
        Yn = self.param_box.to_unit(params).float().clamp(-0.999, 0.999)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        t0 = time.perf_counter()
        hist = {"loss": []}
        n = Xn.shape[0]
        for ep in range(epochs):
            frac = (time.perf_counter() - t0) / time_budget_s
            for g in opt.param_groups:
                g["lr"] = lr * 0.01 ** min(1.0, frac)
            perm = torch.randperm(n, generator=gen)
            tot = 0.0
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                opt.zero_grad(set_to_none=True)
                loss = torch.mean((self.net(Xn[idx]) - Yn[idx]) ** 2)
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * idx.numel()
            hist["loss"].append(tot / n)
            if time.perf_counter() - t0 >= time_budget_s:
                break
        hist["epochs"] = len(hist["loss"])
        hist["seconds"] = time.perf_counter() - t0
        hist["n_surfaces"] = int(n)
        return hist

    @validate_params({"prices": Tensor(ndim=2)})
    def forward(self, prices: torch.Tensor) -> torch.Tensor:
        if prices.shape[1] != self.grid.shape[0]:
            raise ValueError(param_error("prices", "options.InverseCalibrator.forward",
                                         f"{self.grid.shape[0]} prices per surface (the grid)",
                                         f"shape {tuple(prices.shape)}"))
        xn = ((prices.to(self.x_mean) - self.x_mean) / self.x_std).to(self.net[0].weight.dtype)
        u = self.net(xn).to(torch.float64)
        lo, hi = self.param_box.low.to(u), self.param_box.high.to(u)
        return lo + (hi - lo) * (u + 1) / 2

    @validate_params({"quotes": Instance(Quotes)})
    def calibrate(self, quotes: Quotes, reference=None) -> CalibrationResult:
        """One forward pass on quotes laid out on this calibrator's grid; with ``reference``
        (model name or row-wise pricer) the result carries the repricing RMSE."""
        if not isinstance(quotes, Quotes):
            raise TypeError(param_error("quotes", "InverseCalibrator.calibrate", "a Quotes",
                                        type(quotes).__name__))
        if quotes.contracts.shape != self.grid.shape or not torch.allclose(
                quotes.contracts, self.grid.to(quotes.contracts)):
            raise ValueError(param_error("quotes", "InverseCalibrator.calibrate",
                                         "quotes on the calibrator's contract grid",
                                         f"{quotes.contracts.shape[0]} other contracts"))
        t0 = time.perf_counter()
        theta = self.predict(quotes.prices)[0]
        wall = time.perf_counter() - t0
        ref = reprice_rmse(reference, theta, quotes) if reference is not None else None
        return CalibrationResult(theta, self.param_box.names, float("nan") if ref is None else ref,
                                 1, wall, True, reference_rmse=ref)

    @validate_params({"prices": Tensor(ndim=(1, 2))})
    def predict(self, prices) -> torch.Tensor:
        """Parameters ``(b, p)`` for price surfaces ``(b, g)`` (or one surface ``(g,)``)."""
        x = check_tensor(prices, "prices", ndim=(1, 2), where="InverseCalibrator.predict")
        x = x.unsqueeze(0) if x.ndim == 1 else x
        if x.shape[1] != self.grid.shape[0]:
            raise ValueError(param_error("prices", "InverseCalibrator.predict",
                                         f"{self.grid.shape[0]} prices per surface (the grid)",
                                         f"shape {tuple(x.shape)}"))
        with torch.no_grad():
            return self(x.to(torch.float64))
