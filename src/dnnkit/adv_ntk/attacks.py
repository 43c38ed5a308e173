"""PGD attacks and robust accuracy for any classifier ``nn.Module`` (kernel predictors included).

The attack is the standard projected gradient ascent of Madry et al. (2018): every iteration takes
the gradient at the *current* iterate and projects onto the ε-ball around the *clean* input. (The
official Adv-NTK JAX PGD evaluates the gradient at the random start on every iteration and projects
around the random start; it is not reproduced here.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from dnnkit.core.hooks import eval_mode
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Callable_,
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Seed,
    Sequence_,
    Tensor,
    check_choice,
    check_int,
    check_interval,
    check_positive,
    check_tensor,
    param_error,
    validate_params,
)

__all__ = ["pgd_attack", "robust_accuracy"]

log = logging.getLogger("dnnkit")


def _loss(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if y.ndim == 1 and y.numel() and int(y.max()) >= out.shape[1]:
        raise ValueError(param_error("y", "adv_ntk.pgd_attack",
                                     f"class labels in [0, {out.shape[1] - 1}] (the model's "
                                     "outputs)", int(y.max())))
    if kind == "ce":
        return F.cross_entropy(out, y, reduction="sum")
    if y.ndim == 1:
        y = F.one_hot(y, out.shape[1]).to(out.dtype)
    return 0.5 * ((out - y.to(out.dtype)) ** 2).sum()


def _check_labels(y: torch.Tensor, n: int, where: str, loss: str) -> torch.Tensor:
    y = check_tensor(y, "y", where=where)
    if y.shape[0] != n or y.ndim not in (1, 2):
        raise ValueError(param_error("y", where, f"labels (N,) or targets (N, c) with N={n}",
                                     f"shape {tuple(y.shape)}"))
    if y.ndim == 1:
        if y.is_floating_point():
            raise TypeError(param_error("y", where, "integer class labels when 1-D",
                                        f"dtype {y.dtype}"))
        if bool((y < 0).any()):
            raise ValueError(param_error("y", where, "non-negative class labels", int(y.min())))
    elif loss == "ce":
        y = y.to(torch.get_default_dtype()) if not y.is_floating_point() else y
    return y


_ATTACK = {"x": Tensor(ndim=(2, 3, 4, 5)), "y": Tensor(ndim=(1, 2)), "eps": Real(0.0, 1e6),
           "steps": Int(0, 100_000), "alpha": Optional_(Real(0.0, 1e6, closed="right")),
           "norm": Options("linf", "l2"), "random_start": Instance(bool),
           "loss": Options("mse", "ce"),
           "clip": Optional_(Sequence_(Real(), min_len=2, max_len=2)), "generator": Seed()}


@validate_params({"model": Callable_(), **_ATTACK})
def pgd_attack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    alpha: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    loss: str = "mse",
    clip: Sequence[float] | None = (0.0, 1.0),
    generator: torch.Generator | int | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on the loss of ``model`` inside an L∞ or L2 ball.

    Parameters
    ----------
    model : torch.nn.Module
        Any classifier mapping ``(N, ...)`` inputs to ``(N, c)`` outputs (a kernel predictor
        such as :class:`~dnnkit.adv_ntk.AdvNTK`, or a finite network). Run in eval mode during
        the attack; its modes are restored afterwards. Parameters are not modified.
    x : torch.Tensor
        ``(N, ...)`` clean inputs.
    y : torch.Tensor
        ``(N,)`` integer labels or ``(N, c)`` targets.
    eps : float
        Radius of the ball (>= 0).
    steps : int
        Number of iterations (>= 0). PGD-10 in the paper.
    alpha : float, optional
        Step size (> 0); default ``2.5 * eps / steps`` (Madry et al. 2018).
    norm : {"linf", "l2"}
        Threat model. L∞ steps use the gradient sign, L2 steps the normalised gradient.
    random_start : bool
        Start from a uniform random point of the ball (L∞) or a random point of the ball (L2).
    loss : {"mse", "ce"}
        ``½ ||f(x) - y||²`` per sample (the paper's squared loss; labels are one-hot encoded) or
        cross-entropy.
    clip : (float, float) or None
        Data range the adversarial input is clipped to (paper: [-0.5, 0.5]); ``None`` = no clip.
    generator : torch.Generator or int, optional
        Randomness of the random start.

    Returns
    -------
    torch.Tensor
        ``x_adv`` with the shape, dtype and device of ``x``, ``||x_adv - x|| <= eps``.

    Raises
    ------
    ValueError
        Negative/NaN ``eps``, ``steps < 0``, ``alpha <= 0``, bad ``norm``/``loss``, label shape
        mismatch, non-finite inputs, or ``clip`` with low >= high.

    References
    ----------
    Madry et al. (2018), "Towards Deep Learning Models Resistant to Adversarial Attacks", eq. (3);
    Fu & Wang (2024), Section 6 (PGD-10, ε = 8/255, step 1.6/255 on [-0.5, 0.5] data).

    Examples
    --------
    >>> import torch
    >>> from dnnkit.adv_ntk import pgd_attack
    >>> net = torch.nn.Linear(4, 3)
    >>> x = torch.rand(8, 4); y = torch.randint(0, 3, (8,))
    >>> xa = pgd_attack(net, x, y, eps=0.1, generator=0)
    >>> bool((xa - x).abs().max() <= 0.1 + 1e-7)
    True
    """
    where = "pgd_attack"
    if not isinstance(model, torch.nn.Module):
        raise TypeError(param_error("model", where, "a torch.nn.Module", type(model).__name__))
    x = check_tensor(x, "x", where=where, floating=True)
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(param_error("x", where, "a non-empty batch (N, ...)",
                                     f"shape {tuple(x.shape)}"))
    eps = check_interval(eps, "eps", 0.0, None, where=where)
    if math.isinf(eps):
        raise ValueError(param_error("eps", where, "a finite float >= 0", eps))
    steps = check_int(steps, "steps", 0, where=where)
    alpha = 2.5 * eps / max(steps, 1) if alpha is None else check_positive(alpha, "alpha",
                                                                           where=where)
    check_choice(norm, "norm", ("linf", "l2"), where=where)
    check_choice(loss, "loss", ("mse", "ce"), where=where)
    y = _check_labels(y, x.shape[0], where, loss).to(x.device)
    lo = hi = None
    if clip is not None:
        if len(clip) != 2 or not float(clip[0]) < float(clip[1]):
            raise ValueError(param_error("clip", where, "a pair (low, high) with low < high or "
                                         "None", clip))
        lo, hi = float(clip[0]), float(clip[1])
        if bool((x < lo).any()) or bool((x > hi).any()):
            log.warning("pgd_attack: inputs lie outside clip=(%g, %g) (data range [%g, %g]); the "
                        "adversarial inputs are clipped to it.", lo, hi, float(x.min()),
                        float(x.max()))
    x0 = x.detach()
    if eps == 0.0:
        return x0.clone()

    def project(xa: torch.Tensor) -> torch.Tensor:
        delta = xa - x0
        if norm == "linf":
            xa = torch.max(torch.min(xa, x0 + eps), x0 - eps)
        else:
            n = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
            factor = (eps / n).clamp(max=1.0).view(-1, *([1] * (x0.ndim - 1)))
            xa = x0 + delta * factor
        return xa.clamp(lo, hi) if lo is not None else xa

    xa = x0.clone()
    if random_start:
        g = make_generator(generator)
        if norm == "linf":
            noise = (torch.rand(x0.shape, generator=g, dtype=x0.dtype) * 2 - 1) * eps
        else:
            d = torch.randn(x0.shape, generator=g, dtype=x0.dtype).flatten(1)
            d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-12)
            r = torch.rand(x0.shape[0], 1, generator=g, dtype=x0.dtype) ** (1.0 / d.shape[1])
            noise = (d * r * eps).view_as(x0)
        xa = project(x0 + noise.to(x0.device))
    with eval_mode(model):
        for _ in range(steps):
            xa = xa.detach().requires_grad_(True)
            obj = _loss(model(xa), y, loss)
            (grad,) = torch.autograd.grad(obj, xa)
            if norm == "linf":
                step = grad.sign()
            else:
                gn = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
                step = grad / gn.view(-1, *([1] * (x0.ndim - 1)))
            xa = project(xa.detach() + alpha * step)
    return xa.detach()


