"""Exotic options: the Black-Scholes barrier closed form and seeded Monte Carlo for barrier and
arithmetic Asian options under BS, Heston and VG.

Prices are per unit strike, contracts ``[K/S, tau, r, q]``; barrier levels are given relative to
the spot (``h = B / S``). Monte Carlo returns ``(price, standard_error)``; a seed is required so
labels are reproducible.

References
----------
Reiner & Rubinstein (1991), "Breaking down the barriers", Risk 4(8); formulas as in Haug (2007),
"The Complete Guide to Option Pricing Formulas", section 4.17.1 (terms A-D).
Broadie, Glasserman, Kou (1997), Math. Finance 7(4), eq. (2.1): continuity correction
``B exp(+/- 0.5826 sigma sqrt(dt))``.
Kemna & Vorst (1990), J. Banking Finance 14: geometric average as control variate.
"""

from __future__ import annotations

import logging
import math

import torch

from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import check_choice, check_int, param_error
from dnnkit.options.processes import check_contracts, check_params, get_model

__all__ = ["barrier_price", "geometric_asian_price", "mc_asian", "mc_barrier"]

log = logging.getLogger("dnnkit")

_BARRIERS = ("up-out", "down-out", "up-in", "down-in")
_BGK = 0.5825971579390106   # -zeta(1/2) / sqrt(2 pi)


def _N(x):
    return torch.special.ndtr(x)


def _breached(h: torch.Tensor, barrier_type: str) -> torch.Tensor:
    return h >= 1.0 if barrier_type.startswith("down") else h <= 1.0


def barrier_price(sigma, contracts, barrier, barrier_type: str = "up-out",
                  option: str = "call", *, strict: bool = False) -> torch.Tensor:
    """Continuously monitored single-barrier option under Black-Scholes, zero rebate.

    Knock-out prices are Haug's combinations of the terms ``A``-``D`` (Reiner-Rubinstein);
    knock-in prices follow from in-out parity (``in = vanilla - out``).

    Parameters
    ----------
    sigma : Tensor, shape (n,)
        Volatility, > 0.
    contracts : Tensor, shape (n, 4)
        ``[K/S, tau, r, q]``.
    barrier : Tensor, shape (n,)
        Barrier over spot ``B / S``.
    barrier_type : {"up-out", "down-out", "up-in", "down-in"}
    option : {"call", "put"}
    strict : bool
        A barrier already breached at ``t = 0`` raises ``ValueError`` when true; otherwise the
        knock-out is worth 0 (knock-in: the vanilla) and a warning is logged.

    Returns
    -------
    Tensor, shape (n,)
        Price per unit strike.
    """
    from dnnkit.options.pricers import bs_price

    check_choice(barrier_type, "barrier_type", _BARRIERS, where="barrier_price")
    check_choice(option, "option", ("call", "put"), where="barrier_price")
    c = check_contracts(contracts, where="barrier_price")
    n = c.shape[0]
    s = check_params("bs", torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1), n,
                     where="barrier_price")[:, 0].expand(n)
    h = torch.as_tensor(barrier, dtype=torch.float64).reshape(-1).expand(n)
    if bool((~torch.isfinite(h)).any()) or bool((h <= 0).any()):
        raise ValueError(param_error("barrier", "barrier_price", "finite and > 0 (B / S)",
                                     h[(~torch.isfinite(h)) | (h <= 0)][:5].tolist()))
    base = barrier_type.split("-")[0] + "-out"
    hit = _breached(h, base)
    if bool(hit.any()):
        msg = (f"{int(hit.sum())} contracts have the barrier already breached at t=0 "
               f"(rows {torch.nonzero(hit).flatten()[:5].tolist()})")
        if strict:
            raise ValueError(msg + "; pass strict=False to price them as knocked out.")
        log.warning("%s: knock-outs priced at 0.", msg)
    m, tau, r, q = c.unbind(1)
    S, X, H = 1.0 / m, torch.ones_like(m), h / m
    b = r - q
    sq = s * torch.sqrt(tau)
    mu = (b - 0.5 * s * s) / (s * s)
    phi = 1.0 if option == "call" else -1.0
    eta = -1.0 if base == "up-out" else 1.0
    dq, dr = torch.exp((b - r) * tau), torch.exp(-r * tau)
    x1 = torch.log(S / X) / sq + (1 + mu) * sq
    x2 = torch.log(S / H) / sq + (1 + mu) * sq
    y1 = torch.log(H * H / (S * X)) / sq + (1 + mu) * sq
    y2 = torch.log(H / S) / sq + (1 + mu) * sq
    hs1, hs0 = (H / S) ** (2 * (mu + 1)), (H / S) ** (2 * mu)
    A = phi * S * dq * _N(phi * x1) - phi * X * dr * _N(phi * x1 - phi * sq)
    B = phi * S * dq * _N(phi * x2) - phi * X * dr * _N(phi * x2 - phi * sq)
    C = phi * S * dq * hs1 * _N(eta * y1) - phi * X * dr * hs0 * _N(eta * y1 - eta * sq)
    D = phi * S * dq * hs1 * _N(eta * y2) - phi * X * dr * hs0 * _N(eta * y2 - eta * sq)
    above = X > H
    zero = torch.zeros_like(A)
    if option == "call" and base == "down-out":
        out = torch.where(above, A - C, B - D)
    elif option == "call":
        out = torch.where(above, zero, A - B + C - D)
    elif base == "down-out":
        out = torch.where(above, A - B + C - D, zero)
    else:
        out = torch.where(above, B - D, A - C)
    out = torch.where(hit, zero, torch.clamp(out, min=0.0))
    if barrier_type.endswith("-in"):
        return bs_price(s, c, option) - out
    return out


