"""A fused forward pass of a :class:`SurrogatePricer` that also returns the Jacobian of the price
with respect to the model parameters, without autograd.

Calibration (Levenberg-Marquardt) needs ``f(theta, c_j)`` and ``d f / d theta`` for every quote
and every start at each iteration. Autograd builds a graph and runs a backward pass per
iteration; here one pass keeps each layer's activation slope and pulls the scalar output's
gradient back through the layers by hand (reverse mode: cheaper than ``p`` forward tangents),
so plain matrix products give both. The baseline's derivative (Black-Scholes vega times the
derivative of the mean-variance map) is analytic. The contracts' share of the first layer and
of the baseline is computed once.

On CPU the pass runs in numpy (same BLAS products, same dtype as the weights): a calibration
pass is a few dozen operations on a few hundred rows, where numpy's per-call cost is a third of
torch's; on other devices it runs in torch. ``tests/options/test_fused.py`` checks both
backends against autograd for every activation and baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.special import erf as _scipy_erf
from scipy.special import expit as _scipy_expit
from scipy.special import ndtr as _scipy_ndtr
from torch import nn

__all__ = ["fused_value_and_jacobian"]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _act_and_slope(module: nn.Module, xp) -> Callable | None:
    """``h -> (act(h), act'(h))`` for the supported activation modules on the array backend
    ``xp`` (:class:`_TorchOps` or :class:`_NumpyOps`), else ``None``."""
    if isinstance(module, nn.ReLU):
        return lambda h: (xp.relu(h), xp.positive(h))
    if isinstance(module, nn.LeakyReLU):
        s = module.negative_slope

        def leaky(h):
            slope = xp.positive(h) * (1.0 - s) + s
            return h * slope, slope
        return leaky
    if isinstance(module, nn.ELU):
        a = module.alpha

        if a == 1.0:      # the slope is e^min(h, 0); elu(h) = max(h, 0) + (slope - 1)
            def elu1(h):
                e = xp.exp(xp.nonpositive_part(h))
                return xp.relu(h) + (e - 1.0), e
            return elu1

        def elu(h):
            e = xp.exp(xp.nonpositive_part(h))
            pos = xp.positive(h)
            return xp.relu(h) + a * (e - 1.0), pos + (1.0 - pos) * (a * e)
        return elu
    if isinstance(module, nn.Tanh):
        def tanh(h):
            t = xp.tanh(h)
            return t, 1.0 - t * t
        return tanh
    if isinstance(module, nn.Sigmoid):
        def sig(h):
            s = xp.sigmoid(h)
            return s, s * (1.0 - s)
        return sig
    if isinstance(module, nn.Softplus):
        b, th = module.beta, module.threshold

        def softplus(h):
            big = xp.positive(h * b - th)           # above the threshold softplus is linear
            sp = xp.softplus(h * b) / b
            return big * h + (1.0 - big) * sp, big + (1.0 - big) * xp.sigmoid(h * b)
        return softplus
    if isinstance(module, nn.SiLU):
        def silu(h):
            s = xp.sigmoid(h)
            return h * s, s * (1.0 + h * (1.0 - s))
        return silu
    if isinstance(module, nn.GELU) and module.approximate == "none":
        def gelu(h):
            cdf = 0.5 * (1.0 + xp.erf(h * (1 / math.sqrt(2.0))))
            return h * cdf, cdf + h * xp.exp(-0.5 * h * h) * (1 / _SQRT_2PI)
        return gelu
    return None


class _TorchOps:
    """The array functions of the fused pass, on torch tensors (any device)."""

    expm1, sqrt, exp, ndtr = torch.expm1, torch.sqrt, torch.exp, torch.special.ndtr
    tanh, sigmoid, erf, relu = torch.tanh, torch.sigmoid, torch.erf, torch.relu

    @staticmethod
    def softplus(x):
        return torch.nn.functional.softplus(x)

    @staticmethod
    def positive(x):
        return (x > 0).to(x.dtype)

    @staticmethod
    def nonpositive_part(x):
        return torch.clamp(x, max=0.0)

    @staticmethod
    def stack(*xs):
        return torch.stack(torch.broadcast_tensors(*xs), -1)

    @staticmethod
    def clamp_min(x, v):
        return torch.clamp(x, min=v)


# numpy's float32 exp / minimum / maximum run several times slower than torch's vectorised CPU
# kernels; above this many elements the numpy backend calls those kernels on the same memory
_TORCH_KERNEL_SIZE = 4096


class _NumpyOps:
    """The same on numpy arrays (CPU): a calibration pass is a few dozen operations on a few
    hundred rows, where numpy's per-call cost is a fraction of torch's. Large float arrays go
    through torch's elementwise kernels (zero-copy views), which are faster than numpy's."""

    expm1, sqrt, ndtr = np.expm1, np.sqrt, staticmethod(_scipy_ndtr)
    tanh, sigmoid, erf = np.tanh, staticmethod(_scipy_expit), staticmethod(_scipy_erf)

    @staticmethod
    def exp(x):
        if x.size >= _TORCH_KERNEL_SIZE:
            return torch.exp(torch.from_numpy(x)).numpy()
        return np.exp(x)

    @staticmethod
    def relu(x):
        if x.size >= _TORCH_KERNEL_SIZE:
            return torch.relu(torch.from_numpy(x)).numpy()
        return np.maximum(x, 0.0)

    @staticmethod
    def softplus(x):
        return np.logaddexp(0.0, x)

    @staticmethod
    def positive(x):
        return (x > 0).astype(x.dtype)

    @staticmethod
    def nonpositive_part(x):
        if x.size >= _TORCH_KERNEL_SIZE:
            return torch.clamp(torch.from_numpy(x), max=0.0).numpy()
        return np.minimum(x, 0.0)

    @staticmethod
    def stack(*xs):
        return np.stack(np.broadcast_arrays(*xs), -1)

    @staticmethod
    def clamp_min(x, v):
        return np.maximum(x, v)


def _baseline_fn(name: str, names: tuple[str, ...], contracts: np.ndarray, p: int, xp,
                 device: torch.device | None = None) -> Callable | None:
    """For fixed contracts: ``f(theta, rows) -> (baseline price, [(j, d price / d theta_j)])``
    on float64 arrays of the backend ``xp`` (the non-zero gradient columns); ``None`` for no
    baseline.

    ``theta`` is ``(rows, p)`` priced at the first ``rows`` contracts (row ``i`` at contract
    ``i``) or ``(k, 1, p)`` with ``rows=None`` (each parameter set at every contract). The
    contract-only quantities (``log m``, ``sqrt tau``, discount factors) are computed once, in
    numpy from float64 ``contracts (N, 4)`` (moved to ``device`` for the torch backend).
    """
    if name == "none":
        return None
    m, tau, r, q = contracts.T                            # numpy float64 (N,) each
    idx = {nm: j for j, nm in enumerate(names)}
    sqt = np.sqrt(tau)
    drift = -np.log(m) + (r - q) * tau
    fwd = np.exp(-q * tau) / m
    disc = np.exp(-r * tau)
    half_vega = 0.5 * fwd * sqt / _SQRT_2PI
    keys = ("v0", "kappa", "theta") if name == "heston_bs" else ("sigma", "nu", "theta")
    cols = [idx[k] for k in keys]
    consts = tuple(np.ascontiguousarray(t) for t in (-tau, sqt, drift, fwd, disc, half_vega))
    if xp is _TorchOps:
        consts = tuple(torch.from_numpy(t).to(device) for t in consts)
    heston = name == "heston_bs"

    def f(t64, rows: int | None):
        ntau, sqt, drift, fwd, disc, half_vega = (
            consts if rows is None else tuple(t[:rows] for t in consts))
        a, b, c = (t64[..., j] for j in cols)
        if heston:                            # a = v0, b = kappa, c = theta (mean variance)
            em = xp.expm1(b * ntau)           # e^{-x} - 1, x = kappa tau
            g = em / (b * ntau)               # (1 - e^{-x}) / x
            ac = a - c
            var = c + ac * g
            # d var / d (v0, kappa, theta) = (g, (v0 - theta) / kappa (e^{-x} - g), 1 - g)
            dvar = (g, (ac / b) * (1.0 + em - g))
        else:                                 # vg_bs: a = sigma, b = nu, c = theta
            var = a * a + b * c * c
            dvar = (2 * a, c * c, 2 * b * c)
        sig = xp.sqrt(xp.clamp_min(var, 1e-8))
        sq = sig * sqt
        d1 = drift / sq + 0.5 * sq
        price = fwd * xp.ndtr(d1) - disc * xp.ndtr(d1 - sq)
        dp = half_vega / sig * xp.exp(-0.5 * d1 * d1)
        if bool((var < 1e-8).any()):         # the variance is clamped there: no gradient
            dp = dp * (var >= 1e-8)
        d = [dp * dv for dv in dvar]
        if heston:
            d.append(dp - d[0])
        return price, [(j, dj) for j, dj in zip(cols, d) if j < p]

    return f


    return f


def fused_value_and_jacobian(net: nn.Module, p: int, contracts: torch.Tensor, *,
                             backend: str | None = None, raw: bool = False
                             ) -> Callable[[torch.Tensor, bool],
                                           tuple[torch.Tensor, torch.Tensor | None]] | None:
    """For fixed ``contracts (N, 4)``: ``f(theta, need_jac) -> (price, d price / d theta)`` of a
    built-in :class:`SurrogatePricer` (``nn.Sequential`` of ``Linear`` and a supported
    activation); ``None`` for anything else (use autograd then).

    ``theta`` is either ``(M, p)`` with ``M <= N``, row ``i`` priced at contract ``i``
    (results ``(M,)`` and ``(M, p)``), or ``(k, 1, p)``: ``k`` parameter sets, each priced at
    all ``N`` contracts (results ``(k, N)`` and ``(k, N, p)``; the batched starts of a
    calibration, with no copy of the contracts). The MLP runs in its weights' dtype; the results
    are float64 tensors on the weights' device. Without ``need_jac`` the Jacobian is ``None``.
    ``backend`` (``"numpy"`` or ``"torch"``) overrides the choice (numpy when the weights and
    contracts are on the CPU); the weights are read when ``f`` is built, so rebuild it after
    changing them. With ``raw`` the function takes and returns the backend's own float64 arrays
    (numpy arrays on the numpy backend: no tensor round trip, for numpy callers).
    """
    body = getattr(net, "net", None)
    if not isinstance(body, nn.Sequential) or net.config.get("custom"):
        return None
    w_dev = net.low.device
    for prm in body.parameters():
        w_dev = prm.device
        break
    if backend is None:
        backend = "numpy" if w_dev.type == "cpu" and contracts.device.type == "cpu" else "torch"
    xp = _NumpyOps if backend == "numpy" else _TorchOps
    layers: list[tuple[torch.Tensor, torch.Tensor | None, Callable | None]] = []
    mods = list(body)
    i = 0
    while i < len(mods):
        lin = mods[i]
        if not isinstance(lin, nn.Linear):
            return None
        act = None
        if i + 1 < len(mods) and not isinstance(mods[i + 1], nn.Linear):
            act = _act_and_slope(mods[i + 1], xp)
            if act is None:
                return None
            i += 1
        layers.append((lin.weight.detach(), None if lin.bias is None else lin.bias.detach(),
                       act))
        i += 1
    if layers[-1][2] is not None or layers[-1][0].shape[0] != 1:
        return None
    if layers[0][0].dtype not in (torch.float32, torch.float64):
        return None                     # e.g. half precision: autograd handles it
    box = net.feature_box
    # the constants are built in numpy on the CPU (a few small arrays), then moved to the
    # weights' device for the torch backend
    npl = [(w.cpu().numpy(), None if b is None else b.cpu().numpy(), act) for w, b, act in layers]
    w0, b0, act0 = npl[0]
    dt = w0.dtype
    lo = net.low.detach().cpu().numpy().astype(np.float64)
    hi = net.high.detach().cpu().numpy().astype(np.float64)
    live = hi > lo
    span = np.where(live, hi - lo, 1.0)
    c64 = contracts.detach().cpu().numpy().astype(np.float64)
    y_shift, y_scale = float(net.y_shift), float(net.y_scale)
    uc = np.where(live[p:], 2 * (c64 - lo[p:]) / span[p:] - 1, 0.0)
    # first layer = W[:, :p] u(theta) + (W[:, p:] u(c) + b): the bracket is fixed
    h0_c = uc.astype(dt) @ w0[:, p:].T
    if b0 is not None:
        h0_c += b0
    scale_p = np.where(live[:p], 2 / span[:p], 0.0)
    w0p = w0[:, :p] * scale_p.astype(dt)                       # d h0 / d theta, row-independent
    shift0 = -(lo[:p] * scale_p + live[:p]).astype(dt)         # u = theta * s + shift
    h0_const = h0_c + shift0 @ w0[:, :p].T
    w0pT = np.ascontiguousarray(w0p.T)                          # (p, width)
    # the forward pass uses W^T, the reverse pass W_{k+1}; the output row is scaled by y_scale:
    # out = a w + (b y_scale + shift), and the reverse pass starts from it
    hidden = [(np.ascontiguousarray(w.T), b, act) for w, b, act in npl[1:-1]]
    ws = [w for w, _, _ in npl[1:]]
    w_out = w_col = None
    out_shift = y_shift
    if len(npl) > 1:
        w_last, b_last = npl[-1][0], npl[-1][1]
        w_out = w_last * y_scale
        w_col = np.ascontiguousarray(w_out[0])
        out_shift = y_shift + (0.0 if b_last is None else float(b_last[0]) * y_scale)
    grad_single = w0p * y_scale                                 # a single linear layer
    if backend == "torch":
        def tt(a):
            return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(w_dev)
        h0_const, w0pT, w0p, grad_single, w_out, w_col = (
            tt(a) for a in (h0_const, w0pT, w0p, grad_single, w_out, w_col))
        hidden = [(tt(w), tt(b), act) for w, b, act in hidden]
        ws = [tt(w) for w in ws]
        dt = h0_const.dtype
    baseline = _baseline_fn(net.config["baseline"], box.names, c64, p, xp, w_dev)
    n_contracts, width0 = h0_const.shape
    np_dt = None if backend == "torch" else h0_const.dtype

    def f(theta: torch.Tensor, need_jac: bool = True
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        t64 = theta.detach().to(w_dev, torch.float64)
        price, grad = run(t64.numpy() if backend == "numpy" else t64, need_jac)
        if backend == "numpy":
            price = torch.from_numpy(price)
            grad = None if grad is None else torch.from_numpy(grad)
        return price, grad

    def run(t64, need_jac):
        """The pass on the backend's float64 array ``t64``; results in the backend's arrays."""
        per_set = t64.ndim == 3
        t = t64.astype(np_dt) if backend == "numpy" else t64.to(dt)
        if per_set:             # (k, 1, p): every set at every contract
            lead = (t.shape[0], n_contracts)
            h = (h0_const + t @ w0pT).reshape(-1, width0)
        else:                   # (M, p): row i at contract i
            lead = (t.shape[0],)
            h = h0_const[:lead[0]] + t @ w0pT
        with torch.no_grad():
            slopes = []         # each layer's activation slope (rows, width); None: linear
            a = h
            if act0 is not None:
                a, slope = act0(h)
            slopes.append(None if act0 is None else slope)
            for wT, b, act in hidden:
                h = a @ wT
                if b is not None:
                    h += b
                if act is not None:
                    a, slope = act(h)
                    slopes.append(slope)
                else:
                    a = h
                    slopes.append(None)
            if len(layers) > 1:
                out = a @ w_col
                price = (out.astype(np.float64) if backend == "numpy"
                         else out.to(torch.float64)).reshape(lead) + out_shift
            else:
                out = a[:, 0]
                price = (out.astype(np.float64) if backend == "numpy"
                         else out.to(torch.float64)).reshape(lead) * y_scale + y_shift
            if baseline is not None:
                bp, bg = baseline(t64, None if per_set else lead[0])
                price = price + bp
            grad = None
            if need_jac:
                # reverse mode by hand: d out / d h_k = (d out / d h_{k+1} W_{k+1}) * slope_k,
                # for the layers k from the last hidden one down; then through the first layer
                if w_out is None:
                    g = None
                    grad = grad_single + 0 * h[:, :1]
                else:
                    g = w_out
                    for k in range(len(layers) - 2, -1, -1):
                        if k < len(layers) - 2:
                            g = g @ ws[k]
                        if slopes[k] is not None:
                            g = g * slopes[k]
                    if g.shape[0] == 1:
                        g = g + 0 * h[:, :1]
                    grad = g @ w0p
                grad = (grad.astype(np.float64) if backend == "numpy"
                        else grad.to(torch.float64)).reshape(*lead, p)
                if baseline is not None:
                    for j, d in bg:
                        grad[..., j] += d
        return price, grad

    if raw:
        return run
    return f