@validate_params({"model": Instance(torch.nn.Module), "x": Tensor(ndim=(2, 3, 4, 5)),
                  "y": Tensor(ndim=(1, 2)), "batch_size": Int(1, 10_000_000)})
def robust_accuracy(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 512,
    **pgd_kwargs,
) -> tuple[float, float]:
    """Clean and PGD-robust accuracy of a classifier (``argmax`` of its outputs).

    Parameters
    ----------
    model : torch.nn.Module
        Any classifier; run in eval mode (restored afterwards).
    x, y : torch.Tensor
        ``(N, ...)`` inputs and ``(N,)`` integer labels (or ``(N, c)`` one-hot targets).
    batch_size : int
        Points attacked at once.
    **pgd_kwargs
        Passed to :func:`pgd_attack` (``eps`` is required; ``generator`` may be an int seed).

    Returns
    -------
    (float, float)
        ``(clean accuracy, robust accuracy)``.

    Examples
    --------
    >>> import torch
    >>> from dnnkit.adv_ntk import robust_accuracy
    >>> net = torch.nn.Linear(4, 3); x = torch.rand(16, 4); y = net(x).argmax(1)
    >>> clean, robust = robust_accuracy(net, x, y, eps=0.05, generator=0)
    >>> clean, robust <= clean
    (1.0, True)
    """
    where = "robust_accuracy"
    x = check_tensor(x, "x", where=where, floating=True)
    batch_size = check_int(batch_size, "batch_size", 1, where=where)
    if "eps" not in pgd_kwargs:
        raise TypeError("robust_accuracy() needs the keyword argument 'eps' (attack radius).")
    y = _check_labels(y, x.shape[0], where, pgd_kwargs.get("loss", "mse"))
    labels = y if y.ndim == 1 else y.argmax(1)
    if "generator" in pgd_kwargs:
        pgd_kwargs["generator"] = make_generator(pgd_kwargs["generator"])
    clean = robust = 0
    with eval_mode(model):
        for i in range(0, x.shape[0], batch_size):
            xb, yb, lb = x[i:i + batch_size], y[i:i + batch_size], labels[i:i + batch_size]
            lb = lb.to(x.device)
            with torch.no_grad():
                clean += int((model(xb).argmax(1) == lb).sum())
            xa = pgd_attack(model, xb, yb, **pgd_kwargs)
            with torch.no_grad():
                robust += int((model(xa).argmax(1) == lb).sum())
    n = x.shape[0]
    return clean / n, robust / n