def geometric_asian_price(sigma, contracts, n_fix, option: str = "call") -> torch.Tensor:
    """Discrete geometric-average-price option under Black-Scholes (Kemna-Vorst), fixings at
    ``tau i / n_fix``, ``i = 1..n_fix``; price per unit strike.

    ``ln G`` is normal with mean ``ln S + (r - q - s^2/2) tau (n+1)/(2n)`` and variance
    ``s^2 tau (n+1)(2n+1)/(6 n^2)``.
    """
    check_choice(option, "option", ("call", "put"), where="geometric_asian_price")
    c = check_contracts(contracts, where="geometric_asian_price")
    s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(c.shape[0])
    m, tau, r, q = c.unbind(1)
    nf = torch.as_tensor(n_fix, dtype=torch.float64).expand(c.shape[0])
    mean = -torch.log(m) + (r - q - 0.5 * s * s) * tau * (nf + 1) / (2 * nf)
    var = s * s * tau * (nf + 1) * (2 * nf + 1) / (6 * nf * nf)
    sd = torch.sqrt(var)
    d1 = (mean + var) / sd
    d2 = d1 - sd
    fg = torch.exp(mean + 0.5 * var)
    disc = torch.exp(-r * tau)
    if option == "call":
        return disc * (fg * _N(d1) - _N(d2))
    return disc * (_N(-d2) - fg * _N(-d1))


