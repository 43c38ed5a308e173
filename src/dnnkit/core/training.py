"""A plain training loop: ``fit``, ``evaluate`` and ``accuracy``.

``fit`` is deterministic given ``seed`` (its own ``torch.Generator`` shuffles the data), can write
an atomic safetensors checkpoint every epoch and resumes from it: an interrupted run that is
resumed ends with exactly the weights of an uninterrupted one, also when the model uses dropout
(the global torch / CUDA / numpy / Python RNG states are saved with each checkpoint).

Resume policy: a checkpoint records a fingerprint of the job (model structure, recipe, data
hash or the user's ``run_id``). When the file on disk was written by a different job, or with
other hyper-parameters, ``fit`` raises :class:`~dnnkit.core.checkpoint.CheckpointError` naming
the differing fields; it never silently trains with the checkpoint's settings instead of the
requested ones. ``resume=False`` starts fresh and overwrites the file.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dnnkit.core.checkpoint import (
    fingerprint_json,
    fingerprint_structure,
    fingerprint_tensors,
    load_training_state,
    save_training_state,
)
from dnnkit.core.hooks import eval_mode
from dnnkit.core.progress import track
from dnnkit.core.validation import (
    check_choice,
    check_int,
    check_positive,
    check_tensor,
    param_error,
)

__all__ = ["fit", "evaluate", "accuracy", "predict", "FitHistory", "make_optimizer"]

log = logging.getLogger("dnnkit")


@dataclass
class FitHistory:
    """Per-epoch mean training loss (and whatever ``on_epoch`` returned)."""

    loss: list[float] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    resumed_from: int = 0


def make_optimizer(params, name: str, lr: float, weight_decay: float = 0.0
                   ) -> torch.optim.Optimizer:
    check_choice(name, "optimizer", ("adam", "sgd", "adamw"), where="fit")
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str | torch.optim.Optimizer = "adam",
    weight_decay: float = 0.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    after_step: Callable[[nn.Module], None] | None = None,
    on_epoch: Callable[[int, nn.Module], dict | None] | None = None,
    stop_after: int | None = None,
    progress: bool | None = False,
    description: str = "train",
    run_id: str | None = None,
) -> FitHistory:
    """Train ``model`` on ``(x, y)`` with mini-batches; data and model stay on their devices.

    Parameters
    ----------
    model, x, y
        The model and the full training tensors (``x`` moved to the model's device per batch).
    epochs, batch_size, lr, optimizer, weight_decay
        The recipe; ``optimizer`` is 'adam', 'adamw', 'sgd' or a ready optimizer.
    loss_fn
        Defaults to cross-entropy.
    seed
        Seeds the shuffling generator (no global RNG is touched).
    checkpoint, resume
        When given, state (weights, optimizer, every RNG state) is saved atomically after every
        epoch and, if the file exists and ``resume`` is true, training continues after the last
        saved epoch. The file must come from the same job: same model structure, recipe
        (batch size, lr, optimizer and its settings, weight decay, seed) and data (or the
        same ``run_id``); otherwise :class:`~dnnkit.core.checkpoint.CheckpointError` is raised.
        ``epochs`` may differ (a finished run can be extended). ``resume=False`` ignores and
        overwrites an existing file.
    run_id
        Identifies the job in the checkpoint fingerprint instead of a SHA-256 of ``x`` and
        ``y`` (use it for large data; you then vouch that the data did not change).
    after_step
        Called after every optimiser step (e.g. to clamp biases or apply masks).
    on_epoch
        Called after every epoch with ``(epoch, model)``; its dict is stored in the history.
    stop_after
        Stop (as if interrupted) after this many epochs in this call; used to test resumption.

    Raises
    ------
    ValueError
        On mismatched sizes, non-finite inputs, or a non-finite loss (the message names the epoch
        and step; the last checkpoint is left intact).
    CheckpointError
        When resuming from a checkpoint that is corrupt or was written by a different job.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(param_error("model", "fit", "a torch.nn.Module", type(model).__name__))
    if next(iter(model.parameters()), None) is None:
        raise ValueError(param_error("model", "fit", "a model with parameters to train "
                                     "(model has no parameters)", type(model).__name__))
    check_tensor(x, "x", where="fit")
    check_tensor(y, "y", where="fit")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"fit: x has {x.shape[0]} samples but y has {y.shape[0]}.")
    if x.shape[0] == 0:
        raise ValueError("fit: the training set is empty.")
    check_int(epochs, "epochs", 1, where="fit")
    check_int(batch_size, "batch_size", 1, where="fit")
    check_positive(lr, "lr", where="fit")
    loss_fn = loss_fn or nn.functional.cross_entropy
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else make_optimizer(
        params, optimizer, lr, weight_decay)
    gen = torch.Generator().manual_seed(seed)
    hist = FitHistory()
    start = 0
    fingerprint = None
    if checkpoint is not None:
        fingerprint = _fingerprint(model, opt, x, y, batch_size=batch_size, seed=seed,
                                   run_id=run_id)
    if checkpoint is not None and resume and Path(checkpoint).is_file():
        meta = load_training_state(checkpoint, model, opt, generator=gen,
                                   fingerprint=fingerprint)
        start = int(meta["step"])
        hist.loss = list(meta["extra"].get("loss", []))
        hist.resumed_from = start
        log.info("resumed from %s at epoch %d", checkpoint, start)
    try:
        device = next(model.parameters()).device
    except StopIteration:
        raise ValueError("fit: the model has no parameters to train.") from None
    n = x.shape[0]
    done = 0
    model.train()
    for epoch in track(range(start, epochs), description=description, enabled=progress,
                       total=epochs - start):
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for step, i in enumerate(range(0, n, batch_size)):
            idx = perm[i: i + batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            if not torch.isfinite(loss):
                gn = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params
                                   if p.grad is not None))
                raise ValueError(f"fit: non-finite loss {float(loss)} at epoch {epoch}, step "
                                 f"{step} (gradient norm {gn:.3g}); the last checkpoint is intact.")
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(model)
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        hist.loss.append(total / count)
        if on_epoch is not None:
            hist.extra.append(on_epoch(epoch, model) or {})
        if checkpoint is not None:
            save_training_state(checkpoint, model, opt, generator=gen, step=epoch + 1,
                                extra={"loss": hist.loss}, fingerprint=fingerprint)
        done += 1
        if stop_after is not None and done >= stop_after:
            break
    model.eval()
    return hist


