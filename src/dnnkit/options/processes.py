"""Pricing models: parameter checks, parameter boxes and characteristic functions.

Every model is described by a small frozen :class:`ModelSpec` (name, parameter names, default
training box, characteristic function of ``X = ln(S_T / S_0)`` and a truncation half-width for the
COS method). Contracts are rows ``[m, tau, r, q]`` with moneyness ``m = K / S`` (strike over spot),
maturity ``tau`` in years, continuous rate ``r`` and dividend yield ``q``; prices are per unit
strike (``C / K``), which is all the information there is because prices are homogeneous of degree
one in ``(S, K)``.

References
----------
Karatas, Oskoui, Hirsa (2019), arXiv:1902.05810 -- the pricing models of the paper (BS, SV, VG).
Heston (1993), RFS 6(2), eq. (17); "little trap" form of Albrecher et al. (2007), eq. (2).
Madan, Carr, Chang (1998), Eur. Finance Rev. 2, eq. (7) (VG characteristic function).
Carr, Geman, Madan, Yor (2003), Math. Finance 13(3), eqs. (4)-(6) (VGSA on a CIR clock).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dnnkit.core.validation import check_choice, check_tensor, param_error

__all__ = [
    "MODELS",
    "ModelSpec",
    "bs_cf",
    "check_contracts",
    "check_params",
    "get_model",
    "heston_cf",
    "vg_cf",
    "vgsa_cf",
]

log = logging.getLogger("dnnkit")

CONTRACT_NAMES = ("m", "tau", "r", "q")


@dataclass(frozen=True)
class ModelSpec:
    """A pricing model: parameter names, default box, characteristic function, COS half-width."""

    name: str
    params: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    cf: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    half_width: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _fail(name: str, where: str, must: str, values: torch.Tensor, bad: torch.Tensor) -> None:
    rows = torch.nonzero(bad).flatten()[:5].tolist()
    vals = [float(v) for v in values[bad][:5]]
    raise ValueError(param_error(name, where, must, f"{vals} in rows {rows}"))


def check_contracts(contracts, *, where: str = "dnnkit.options") -> torch.Tensor:
    """Validate contracts ``(n, 4) = [K/S, tau, r, q]``; return them as float64.

    Raises
    ------
    ValueError
        Non-finite entries (naming the column), non-positive moneyness or maturity.
    """
    c = check_tensor(contracts, "contracts", ndim=2, finite=False, where=where)
    if c.shape[1] != 4:
        raise ValueError(param_error("contracts", where, "a tensor of shape (n, 4) with columns "
                                     "[K/S, tau, r, q]", f"shape {tuple(c.shape)}"))
    if not c.is_floating_point():
        c = c.to(torch.float64)
    c = c.to(torch.float64)
    for j, nm in enumerate(CONTRACT_NAMES):
        col = c[:, j]
        bad = ~torch.isfinite(col)
        if bool(bad.any()):
            _fail(f"contracts[:, {j}] ({nm})", where, "finite (no NaN or inf)", col, bad)
    for j, nm in ((0, "m = K/S"), (1, "tau")):
        bad = c[:, j] <= 0
        if bool(bad.any()):
            _fail(f"contracts[:, {j}] ({nm})", where, "> 0", c[:, j], bad)
    return c


def check_params(model: str, params, n: int | None = None, *,
                 where: str = "dnnkit.options") -> torch.Tensor:
    """Validate a ``(n, p)`` batch of model parameters (float64 copy returned).

    Heston draws that violate the Feller condition ``2 kappa theta >= sigma^2`` are legal (the
    variance touches zero but the characteristic function, and therefore the price, is exact);
    they only produce a debug log line.
    """
    spec = get_model(model)
    p = check_tensor(params, "params", ndim=(1, 2), finite=False, where=where)
    if p.ndim == 1:
        p = p.unsqueeze(0)
    if not p.is_floating_point():
        p = p.to(torch.float64)
    p = p.to(torch.float64)
    if p.shape[1] != len(spec.params):
        raise ValueError(param_error("params", where, f"a tensor with {len(spec.params)} columns "
                                     f"{list(spec.params)} for model {spec.name!r}",
                                     f"shape {tuple(p.shape)}"))
    if n is not None and p.shape[0] not in (1, n):
        raise ValueError(param_error("params", where, f"a tensor with 1 or {n} rows (one per "
                                     "contract)", f"shape {tuple(p.shape)}"))
    for j, nm in enumerate(spec.params):
        bad = ~torch.isfinite(p[:, j])
        if bool(bad.any()):
            _fail(f"params[:, {j}] ({nm})", where, "finite (no NaN or inf)", p[:, j], bad)
    col = {nm: p[:, j] for j, nm in enumerate(spec.params)}

    def need(nm: str, bad: torch.Tensor, must: str) -> None:
        if bool(bad.any()):
            _fail(f"params[:, {spec.params.index(nm)}] ({nm})", where, must, col[nm], bad)

    if spec.name == "bs":
        need("sigma", col["sigma"] <= 0, "> 0 (volatility)")
    elif spec.name == "heston":
        need("v0", col["v0"] < 0, ">= 0 (initial variance)")
        need("kappa", col["kappa"] <= 0, "> 0 (mean-reversion speed)")
        need("theta", col["theta"] <= 0, "> 0 (long-run variance)")
        need("sigma", col["sigma"] <= 0, "> 0 (volatility of variance)")
        need("rho", col["rho"].abs() >= 1, "in (-1, 1) (correlation)")
        feller = 2 * col["kappa"] * col["theta"] < col["sigma"] ** 2
        if bool(feller.any()):
            log.debug("%d Heston draws violate the Feller condition; priced exactly anyway.",
                      int(feller.sum()))
    elif spec.name in ("vg", "vgsa"):
        need("sigma", col["sigma"] <= 0, "> 0")
        need("nu", col["nu"] <= 0, "> 0 (variance rate of the gamma clock)")
        mart = 1 - col["theta"] * col["nu"] - 0.5 * col["sigma"] ** 2 * col["nu"]
        if bool((mart <= 0).any()):
            _fail("params (1 - theta nu - sigma^2 nu / 2)", where,
                  "> 0 so that the martingale correction exists", mart, mart <= 0)
        if spec.name == "vgsa":
            need("kappa", col["kappa"] <= 0, "> 0")
            need("eta", col["eta"] <= 0, "> 0")
            need("lam", col["lam"] <= 0, "> 0 (volatility of the CIR clock)")
    return p


# --------------------------------------------------------------------------------------------
# characteristic functions of X = ln(S_T / S_0); u: (n, N) real, params (n, p), contracts (n, 4)


def bs_cf(u: torch.Tensor, params: torch.Tensor, contracts: torch.Tensor) -> torch.Tensor:
    """Black-Scholes: ``phi(u) = exp(i u (r - q - s^2/2) tau - s^2 u^2 tau / 2)``."""
    s = params[:, 0:1]
    tau, r, q = contracts[:, 1:2], contracts[:, 2:3], contracts[:, 3:4]
    iu = 1j * u
    return torch.exp(iu * (r - q - 0.5 * s * s) * tau - 0.5 * s * s * u * u * tau)


def heston_cf(u: torch.Tensor, params: torch.Tensor, contracts: torch.Tensor) -> torch.Tensor:
    """Heston characteristic function in the numerically stable "little trap" form.

    ``d = sqrt((rho s i u - kappa)^2 + s^2 (i u + u^2))``,
    ``g = (kappa - rho s i u - d) / (kappa - rho s i u + d)`` and
    ``phi = exp(i u (r-q) tau + kappa theta / s^2 [(kappa - rho s i u - d) tau
    - 2 ln((1 - g e^{-d tau}) / (1 - g))] + v0 / s^2 (kappa - rho s i u - d)
    (1 - e^{-d tau}) / (1 - g e^{-d tau}))`` (Albrecher et al. 2007, eq. 2).
    """
    v0, kappa, theta, sigma, rho = (params[:, j:j + 1] for j in range(5))
    tau, r, q = contracts[:, 1:2], contracts[:, 2:3], contracts[:, 3:4]
    iu = 1j * u
    beta = kappa - rho * sigma * iu
    d = torch.sqrt(beta * beta + sigma * sigma * (iu + u * u))
    g = (beta - d) / (beta + d)
    e = torch.exp(-d * tau)
    s2 = sigma * sigma
    c = kappa * theta / s2 * ((beta - d) * tau - 2 * torch.log((1 - g * e) / (1 - g)))
    dd = v0 / s2 * (beta - d) * (1 - e) / (1 - g * e)
    return torch.exp(iu * (r - q) * tau + c + dd)


def _vg_exponent(u: torch.Tensor, sigma, nu, theta) -> torch.Tensor:
    """Unit-time VG log-characteristic exponent ``psi(u) = -ln(1 - i u theta nu
    + sigma^2 nu u^2 / 2) / nu`` (complex ``u`` allowed)."""
    return -torch.log(1 - 1j * u * theta * nu + 0.5 * sigma * sigma * nu * u * u) / nu


def _vg_omega(sigma, nu, theta):
    return torch.log(1 - theta * nu - 0.5 * sigma * sigma * nu) / nu


def vg_cf(u: torch.Tensor, params: torch.Tensor, contracts: torch.Tensor) -> torch.Tensor:
    """Variance Gamma: ``phi(u) = exp(i u (r - q + omega) tau) (1 - i u theta nu +
    sigma^2 nu u^2 / 2)^{-tau / nu}``, ``omega = ln(1 - theta nu - sigma^2 nu / 2) / nu``
    (Madan, Carr, Chang 1998, eqs. 7 and 22)."""
    sigma, nu, theta = (params[:, j:j + 1] for j in range(3))
    tau, r, q = contracts[:, 1:2], contracts[:, 2:3], contracts[:, 3:4]
    omega = _vg_omega(sigma, nu, theta)
    return torch.exp(1j * u * (r - q + omega) * tau + tau * _vg_exponent(u, sigma, nu, theta))


def _cir_log_laplace(w: torch.Tensor, t, kappa, eta, lam, y0=1.0) -> torch.Tensor:
    """``ln E[exp(w Y_t)]`` for the integrated CIR clock ``Y_t = int_0^t y``,
    ``dy = kappa (eta - y) dt + lam sqrt(y) dW`` (CGMY 2003, eq. 5), stable for large ``t``."""
    gamma = torch.sqrt(kappa * kappa - 2 * lam * lam * w)
    x = gamma * t / 2
    em = torch.exp(-2 * x)
    ratio = kappa / gamma
    log_den = x - math.log(2.0) + torch.log((1 + ratio) + (1 - ratio) * em)
    log_a = kappa * kappa * eta * t / (lam * lam) - 2 * kappa * eta / (lam * lam) * log_den
    coth = (1 + em) / (1 - em)
    b = 2 * w / (kappa + gamma * coth)
    return log_a + b * y0


def vgsa_cf(u: torch.Tensor, params: torch.Tensor, contracts: torch.Tensor) -> torch.Tensor:
    """VGSA: VG run on an integrated CIR clock (``y0 = 1``), martingale-corrected
    (Carr, Geman, Madan, Yor 2003, eq. 6): ``phi(u) = exp(i u (r-q) tau) L(psi(u)) /
    L(psi(-i))^{i u}`` with ``L(w) = E[exp(w Y_tau)]`` and ``psi`` the VG exponent."""
    sigma, nu, theta, kappa, eta, lam = (params[:, j:j + 1] for j in range(6))
    tau, r, q = contracts[:, 1:2], contracts[:, 2:3], contracts[:, 3:4]
    uc = u.to(torch.complex128)
    lu = _cir_log_laplace(_vg_exponent(uc, sigma, nu, theta), tau, kappa, eta, lam)
    mi = torch.full_like(uc[:, :1], -1j)
    lm = _cir_log_laplace(_vg_exponent(mi, sigma, nu, theta), tau, kappa, eta, lam)
    return torch.exp(1j * u * (r - q) * tau + lu - 1j * u * lm)


# --------------------------------------------------------------------------------------------
# COS truncation: centre c1 (first cumulant) and half-width, each (n, 1)


def _bs_width(params, contracts):
    s, tau = params[:, 0:1], contracts[:, 1:2]
    r, q = contracts[:, 2:3], contracts[:, 3:4]
    return (r - q - 0.5 * s * s) * tau, 0.5 * s * torch.sqrt(tau)   # L=24 -> 12 sd


def _heston_width(params, contracts):
    v0, kappa, theta, sigma, _ = (params[:, j:j + 1] for j in range(5))
    tau, r, q = contracts[:, 1:2], contracts[:, 2:3], contracts[:, 3:4]
    kt = kappa * tau
    vbar = theta + (v0 - theta) * -torch.expm1(-kt) / kt  # mean expected variance
    c1 = (r - q) * tau - 0.5 * vbar * tau
    # spec section 2.1: L * sqrt(vbar tau) * sqrt(1 + sigma); L applied by the pricer
    w = torch.sqrt(torch.clamp(vbar, min=1e-4) * tau) * torch.sqrt(1 + sigma)
    return c1, w


def _vg_cumulants(sigma, nu, theta, t):
    c2 = (sigma ** 2 + nu * theta ** 2) * t
    c4 = 3 * (sigma ** 4 * nu + 2 * theta ** 4 * nu ** 3 + 4 * sigma ** 2 * theta ** 2 * nu ** 2) * t
    return c2, c4


def _vg_width(params, contracts):
    sigma, nu, theta = (params[:, j:j + 1] for j in range(3))
    tau, r, q = contracts[:, 1:2], contracts[:, 2:3], contracts[:, 3:4]
    c1 = (r - q + _vg_omega(sigma, nu, theta) + theta) * tau
    c2, c4 = _vg_cumulants(sigma, nu, theta, tau)
    return c1, torch.sqrt(c2 + torch.sqrt(c4)) / 2.4   # pricer's L=24 -> 10 (Fang-Oosterlee)


def _vgsa_width(params, contracts):
    sigma, nu, theta, kappa, eta, _ = (params[:, j:j + 1] for j in range(6))
    tau, r, q = contracts[:, 1:2], contracts[:, 2:3], contracts[:, 3:4]
    ey = eta * tau + (1 - eta) * -torch.expm1(-kappa * tau) / kappa    # E[Y_tau], y0 = 1
    c2, c4 = _vg_cumulants(sigma, nu, theta, ey)
    c1 = (r - q) * tau
    return c1, 1.5 * torch.sqrt(c2 + torch.sqrt(c4)) / 2.4


MODELS: dict[str, ModelSpec] = {
    "bs": ModelSpec("bs", ("sigma",), (0.05,), (0.8,), bs_cf, _bs_width),
    "heston": ModelSpec("heston", ("v0", "kappa", "theta", "sigma", "rho"),
                        (0.01, 0.5, 0.01, 0.1, -0.9), (0.2, 5.0, 0.2, 0.8, 0.0),
                        heston_cf, _heston_width),
    "vg": ModelSpec("vg", ("sigma", "nu", "theta"), (0.05, 0.05, -0.5), (0.5, 0.8, 0.1),
                    vg_cf, _vg_width),
    "vgsa": ModelSpec("vgsa", ("sigma", "nu", "theta", "kappa", "eta", "lam"),
                      (0.05, 0.05, -0.5, 0.5, 0.5, 0.1), (0.5, 0.8, 0.1, 5.0, 1.5, 1.0),
                      vgsa_cf, _vgsa_width),
}

#: default contract box ``[m = K/S, tau, r, q]`` (spec section 2.2)
CONTRACT_LOW = (0.8, 0.05, 0.0, 0.0)
CONTRACT_HIGH = (1.2, 2.0, 0.05, 0.0)


def get_model(name: str) -> ModelSpec:
    """Return the :class:`ModelSpec` called ``name`` (``bs``, ``heston``, ``vg``, ``vgsa``)."""
    if isinstance(name, ModelSpec):
        return name
    check_choice(name, "model", tuple(MODELS), where="dnnkit.options")
    return MODELS[name]