def _simulate(model: str, p: torch.Tensor, r: float, q: float, tau: float, n_steps: int,
              n_paths: int, gen: torch.Generator, antithetic: bool):
    """Yield ``ln(S_t / S_0)`` (shape (n_paths,)) after each of ``n_steps`` equal steps."""
    dt = tau / n_steps
    half = n_paths // 2 if antithetic else n_paths
    x = torch.zeros(n_paths, dtype=torch.float64)

    def normals():
        z = torch.randn(half, generator=gen, dtype=torch.float64)
        return torch.cat([z, -z]) if antithetic else z

    if model == "bs":
        s = float(p[0])
        drift, vol = (r - q - 0.5 * s * s) * dt, s * math.sqrt(dt)
        for _ in range(n_steps):
            x = x + drift + vol * normals()
            yield x
    elif model == "heston":
        v0, kappa, theta, sigma, rho = (float(t) for t in p)
        v = torch.full((n_paths,), v0, dtype=torch.float64)
        sr = math.sqrt(1 - rho * rho)
        for _ in range(n_steps):          # full-truncation Euler (Lord et al. 2010)
            z1, z2 = normals(), normals()
            vp = torch.clamp(v, min=0.0)
            x = x + (r - q - 0.5 * vp) * dt + torch.sqrt(vp * dt) * z1
            v = v + kappa * (theta - vp) * dt + sigma * torch.sqrt(vp * dt) * (rho * z1 + sr * z2)
            yield x
    else:                                  # VG by gamma time change
        sigma, nu, theta = (float(t) for t in p)
        omega = math.log(1 - theta * nu - 0.5 * sigma * sigma * nu) / nu
        conc = torch.full((half,), dt / nu, dtype=torch.float64)
        for _ in range(n_steps):
            g = torch._standard_gamma(conc, generator=gen) * nu
            g = torch.cat([g, g]) if antithetic else g
            x = x + (r - q + omega) * dt + theta * g + sigma * torch.sqrt(g) * normals()
            yield x


def _mc_setup(model, params, contracts, n_paths, steps_per_year, seed, where):
    spec = get_model(model)
    if spec.name not in ("bs", "heston", "vg"):
        raise ValueError(param_error("model", where, "one of ['bs', 'heston', 'vg']", model))
    if seed is None:
        raise ValueError(param_error("seed", where, "an int or torch.Generator (Monte Carlo "
                                     "labels must be reproducible)", None))
    check_int(n_paths, "n_paths", 2, where=where)
    check_int(steps_per_year, "steps_per_year", 1, where=where)
    c = check_contracts(contracts, where=where)
    p = check_params(spec.name, params, c.shape[0], where=where).expand(c.shape[0], -1)
    return spec.name, p, c, make_generator(seed)


def _estimate(payoff: torch.Tensor, antithetic: bool) -> tuple[float, float]:
    if antithetic:                         # pair averages are i.i.d.
        h = payoff.shape[0] // 2
        payoff = 0.5 * (payoff[:h] + payoff[h:2 * h])
    return float(payoff.mean()), float(payoff.std() / math.sqrt(payoff.shape[0]))