def _fingerprint(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                 *, batch_size: int, seed: int, run_id: str | None) -> dict:
    """What defines a ``fit`` job; a checkpoint is only resumed by a job with the same one.

    Callables (``loss_fn``, ``after_step``, ``on_epoch``) cannot be identified reliably and are
    not part of it."""
    groups = [{k: (v if isinstance(v, (int, float, bool, str)) or v is None else repr(v))
               for k, v in g.items() if k != "params"} for g in opt.param_groups]
    fp = {
        "model": type(model).__qualname__,
        "structure": fingerprint_structure(model),
        "optimizer": type(opt).__name__,
        "param_groups": fingerprint_json(groups),
        "lr": [g.get("lr") for g in opt.param_groups],
        "batch_size": int(batch_size),
        "seed": int(seed),
        "data_shape": [list(x.shape), list(y.shape)],
    }
    if run_id is not None:
        fp["run_id"] = str(run_id)
    else:
        fp["data"] = fingerprint_tensors(x, y)
    return fp


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 1024) -> torch.Tensor:
    """Model outputs on ``x`` in eval mode (the model's mode flags are restored)."""
    device = next(model.parameters()).device
    with eval_mode(model):
        outs = [model(x[i: i + batch_size].to(device)) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1024
             ) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    pred = predict(model, x, batch_size=batch_size).argmax(1).cpu()
    return float((pred == y.cpu()).float().mean())


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
             loss_fn: Callable | None = None, batch_size: int = 1024) -> dict[str, float]:
    """Mean loss and accuracy."""
    out = predict(model, x, batch_size=batch_size).cpu()
    loss_fn = loss_fn or nn.functional.cross_entropy
    return {"loss": float(loss_fn(out, y.cpu())),
            "accuracy": float((out.argmax(1) == y.cpu()).float().mean())}
