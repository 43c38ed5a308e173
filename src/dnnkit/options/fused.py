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
                 ) -> tuple[Callable[[torch.Tensor, tuple], tuple[torch.Tensor, torch.Tensor]],
                            tuple] | None:
    """For fixed contracts: ``(f, consts)`` with ``f(theta, consts) -> (baseline price, its
    gradient (..., p))``; ``None`` for no baseline.

    ``consts`` are the contract-only quantities (``log m``, ``sqrt tau``, discount factors,
    computed once), one value per contract. ``theta`` is ``(rows, p)`` with the first ``rows``
    of each constant (row ``i`` priced at contract ``i``) or ``(k, 1, p)`` with all of them
    (each parameter set at every contract).
    """
    if name == "none":
        return None
    m, tau, r, q = contracts.to(torch.float64).unbind(-1)
    idx = {nm: j for j, nm in enumerate(names)}
    sqt = torch.sqrt(tau)
    drift = -torch.log(m) + (r - q) * tau
    fwd = torch.exp(-q * tau) / m
    disc = torch.exp(-r * tau)
    half_vega = 0.5 * fwd * sqt / _SQRT_2PI
    keys = ("v0", "kappa", "theta") if name == "heston_bs" else ("sigma", "nu", "theta")
    cols = [idx[k] for k in keys]
    # d baseline / d (a, b, c) -> d baseline / d theta (p columns) by one small product
    select = torch.zeros(3, p, dtype=torch.float64, device=contracts.device)
    for i, j in enumerate(cols):
        if j < p:
            select[i, j] = 1.0

    def f(theta: torch.Tensor, consts: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        ntau, tau, sqt, drift, fwd, disc, half_vega = consts
        t64 = theta.to(torch.float64)
        a, b, c = (t64[..., j] for j in cols)
        if name == "heston_bs":               # a = v0, b = kappa, c = theta (mean variance)
            mx = b * ntau                     # -x, x = kappa tau
            em = torch.expm1(mx)
            g = em / mx                       # (1 - e^{-x}) / x
            ac = a - c
            var = c + ac * g
            dk = ac * (em - mx * (em + 1)) / (mx * mx) * tau
            dvar = torch.stack(torch.broadcast_tensors(g, dk, 1 - g), -1)
        else:                                 # vg_bs: a = sigma, b = nu, c = theta
            var = a * a + b * c * c
            dvar = torch.stack(torch.broadcast_tensors(2 * a, c * c, 2 * b * c), -1)
        live = var >= 1e-8                    # below, the variance is clamped: no gradient
        sig = torch.sqrt(torch.clamp(var, min=1e-8))
        sq = sig * sqt
        d1 = drift / sq + 0.5 * sq
        price = fwd * torch.special.ndtr(d1) - disc * torch.special.ndtr(d1 - sq)
        dp = half_vega * torch.exp(-0.5 * d1 * d1) / sig * live
        grad = (dp.unsqueeze(-1) * dvar) @ select
        return price.to(theta.dtype), grad.to(theta.dtype)

    return f, (-tau, tau, sqt, drift, fwd, disc, half_vega)


def fused_value_and_jacobian(net: nn.Module, p: int, contracts: torch.Tensor
                             ) -> Callable[[torch.Tensor, bool],
                                           tuple[torch.Tensor, torch.Tensor | None]] | None:
    """For fixed ``contracts (N, 4)``: ``f(theta, need_jac) -> (price, d price / d theta)`` of a
    built-in :class:`SurrogatePricer` (``nn.Sequential`` of ``Linear`` and a supported
    activation); ``None`` for anything else (use autograd then).

    ``theta`` is either ``(M, p)`` with ``M <= N``, row ``i`` priced at contract ``i``
    (results ``(M,)`` and ``(M, p)``), or ``(k, 1, p)``: ``k`` parameter sets, each priced at
    all ``N`` contracts (results ``(k, N)`` and ``(k, N, p)``; the batched starts of a
    calibration, with no copy of the contracts). The contracts' share of the first layer and of
    the baseline is computed once, so each call costs one pass through the hidden layers and one
    reverse pass of the scalar output (cheaper than ``p`` forward tangents). The MLP runs in its
    weights' dtype; the results are in ``theta``'s dtype. Without ``need_jac`` the Jacobian is
    ``None``.
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
        layers.append((lin.weight.detach(), None if lin.bias is None else lin.bias.detach(),
                       act))
        i += 1
    if layers[-1][2] is not None or layers[-1][0].shape[0] != 1:
        return None
    box = net.feature_box
    w0, b0, act0 = layers[0]
    dt = w0.dtype
    lo, hi = net.low.to(torch.float64), net.high.to(torch.float64)
    live = hi > lo
    span = torch.where(live, hi - lo, torch.ones_like(hi))
    c64 = contracts.to(torch.float64)
    y_shift, y_scale = float(net.y_shift), float(net.y_scale)
    with torch.no_grad():
        uc = torch.where(live[p:], 2 * (c64 - lo[p:]) / span[p:] - 1, torch.zeros_like(c64))
        # first layer = W[:, :p] u(theta) + (W[:, p:] u(c) + b): the bracket is fixed
        h0_c = torch.nn.functional.linear(uc.to(dt), w0[:, p:], b0)
        scale_p = torch.where(live[:p], 2 / span[:p], torch.zeros_like(span[:p]))
        w0p = w0[:, :p] * scale_p.to(dt)                       # d h0 / d theta, row-independent
        shift0 = -(lo[:p] * scale_p + live[:p].to(torch.float64)).to(dt)   # u = theta * s + shift
        h0_const = h0_c + shift0 @ w0[:, :p].T
        w0pT = w0p.T.contiguous()                               # (p, width)
    rest = layers[1:]
    # the reverse pass starts from the last layer's row, the output's scale folded in
    w_out = None if not rest else rest[-1][0] * y_scale
    baseline = _baseline_fn(net.config["baseline"], box.names, contracts, p)
    n_contracts, width0 = h0_const.shape

    def f(theta: torch.Tensor, need_jac: bool = True
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        per_set = theta.ndim == 3
        with torch.no_grad():
            if per_set:         # (k, 1, p): every set at every contract
                lead = (theta.shape[0], n_contracts)
                h = (h0_const + theta.to(dt) @ w0pT).reshape(-1, width0)
            else:               # (M, p): row i at contract i
                lead = (theta.shape[0],)
                h = torch.addmm(h0_const[:lead[0]], theta.to(dt), w0pT)
            slopes = []         # each layer's activation slope (rows, width); None: linear
            a = h
            if act0 is not None:
                a, slope = act0(h)
            slopes.append(None if act0 is None else slope)
            for w, b, act in rest:
                h = torch.nn.functional.linear(a, w, b)
                if act is not None:
                    a, slope = act(h)
                    slopes.append(slope)
                else:
                    a = h
                    slopes.append(None)
            price = a[:, 0].to(theta.dtype).mul_(y_scale).add_(y_shift).reshape(lead)
            if baseline is not None:
                bf, consts = baseline
                bp, bg = bf(theta, consts if per_set else tuple(t[:lead[0]] for t in consts))
                price = price.add_(bp)
            if not need_jac:
                return price, None
            # reverse mode by hand: pull the scalar output's gradient back through the layers
            # (cheaper than p forward tangents): d out / d h_k = (d out / d h_{k+1} W_{k+1})
            # * slope_k, for the hidden layers k from the last one down
            if w_out is None:           # a single linear layer
                grad = (w0p * y_scale).expand(h.shape[0], -1)
            else:
                g = w_out
                for k in range(len(rest) - 1, -1, -1):
                    if k < len(rest) - 1:
                        g = g @ rest[k][0]
                    if slopes[k] is not None:
                        g = g * slopes[k] if g.shape[0] == 1 else g.mul_(slopes[k])
                if g.shape[0] == 1:
                    g = g.expand(h.shape[0], -1)
                grad = g @ w0p
            grad = grad.to(theta.dtype).reshape(*lead, p)
            if baseline is not None:
                grad = grad.add_(bg) if grad.is_contiguous() else grad + bg
            return price, grad

    return f
