"""The paper's baselines: sensitivity analysis and Taylor decomposition at the nearest root.

Both appear in Montavon et al. (2017), Sec. 2 and Sec. 5.1 (MNIST figure): sensitivity
``R_p = (df/dx_p)^2`` is positive but not conservative; Taylor decomposition at the nearest root
point ``x~`` (``f(x~) = 0``) gives ``R_p = df/dx_p|_{x~} (x_p - x~_p)`` whose sum misses ``f(x)`` by
the higher-order terms.
"""

from __future__ import annotations

import torch
from torch import nn

from dnnkit.core.hooks import eval_mode
from dnnkit.core.validation import (
    Instance,
    Int,
    Real,
    Tensor,
    check_int,
    check_tensor,
    validate_params,
)
from dnnkit.deep_taylor.decompose import TARGET, _targets

_MODEL_X = {"model": Instance(nn.Module), "x": Tensor(ndim=(2, 3, 4, 5)), "target": TARGET}

__all__ = ["sensitivity", "taylor_nearest_root", "gradient"]


def gradient(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(df_target/dx, f_target(x))`` per sample (model mode flags restored)."""
    check_tensor(x, "x", where="deep_taylor.gradient")
    with eval_mode(model), torch.enable_grad():
        xin = x.detach().clone().requires_grad_(True)
        out = model(xin)
        t = _targets(target, out)
        f = out.gather(1, t[:, None]).squeeze(1)
        (g,) = torch.autograd.grad(f.sum(), xin)
    return g.detach(), f.detach()


@validate_params(_MODEL_X)
def sensitivity(model: nn.Module, x: torch.Tensor, target: int | torch.Tensor | None = None
                ) -> torch.Tensor:
    """Sensitivity analysis ``R_p = (df/dx_p)^2`` (paper Sec. 2): positive, not conservative."""
    g, _ = gradient(model, x, target)
    return g * g


@validate_params({**_MODEL_X, "steps": Int(1, 100_000),
                  "tol": Real(0.0, 1.0, closed="left")})
def taylor_nearest_root(
    model: nn.Module,
    x: torch.Tensor,
    target: int | torch.Tensor | None = None,
    *,
    steps: int = 200,
    tol: float = 1e-3,
) -> torch.Tensor:
    """Taylor decomposition at the nearest root point (paper Sec. 2).

    The root ``x~`` is searched by Newton steps towards the level set ``f = 0``,
    ``x <- x - f(x) g / ||g||^2`` (each step is the minimum-norm move that zeroes the first-order
    expansion), starting at ``x``, until ``f <= tol * f(x)``; a step that overshoots into the
    region ``f <= 0`` (where a ReLU net's gradient may vanish) is bisected back so the root is
    approached from the active side. Then ``R_p = df/dx_p|_{x~} (x_p - x~_p)``. The gap
    ``|f(x) - sum_p R_p|`` is the approximation error of the first-order expansion.
    """
    check_int(steps, "steps", 1, 100_000, where="deep_taylor.taylor_nearest_root")
    g, f0 = gradient(model, x, target)
    with eval_mode(model):
        out = model(x.detach())
    t = _targets(target, out)
    shape = (-1,) + (1,) * (x.ndim - 1)
    root = x.detach().clone()
    floor = tol * f0.abs().clamp_min(1e-12)
    for _ in range(steps):
        g, f = gradient(model, root, t)
        active = f > floor
        if not bool(active.any()):
            break
        flat = g.flatten(1)
        norm2 = (flat * flat).sum(1).clamp_min(1e-30)
        cand = root - (f / norm2).view(shape) * g
        _, f_cand = gradient(model, cand, t)
        # For piecewise-linear nets f = 0 is reached on a flat (dead) region where the gradient
        # vanishes; stay on the active side: bisect back to a point with 0 < f <= floor.
        lo, hi = root, cand
        for _ in range(40):
            overshoot = f_cand <= 0
            if not bool((overshoot & active).any()):
                break
            mid = 0.5 * (lo + hi)
            _, f_mid = gradient(model, mid, t)
            go_lo = (f_mid > 0).view(shape)
            lo = torch.where(go_lo & overshoot.view(shape), mid, lo)
            hi = torch.where(~go_lo & overshoot.view(shape), mid, hi)
            cand = torch.where(overshoot.view(shape), hi, cand)
            _, f_cand = gradient(model, cand, t)
            if bool(((f_cand > 0) | ~active).all()):
                break
        cand = torch.where((f_cand <= 0).view(shape), lo, cand)
        root = torch.where(active.view(shape), cand, root)
    g_root, _ = gradient(model, root, t)
    return g_root * (x.detach() - root)
