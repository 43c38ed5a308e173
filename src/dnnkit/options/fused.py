"""A fused forward pass of a :class:`SurrogatePricer` that also returns the Jacobian of the price
with respect to the model parameters, without autograd.

Calibration (Levenberg-Marquardt) needs ``f(theta, c_j)`` and ``d f / d theta`` for every quote
and every start at each iteration. Autograd builds a graph and runs a backward pass per
iteration; here the Jacobian is pushed forward through the MLP alongside the activations (forward
mode with the ``p`` parameter directions as one batched tangent), so one pass of plain matrix
products gives both. The baseline's derivative (Black-Scholes vega times the derivative of the
mean-variance map) is analytic. ``tests/options/test_fused.py`` checks both against autograd.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["fused_value_and_jacobian"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _act_and_slope(module: nn.Module) -> Callable[[torch.Tensor], tuple[torch.Tensor,
                                                                         torch.Tensor]] | None:
    """``h -> (act(h), act'(h))`` for the supported activation modules, else ``None``."""
    if isinstance(module, nn.ReLU):
        return lambda h: (torch.relu(h), (h > 0).to(h.dtype))
    if isinstance(module, nn.LeakyReLU):
        s = module.negative_slope
        return lambda h: (torch.nn.functional.leaky_relu(h, s),
                          torch.where(h > 0, torch.ones_like(h), torch.full_like(h, s)))
    if isinstance(module, nn.ELU):
        a = module.alpha

        if a == 1.0:      # elu(h) + 1 = e^h for h <= 0, > 1 above: the slope is min(elu + 1, 1)
            def elu1(h):
                out = torch.nn.functional.elu(h)
                return out, torch.clamp(out + 1.0, max=1.0)
            return elu1

        def elu(h):
            e = torch.expm1(torch.clamp(h, max=0.0))
            return torch.where(h > 0, h, a * e), torch.where(h > 0, torch.ones_like(h), a * e + a)
        return elu
    if isinstance(module, nn.Tanh):
        def tanh(h):
            t = torch.tanh(h)
            return t, 1 - t * t
        return tanh
    if isinstance(module, nn.Sigmoid):
        def sig(h):
            s = torch.sigmoid(h)
            return s, s * (1 - s)
        return sig
    if isinstance(module, nn.Softplus):
        b, th = module.beta, module.threshold
        return lambda h: (torch.nn.functional.softplus(h, b, th),
                          torch.where(h * b > th, torch.ones_like(h), torch.sigmoid(h * b)))
    if isinstance(module, nn.SiLU):
        def silu(h):
            s = torch.sigmoid(h)
            return h * s, s * (1 + h * (1 - s))
        return silu
    if isinstance(module, nn.GELU) and module.approximate == "none":
        def gelu(h):
            cdf = 0.5 * (1 + torch.erf(h / math.sqrt(2.0)))
            return h * cdf, cdf + h * torch.exp(-0.5 * h * h) / _SQRT_2PI
        return gelu
    return None


def _baseline_fn(name: str, names: tuple[str, ...], contracts: torch.Tensor, p: int
                 ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """For fixed contracts: ``theta -> (baseline price (N,), its gradient (N, p))``.

    Contract-only quantities (``log m``, ``sqrt tau``, discount factors) are computed once."""
    m, tau, r, q = contracts.to(torch.float64).unbind(-1)
    if name == "none":
        def none(theta, rows):
            z = torch.zeros(rows, dtype=theta.dtype, device=theta.device)
            return z, torch.zeros(rows, p, dtype=theta.dtype, device=theta.device)
        return none
    idx = {nm: j for j, nm in enumerate(names)}
    sqt = torch.sqrt(tau)
    drift = -torch.log(m) + (r - q) * tau
    fwd = torch.exp(-q * tau) / m
    disc = torch.exp(-r * tau)
    vega_c = fwd * sqt / _SQRT_2PI
    consts = (tau, sqt, drift, fwd, disc, vega_c)
    keys = ("v0", "kappa", "theta") if name == "heston_bs" else ("sigma", "nu", "theta")
    cols = [idx[k] for k in keys]

    def f(theta: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, b, c = (theta[:, j].to(torch.float64) for j in cols)
        tau, sqt, drift, fwd, disc, vega_c = (t[:rows] for t in consts)
        if name == "heston_bs":               # a = v0, b = kappa, c = theta (mean variance)
            x = b * tau
            em = torch.expm1(-x)
            g = -em / x                       # (1 - e^{-x}) / x
            var = c + (a - c) * g
            dvar = (g, (a - c) * (x * (em + 1) + em) / (x * x) * tau, 1 - g)
        else:                                 # vg_bs: a = sigma, b = nu, c = theta
            var = a * a + b * c * c
            dvar = (2 * a, c * c, 2 * b * c)
        clamped = var < 1e-8
        sig = torch.sqrt(torch.clamp(var, min=1e-8))
        sq = sig * sqt
        d1 = drift / sq + 0.5 * sq
        price = fwd * _ndtr(d1) - disc * _ndtr(d1 - sq)
        dp = torch.where(clamped, torch.zeros_like(var), vega_c * torch.exp(-0.5 * d1 * d1)
                         / (2 * sig))
        grad = torch.zeros(rows, p, dtype=torch.float64, device=theta.device)
        for j, d in zip(cols, dvar):
            if j < p:
                grad[:, j] = dp * d
        return price.to(theta.dtype), grad.to(theta.dtype)

    return f


def _ndtr(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-x / math.sqrt(2.0))


def fused_value_and_jacobian(net: nn.Module, p: int, contracts: torch.Tensor
                             ) -> Callable[[torch.Tensor, bool],
                                           tuple[torch.Tensor, torch.Tensor | None]] | None:
    """For fixed ``contracts (N, 4)``: ``f(theta (M, p), need_jac) -> (price (M,),
    d price / d theta (N, p))`` of a built-in :class:`SurrogatePricer` (``nn.Sequential`` of
    ``Linear`` and a supported activation); ``None`` for anything else (use autograd then).

    The contracts' share of the first layer and of the baseline is computed once, so each call
    costs one pass through the hidden layers with a ``p``-column tangent. The MLP runs in its
    weights' dtype; the result is in ``theta``'s dtype. ``theta`` may have ``M <= N`` rows: it
    is then priced against the first ``M`` contracts.
    """
    body = getattr(net, "net", None)
    if not isinstance(body, nn.Sequential) or net.config.get("custom"):
        return None
    layers: list[tuple[torch.Tensor, torch.Tensor | None, Callable | None]] = []
    mods = list(body)
    i = 0
    while i < len(mods):
        lin = mods[i]
        if not isinstance(lin, nn.Linear):
            return None
        act = None
        if i + 1 < len(mods) and not isinstance(mods[i + 1], nn.Linear):
            act = _act_and_slope(mods[i + 1])
            if act is None:
                return None
            i += 1
        layers.append((lin.weight, lin.bias, act))
        i += 1
    if layers[-1][2] is not None or layers[-1][0].shape[0] != 1:
        return None
    box = net.feature_box
    w0, b0 = layers[0][0], layers[0][1]
    dt = w0.dtype
    lo, hi = net.low.to(torch.float64), net.high.to(torch.float64)
    live = hi > lo
    span = torch.where(live, hi - lo, torch.ones_like(hi))
    c64 = contracts.to(torch.float64)
    with torch.no_grad():
        uc = torch.where(live[p:], 2 * (c64 - lo[p:]) / span[p:] - 1, torch.zeros_like(c64))
        # first layer = W[:, :p] u(theta) + (W[:, p:] u(c) + b): the bracket is fixed
        h0_c = torch.nn.functional.linear(uc.to(dt), w0[:, p:].detach(),
                                          None if b0 is None else b0.detach())
        scale_p = torch.where(live[:p], 2 / span[:p], torch.zeros_like(span[:p]))
        w0p = w0[:, :p].detach() * scale_p.to(dt)             # d h0 / d theta, row-independent
        shift0 = -(lo[:p] * scale_p + live[:p].to(torch.float64)).to(dt)   # u = theta * s + shift
        h0_const = h0_c + shift0 @ w0[:, :p].detach().T
    rest = [(w.detach(), None if b is None else b.detach(), act) for w, b, act in layers[1:]]
    act0 = layers[0][2]
    base = _baseline_fn(net.config["baseline"], box.names, contracts, p)
    y_shift, y_scale = float(net.y_shift), float(net.y_scale)

    def f(theta: torch.Tensor, need_jac: bool = True
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # ``theta`` may cover only the first rows of ``contracts`` (a shrinking batch of starts)
        rows = theta.shape[0]
        with torch.no_grad():
            h = torch.addmm(h0_const[:rows], theta.to(dt), w0p.T)
            # reverse mode by hand: keep each layer's activation slope (N, width), then pull the
            # scalar output's gradient back through the layers (cheaper than p forward tangents)
            slopes = []
            a = h
            if act0 is not None:
                a, slope = act0(h)
                slopes.append(slope)
            else:
                slopes.append(None)
            for w, b, act in rest:
                h = torch.nn.functional.linear(a, w, b)
                if act is not None:
                    a, slope = act(h)
                    slopes.append(slope)
                else:
                    a = h
                    slopes.append(None)
            bp, bg = base(theta, rows)
            price = bp + y_shift + y_scale * a[:, 0].to(theta.dtype)
            if not need_jac:
                return price, None
            ws = [w for w, _, _ in rest]
            g = None                                   # d out / d (activation of layer k)
            for k in range(len(ws) - 1, -1, -1):
                g = ws[k].expand(theta.shape[0], -1) if g is None else g @ ws[k]
                if slopes[k] is not None:
                    g = g * slopes[k]
            grad = g @ w0p if g is not None else w0p.expand(theta.shape[0], -1)
            return price, y_scale * grad.to(theta.dtype) + bg

    return f
