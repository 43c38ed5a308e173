"""Adv-NTK: adversarial training of an infinite-width net (Fu & Wang 2024, Algorithm 1).

What is learned is ϖ, one scalar per optimisation sample (the diagonalised regularisation
``D = diag(|ϖ|)`` inside ``exp(-Θ D)``); the kernel and the optimisation set stay fixed. Every step
draws a minibatch of the held-out validation split, attacks the *current* predictor with PGD, and
takes a normalised gradient step on the squared loss of the adversarial examples, as the official
``train_advntk.py`` / ``advnt/adv_mse.py`` do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from dnnkit.adv_ntk.attacks import pgd_attack
from dnnkit.adv_ntk.kernels import KernelSpec, ntk_kernel
from dnnkit.adv_ntk.predict import AdvNTK, one_hot
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Callable_,
    Instance,
    Int,
    Optional_,
    Real,
    Seed,
    Sequence_,
    Tensor,
    check_int,
    check_interval,
    check_tensor,
    param_error,
    validate_params,
)

__all__ = ["fit_adv_ntk"]


_CLIP = Optional_(Sequence_(Real(), min_len=2, max_len=2))


@validate_params({"x_train": Tensor(ndim=(2, 3, 4, 5)), "y_train": Tensor(ndim=(1, 2)),
                  "spec": Optional_(Instance(KernelSpec)), "x_val": Optional_(Tensor(ndim=(2, 3, 4, 5))),
                  "y_val": Optional_(Tensor(ndim=(1, 2))), "val_size": Int(1, 10_000_000),
                  "steps": Int(0, 10_000_000), "batch_size": Int(1, 10_000_000),
                  "lr": Real(0.0, 1e6, closed="right"), "weight_decay": Real(0.0, 1e6),
                  "grad_norm": Instance(bool), "eps": Real(0.0, 1e6),
                  "pgd_steps": Int(0, 100_000),
                  "pgd_alpha": Optional_(Real(0.0, 1e6, closed="right")), "clip": _CLIP,
                  "per_class": Instance(bool), "num_classes": Optional_(Int(2, 1_000_000)),
                  "diag_reg": Real(0.0, 1e12), "dtype": Instance(torch.dtype), "seed": Seed(),
                  "on_step": Optional_(Callable_())})
def fit_adv_ntk(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    spec: KernelSpec | None = None,
    *,
    x_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    val_size: int = 2000,
    steps: int = 50,
    batch_size: int = 128,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    grad_norm: bool = True,
    eps: float = 8 / 255,
    pgd_steps: int = 10,
    pgd_alpha: float | None = 1.6 / 255,
    clip: Sequence[float] | None = (-0.5, 0.5),
    per_class: bool = False,
    num_classes: int | None = None,
    diag_reg: float = 0.0,
    dtype: torch.dtype = torch.float64,
    seed: int | torch.Generator | None = 0,
    on_step: Callable[[int, AdvNTK], dict | None] | None = None,
) -> tuple[AdvNTK, list[dict]]:
    """Train Adv-NTK: learn ϖ of the kernel predictor on PGD examples of a validation split.

    Parameters
    ----------
    x_train, y_train : torch.Tensor
        ``(N, ...)`` inputs and ``(N,)`` integer labels (or ``(N, c)`` targets). Without
        ``x_val``, they are split at random into ``D_opt`` (``N - val_size`` points, the kernel
        predictor's training set) and ``D_val`` (``val_size`` points, used to learn ϖ). With
        ``x_val``/``y_val``, all of ``x_train`` is ``D_opt``.
    spec : KernelSpec, optional
        Infinite-width architecture (default ``KernelSpec()``).
    val_size : int
        Size of ``D_val`` when it is drawn from ``x_train`` (paper: 2000 of 12000).
    steps, batch_size, lr, weight_decay, grad_norm
        T iterations on minibatches of ``D_val`` (paper: 50, 128); update
        ``ϖ ← ϖ - lr (g / (||g||₂ + 1e-8) + weight_decay ϖ)`` (GradNorm when ``grad_norm``; paper
        lr 0.1 on CIFAR-10, 1.0 on SVHN, no weight decay).
    eps, pgd_steps, pgd_alpha, clip
        L∞ PGD used to make the adversarial validation examples (paper: 8/255, 10, 1.6/255,
        data in [-0.5, 0.5]). ``pgd_alpha=None`` uses ``2.5 * eps / pgd_steps``.
    per_class : bool
        Learn ϖ of shape ``(M, c)`` instead of ``(M,)``.
    num_classes, diag_reg, dtype
        Passed to :class:`~dnnkit.adv_ntk.AdvNTK`.
    seed : int or torch.Generator or None
        Randomness of the split, the minibatches and the PGD random starts.
    on_step : callable, optional
        ``on_step(step, model)`` after every update (step = 1..T); a returned dict is merged into
        that step's history entry (e.g. test accuracies).

    Returns
    -------
    (AdvNTK, list of dict)
        The trained predictor (ϖ left trainable) and one history entry per step: ``step``,
        ``val_adv_loss`` (before the update), ``val_adv_acc``, ``varpi_norm``, ``varpi_mean_abs``.

    Raises
    ------
    ValueError
        ``val_size`` not in [1, N - 1], ``steps < 0``, ``batch_size < 1``, ``lr <= 0``, bad attack
        parameters, label/input mismatches, non-finite data.

    References
    ----------
    Fu & Wang (2024), "Theoretical Analysis of Robust Overfitting for Wide DNNs: An NTK
    Approach", ICLR, Algorithm 1 (Adv-NTK) and Section 6 (settings).

    Examples
    --------
    >>> import torch
    >>> from dnnkit.adv_ntk import KernelSpec, fit_adv_ntk
    >>> x = torch.rand(40, 6, dtype=torch.float64) - 0.5; y = torch.arange(40) % 2
    >>> model, hist = fit_adv_ntk(x, y, KernelSpec(depth=2), val_size=10, steps=3,
    ...                           batch_size=5, eps=0.05, pgd_steps=2)
    >>> model.varpi.shape, len(hist), hist[-1]["varpi_norm"] > 0
    (torch.Size([30]), 3, True)
    """
    where = "fit_adv_ntk"
    spec = KernelSpec() if spec is None else spec
    x_train = check_tensor(x_train, "x_train", where=where)
    n = x_train.shape[0] if x_train.ndim >= 1 else 0
    steps = check_int(steps, "steps", 0, where=where)
    batch_size = check_int(batch_size, "batch_size", 1, where=where)
    lr = check_interval(lr, "lr", 0.0, None, closed="neither", where=where)
    weight_decay = check_interval(weight_decay, "weight_decay", 0.0, None, where=where)
    eps = check_interval(eps, "eps", 0.0, None, where=where)
    pgd_steps = check_int(pgd_steps, "pgd_steps", 0, where=where)
    if pgd_alpha is not None:
        check_interval(pgd_alpha, "pgd_alpha", 0.0, None, closed="neither", where=where)
    g = make_generator(seed)
    if x_val is None:
        if y_val is not None:
            raise ValueError(param_error("x_val", where, "given together with y_val", None))
        check_int(val_size, "val_size", 1, max(n - 1, 1), where=where)
        if n < 2:
            raise ValueError(param_error("x_train", where, "at least 2 points to split",
                                         f"shape {tuple(x_train.shape)}"))
        y_all = one_hot(y_train, num_classes, n=n, name="y_train", where=where, dtype=dtype)
        perm = torch.randperm(n, generator=g)
        opt, val = perm[: n - val_size], perm[n - val_size:]
        x_opt, y_opt = x_train[opt], y_all[opt]
        x_v, y_v = x_train[val], y_all[val]
    else:
        if y_val is None:
            raise ValueError(param_error("y_val", where, "given together with x_val", None))
        x_v = check_tensor(x_val, "x_val", where=where)
        y_opt = one_hot(y_train, num_classes, n=n, name="y_train", where=where, dtype=dtype)
        y_v = one_hot(y_val, y_opt.shape[1], n=x_v.shape[0], name="y_val", where=where,
                      dtype=dtype)
        if x_v.shape[1:] != x_train.shape[1:]:
            raise ValueError(param_error("x_val", where, f"inputs shaped like x_train "
                                         f"{tuple(x_train.shape[1:])}", f"shape {tuple(x_v.shape)}"))
        x_opt = x_train
    x_v = x_v.to(dtype)
    model = AdvNTK(x_opt, y_opt, spec, varpi=0.0, per_class=per_class, diag_reg=diag_reg,
                   dtype=dtype)
    m_val = x_v.shape[0]
    bs = min(batch_size, m_val)
    history: list[dict] = []
    for step in range(1, steps + 1):
        idx = torch.randperm(m_val, generator=g)[:bs]
        xb, yb = x_v[idx], y_v[idx]
        model.varpi.requires_grad_(False)  # attack a frozen predictor (P cached across PGD steps)
        try:
            xa = pgd_attack(model, xb, yb, eps=eps, steps=pgd_steps, alpha=pgd_alpha, clip=clip,
                            loss="mse", generator=g)
        finally:
            model.varpi.requires_grad_(True)
        with torch.no_grad():  # x' is held fixed: only P(ϖ) carries the gradient
            k = ntk_kernel(xa.to(dtype), model.x_train, spec)
        out = k @ model.weights()
        loss = ((out - yb) ** 2).sum() / (2 * bs)
        (grad,) = torch.autograd.grad(loss, model.varpi)
        with torch.no_grad():
            if grad_norm:
                grad = grad / (grad.norm() + 1e-8)
            model.varpi.sub_(lr * (grad + weight_decay * model.varpi))
            v = model.varpi
            entry = {"step": step, "val_adv_loss": float(loss),
                     "val_adv_acc": float((out.argmax(1) == yb.argmax(1)).double().mean()),
                     "varpi_norm": float(v.norm()), "varpi_mean_abs": float(v.abs().mean())}
        if on_step is not None:
            extra = on_step(step, model)
            if extra:
                entry.update(extra)
        history.append(entry)
        if not math.isfinite(entry["val_adv_loss"]):
            raise FloatingPointError(f"fit_adv_ntk: non-finite loss at step {step}; lower lr.")
    return model, history
