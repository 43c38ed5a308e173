"""Client side of FedDIP: dynamic pruning with error feedback (DPF) and incremental
regularisation, on any ``nn.Module``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from dnnkit.core.hooks import preserved_mode
from dnnkit.core.validation import (
    Callable_,
    Instance,
    Int,
    Optional_,
    Real,
    Sequence_,
    Str,
    check_int,
    check_interval,
    param_error,
    validate_params,
)
from dnnkit.feddip.masks import check_mask, prunable_parameters

__all__ = ["dpf_local_train"]

_WHERE = "dpf_local_train"


@torch.no_grad()
def _sgd_step(params: list[torch.Tensor], grads_of: list[torch.Tensor],
              bufs: list[torch.Tensor | None], *, lr: float, momentum: float,
              weight_decay: float) -> None:
    """One step of ``torch.optim.SGD`` (dampening 0, no Nesterov) on ``params`` with the
    gradients held by ``grads_of`` (the same tensors, or the masked copies the gradient was
    taken at), written out: building a torch optimizer per client update costs more than the
    update itself for small models."""
    for i, (p, q) in enumerate(zip(params, grads_of)):
        if q.grad is None:
            continue
        d = q.grad.add(p, alpha=weight_decay) if weight_decay else q.grad
        if momentum:
            if bufs[i] is None:
                bufs[i] = d.detach().clone()
            else:
                bufs[i].mul_(momentum).add_(d)
            d = bufs[i]
        p.add_(d, alpha=-lr)


def _penalised_value(loss: torch.Tensor, norms: Sequence[torch.Tensor], lam: float) -> float:
    """``float(loss + lam * (0 + n_1 + ... + n_L))`` evaluated in float32 exactly as the
    tensor expression would be (same roundings), without five tensor operations per step."""
    if (loss.dtype != torch.float32 or loss.device.type != "cpu"
            or any(n.dtype != torch.float32 for n in norms)):  # one device sync, not L + 1
        with torch.no_grad():
            return float(loss.detach() + lam * sum(norms))
    reg = np.float32(0.0)
    for n in norms:
        reg = reg + np.float32(n.item())
    return float(np.float32(loss.item()) + np.float32(lam) * reg)


@torch.no_grad()
def _add_norm_gradient(ws: list[torch.Tensor], norms: Sequence[torch.Tensor],
                       lam_t: torch.Tensor) -> None:
    """``w.grad += (w / ||w||_2) * lam`` for each tensor: the gradient of ``lam * ||w||_2`` in
    autograd's own order of operations (so the sum is bit-identical to differentiating the
    norms through the graph); a zero norm contributes 0 (autograd's subgradient)."""
    on_cpu = ws[0].device.type == "cpu"
    if on_cpu and all(float(n) > 0 for n in norms) and all(w.grad is not None for w in ws):
        regs = torch._foreach_div(ws, list(norms))
        torch._foreach_mul_(regs, lam_t)
        torch._foreach_add_([w.grad for w in ws], regs)
        return
    for w, nrm in zip(ws, norms):
        if on_cpu and not float(nrm) > 0:
            continue
        # off the CPU: no host sync per tensor, autograd's masked_fill for a zero norm
        reg = (torch.div(w, nrm) if on_cpu
               else torch.div(w, nrm).masked_fill_(nrm == 0, 0.0)).mul_(lam_t)
        if w.grad is None:
            w.grad = reg
        else:
            w.grad.add_(reg)


@validate_params({"model": Instance(nn.Module), "mask": Optional_(Instance(Mapping)),
                  "epochs": Int(1, 100_000), "lr": Real(0.0, 100.0, closed="right"),
                  "lam": Real(0.0, 1e6), "weight_decay": Real(0.0, 10.0),
                  "momentum": Real(0.0, 1.0, closed="left"),
                  "norm_p": Real(0.0, 100.0, closed="right"), "prox_mu": Real(0.0, 1e6),
                  "global_state": Optional_(Instance(Mapping)),
                  "prunable": Optional_(Sequence_(Str(), min_len=0)),
                  "loss_fn": Optional_(Callable_())})
def dpf_local_train(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor] | None,
    loader: Iterable,
    *,
    epochs: int = 5,
    lr: float = 0.1,
    lam: float = 0.0,
    weight_decay: float = 5e-4,
    momentum: float = 0.0,
    norm_p: float = 2.0,
    prox_mu: float = 0.0,
    global_state: Mapping[str, torch.Tensor] | None = None,
    prunable: Sequence[str] | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Local training of one FedDIP client: masked forward, dense update (DPF).

    Each step computes the loss at the masked weights ``w~ = m * w`` and applies the gradient
    taken at ``w~`` to the dense weights ``w`` (as the official code copies it), so pruned
    coordinates keep receiving gradient and the pruning error is fed back (DPF, Lin et al.
    2020)::

        w <- w - lr * (grad_w~ [CE(f(x; w~), y) + lam * sum_l ||w~_l||_p
                                + prox_mu/2 ||w~ - w_global||^2] + weight_decay * w)

    ``model`` is trained in place (its dense weights; the masked model is ``m * w``). During a
    step the parameters briefly hold ``m * w`` and are restored even if the step raises.

    Parameters
    ----------
    model : nn.Module
        The client's model, already holding the global weights.
    mask : mapping of str to bool Tensor, or None
        Keep-mask per prunable state-dict entry; ``None`` = dense training.
    loader : iterable of (x, y)
        The client's batches (e.g. a ``DataLoader``); moved to the model's device.
    epochs : int
        Local epochs ``E``.
    lr, weight_decay, momentum : float
        ``torch.optim.SGD`` settings (official code: momentum 0, weight decay 5e-4).
    lam : float
        Regularisation strength ``lambda_t`` of this round (0 = off).
    norm_p : float
        ``p`` of the per-tensor norm penalty (2: plain, non-squared L2 norm).
    prox_mu : float
        FedProx coefficient (0 = off); needs ``global_state``.
    global_state : mapping, optional
        The received global weights (for the proximal term).
    prunable : sequence of str, optional
        Tensors the penalty acts on (default: the mask's keys, or all Conv/Linear weights).
    loss_fn : callable, optional
        ``loss_fn(logits, y)``; default cross-entropy.

    Returns
    -------
    dict
        ``num_examples`` (samples seen per epoch), ``loss`` (mean objective), ``steps``.

    Raises
    ------
    ValueError
        Empty loader, a mask that does not match the model, a non-finite loss.

    References
    ----------
    Long et al., FedDIP, ICDM 2023 (arXiv:2309.06805), Sec. III (DPF update with error feedback,
    incremental regularisation); official code ``client.py``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> mask = {"0.weight": torch.rand(8, 4) > 0.5, "2.weight": torch.ones(3, 8, dtype=torch.bool)}
    >>> data = [(torch.randn(16, 4), torch.randint(0, 3, (16,)))]
    >>> dpf_local_train(net, mask, data, epochs=2, lr=0.1, lam=1e-3)["num_examples"]
    16
    """
    if next(iter(model.parameters()), None) is None:
        raise ValueError(param_error("model", "dpf_local_train", "a model with parameters to "
                                     "train (model has no parameters)", type(model).__name__))
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("model", _WHERE, "a torch.nn.Module", type(model).__name__))
    check_int(epochs, "epochs", 1, where=_WHERE)
    check_interval(lr, "lr", 0.0, None, closed="neither", where=_WHERE)
    check_interval(lam, "lam", 0.0, None, where=_WHERE)
    check_interval(weight_decay, "weight_decay", 0.0, None, where=_WHERE)
    check_interval(momentum, "momentum", 0.0, 1.0, closed="left", where=_WHERE)
    check_interval(norm_p, "norm_p", 0.0, None, closed="neither", where=_WHERE)
    check_interval(prox_mu, "prox_mu", 0.0, None, where=_WHERE)
    if prox_mu > 0 and global_state is None:
        raise ValueError(f"The 'global_state' parameter of {_WHERE} is required when "
                         f"prox_mu > 0. Got None instead.")
    params = dict(model.named_parameters())
    if mask is not None:
        mask = check_mask(mask, params, where=_WHERE)
    if prunable is None:
        prunable = list(mask) if mask else prunable_parameters(model)
    missing = [n for n in prunable if n not in params]
    if missing:
        raise KeyError(f"{_WHERE}: prunable tensors {missing[:5]} are not parameters of the "
                       "model.")
    first = next(iter(params.values()))
    dev = first.device
    masks = {k: m.to(device=dev, dtype=params[k].dtype) for k, m in (mask or {}).items()}
    anchor = None
    if prox_mu > 0:
        anchor = {k: global_state[k].detach().to(dev, params[k].dtype) for k in params}
    loss_fn = loss_fn or nn.functional.cross_entropy
    plist = list(params.values())
    bufs: list[torch.Tensor | None] = [None] * len(plist)
    total, steps, seen = 0.0, 0, 0
    masked_names = [k for k in params if k in masks]
    # The dense weights w of the masked tensors live in ``dense`` during the loop; the
    # parameters hold w~ = m * w for forward/backward, and the SGD step updates ``dense``.
    # One multiply per masked tensor and step (no save/restore copies).
    dense = {k: params[k].detach().clone() for k in masked_names}
    step_params = [dense.get(k, p) for k, p in params.items()]
    # lambda * ||w~||_2 has the closed-form gradient (w~ / ||w~||_2) * lambda (0 at w~ = 0, as
    # autograd's subgradient): added to the gradient after backward, bit-identical to autograd
    # and several times cheaper than differentiating the norms through the graph. Other p, and
    # FedProx (whose third gradient term autograd sums in its own order), keep autograd.
    closed_form = lam > 0 and norm_p == 2.0 and prox_mu == 0
    lam_t = torch.tensor(lam, dtype=first.dtype, device=dev) if closed_form else None
    reg_params = [params[k] for k in prunable]
    try:
        with preserved_mode(model):
            model.train()
            for epoch in range(epochs):
                seen_epoch = 0
                for batch in loader:
                    x, y = batch[0].to(dev), batch[1].to(dev)
                    # masked forward: the gradient is taken at w~ = m * w
                    with torch.no_grad():
                        for k in masked_names:
                            torch.mul(dense[k], masks[k], out=params[k])
                    loss = loss_fn(model(x), y)
                    norms = None
                    if closed_form:
                        with torch.no_grad():
                            norms = (torch._foreach_norm(reg_params) if dev.type == "cpu"
                                     else [torch.linalg.vector_norm(w) for w in reg_params])
                        value = _penalised_value(loss, norms, lam)
                    elif lam > 0:
                        reg = sum(torch.linalg.vector_norm(params[k], ord=norm_p)
                                  for k in prunable)
                        loss = loss + lam * reg
                    if anchor is not None:
                        prox = sum(((w - anchor[k]) ** 2).sum() for k, w in params.items())
                        loss = loss + 0.5 * prox_mu * prox
                    if norms is None:
                        value = float(loss.detach())
                    if not math.isfinite(value):
                        raise ValueError(
                            f"{_WHERE}: the local loss became non-finite at epoch {epoch}, "
                            f"step {steps} (lr={lr}); lower the learning rate.")
                    for p in plist:
                        p.grad = None
                    loss.backward()
                    if norms is not None:
                        _add_norm_gradient(reg_params, norms, lam_t)
                    _sgd_step(step_params, plist, bufs, lr=lr, momentum=momentum,
                              weight_decay=weight_decay)
                    total += value
                    steps += 1
                    seen_epoch += int(y.shape[0])
                if seen_epoch == 0:
                    raise ValueError(f"The 'loader' parameter of {_WHERE} must yield at least "
                                     "one batch. Got an empty loader (a client without data) "
                                     "instead.")
                seen = seen_epoch
    finally:
        with torch.no_grad():  # the model holds its dense weights again, even after an error
            for k in masked_names:
                params[k].copy_(dense[k])
    return {"num_examples": seen, "loss": total / steps, "steps": steps}