def mc_barrier(model: str, params, contracts, barrier, *, barrier_type: str = "up-out",
               option: str = "call", n_paths: int = 50_000, steps_per_year: int = 252,
               antithetic: bool = True, bgk: bool = False, seed=None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo price of a discretely monitored barrier option (zero rebate).

    Parameters
    ----------
    model : {"bs", "heston", "vg"}
        Heston uses full-truncation Euler, VG the gamma time change.
    params : Tensor, shape (n, p) or (1, p)
    contracts : Tensor, shape (n, 4)
    barrier : Tensor, shape (n,)
        ``B / S``.
    barrier_type : {"up-out", "down-out", "up-in", "down-in"}
    n_paths, steps_per_year : int
        Paths per contract and monitoring dates per year (252 = daily).
    antithetic : bool
        Antithetic normals (the standard error uses pair averages).
    bgk : bool
        Shift the barrier by ``exp(+/- 0.5826 sigma sqrt(dt))`` to approximate continuous
        monitoring (BS only, where ``sigma`` is known).
    seed : int or torch.Generator
        Required.

    Returns
    -------
    price, stderr : Tensor, shape (n,)
        Per unit strike.
    """
    check_choice(barrier_type, "barrier_type", _BARRIERS, where="mc_barrier")
    check_choice(option, "option", ("call", "put"), where="mc_barrier")
    name, p, c, gen = _mc_setup(model, params, contracts, n_paths, steps_per_year, seed,
                                "mc_barrier")
    h = torch.as_tensor(barrier, dtype=torch.float64).reshape(-1).expand(c.shape[0])
    if bool((~torch.isfinite(h)).any()) or bool((h <= 0).any()):
        raise ValueError(param_error("barrier", "mc_barrier", "finite and > 0 (B / S)",
                                     h[:5].tolist()))
    if bgk and name != "bs":
        raise ValueError(param_error("bgk", "mc_barrier", "False unless model='bs'", bgk))
    up = barrier_type.startswith("up")
    prices, errs = [], []
    for i in range(c.shape[0]):
        m, tau, r, q = (float(t) for t in c[i])
        n_steps = max(1, round(tau * steps_per_year))
        lh = math.log(float(h[i]))
        if bgk:
            lh += (-_BGK if up else _BGK) * float(p[i, 0]) * math.sqrt(tau / n_steps)
        alive = None
        x = None
        for x in _simulate(name, p[i], r, q, tau, n_steps, n_paths, gen, antithetic):
            hit = x >= lh if up else x <= lh
            alive = ~hit if alive is None else alive & ~hit
        st = torch.exp(x) / m                                    # S_T / K
        pay = torch.clamp(st - 1, min=0) if option == "call" else torch.clamp(1 - st, min=0)
        knocked_in = ~alive
        pay = pay * (alive if barrier_type.endswith("out") else knocked_in)
        est, se = _estimate(math.exp(-r * tau) * pay, antithetic)
        prices.append(est)
        errs.append(se)
    return torch.tensor(prices, dtype=torch.float64), torch.tensor(errs, dtype=torch.float64)


def mc_asian(model: str, params, contracts, *, n_fix: int | None = None, option: str = "call",
             n_paths: int = 50_000, steps_per_year: int = 252, antithetic: bool = True,
             control_variate: bool = True, seed=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo arithmetic-average-price Asian option (fixings at every simulation step, or
    ``n_fix`` equally spaced fixings), per unit strike.

    Under ``bs`` the discrete geometric Asian (closed form, :func:`geometric_asian_price`) is a
    control variate with its optimal coefficient estimated from the same paths; other models use
    plain Monte Carlo.

    Returns
    -------
    price, stderr : Tensor, shape (n,)
    """
    check_choice(option, "option", ("call", "put"), where="mc_asian")
    name, p, c, gen = _mc_setup(model, params, contracts, n_paths, steps_per_year, seed,
                                "mc_asian")
    prices, errs = [], []
    for i in range(c.shape[0]):
        m, tau, r, q = (float(t) for t in c[i])
        nf = n_fix if n_fix is not None else max(1, round(tau * steps_per_year))
        check_int(nf, "n_fix", 1, where="mc_asian")
        s_arith = torch.zeros(n_paths, dtype=torch.float64)
        s_log = torch.zeros(n_paths, dtype=torch.float64)
        for x in _simulate(name, p[i], r, q, tau, nf, n_paths, gen, antithetic):
            s_arith += torch.exp(x)
            s_log += x
        a = s_arith / nf / m
        g = torch.exp(s_log / nf) / m
        disc = math.exp(-r * tau)
        if option == "call":
            pay, gpay = torch.clamp(a - 1, min=0), torch.clamp(g - 1, min=0)
        else:
            pay, gpay = torch.clamp(1 - a, min=0), torch.clamp(1 - g, min=0)
        pay, gpay = disc * pay, disc * gpay
        if control_variate and name == "bs":
            exact = float(geometric_asian_price(p[i, 0], c[i:i + 1], nf, option)[0])
            cov = torch.cov(torch.stack([pay, gpay]))
            beta = float(cov[0, 1] / cov[1, 1]) if float(cov[1, 1]) > 0 else 0.0
            pay = pay - beta * (gpay - exact)
        est, se = _estimate(pay, antithetic)
        prices.append(est)
        errs.append(se)
    return torch.tensor(prices, dtype=torch.float64), torch.tensor(errs, dtype=torch.float64)
