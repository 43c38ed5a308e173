"""One call from models and an input to shared interactions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from dnnkit.core.validation import (
    AnyOf,
    Callable_,
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Sequence_,
    Str,
    Tensor,
    param_error,
    validate_params,
)
from dnnkit.interactions.extraction import InteractionResult, extract_shared_interactions
from dnnkit.interactions.masking import masked_outputs

__all__ = ["explain_models"]


_BOUND = Optional_(AnyOf(Real(0.0, None), Sequence_(Real(0.0, None))))


@validate_params({"models": Sequence_(Callable_()), "x": Tensor(dtype="floating"),
                  "players": Instance(list, tuple, torch.Tensor), "baseline": AnyOf(Real(), Tensor()), "target": Optional_(Int(0, 2**31 - 1)),
                  "output": Str(), "alpha": Real(0.0, 1.0),
                  "tau_ratio": Real(0.0, 1.0), "specific_bound": _BOUND,
                  "solver": Options("auto", "adam", "lp"), "steps": Int(1, 10_000_000),
                  "lr": Real(0.0, 100.0, closed="right"), "batch_size": Int(1, 1 << 24)})
def explain_models(
    models: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    players: Sequence[Sequence[int]] | torch.Tensor,
    *,
    baseline: torch.Tensor | float = 0.0,
    target: int | None = None,
    output: Literal["log_odds", "logit", "prob"] = "log_odds",
    alpha: float = 0.1,
    tau_ratio: float = 0.02,
    specific_bound: float | Sequence[float] | None = None,
    solver: Literal["auto", "adam", "lp"] = "auto",
    steps: int = 3000,
    lr: float = 0.05,
    batch_size: int = 256,
) -> list[InteractionResult]:
    """Masked outputs of every model on ``x`` followed by the joint extraction (Eq. (6)).

    Parameters
    ----------
    models : sequence of >= 2 callables (eval-mode modules)
        Models trained for the same task; each maps ``(B, *x.shape)`` to logits ``(B, C)``.
    x, players, baseline, output, batch_size
        As in :func:`~dnnkit.interactions.masking.masked_outputs`.
    target : int, optional
        Explained class, the same for all models; defaults to the first model's prediction.
    alpha, tau_ratio, specific_bound, solver, steps, lr
        As in :func:`~dnnkit.interactions.extraction.extract_shared_interactions`.

    Returns
    -------
    list of InteractionResult, one per model.

    References
    ----------
    Chen et al., "Defining and Extracting Generalizable Interaction Primitives from DNNs",
    ICLR 2024 (arXiv:2401.16318).

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0) and None
    >>> models = [torch.nn.Linear(6, 3).eval(), torch.nn.Sequential(torch.nn.Linear(6, 8),
    ...           torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval()]
    >>> res = explain_models(models, torch.randn(6), [[0, 1], [2, 3], [4, 5]], steps=200)
    >>> [r.i_and.shape for r in res]
    [torch.Size([8]), torch.Size([8])]
    """
    where = "explain_models"
    if isinstance(models, torch.nn.Module) or not isinstance(models, Sequence) or len(models) < 1:
        raise ValueError(param_error("models", where, "a non-empty sequence of models",
                                     type(models).__name__ if not isinstance(models, Sequence)
                                     else f"{len(models)} model(s)"))
    if target is None:
        with torch.no_grad():
            if isinstance(models[0], torch.nn.Module) and models[0].training:
                raise ValueError(f"{where}: model 0 is in training mode; call model.eval() first.")
            target = int(models[0](x.unsqueeze(0)).reshape(1, -1).argmax(1))
    values = []
    for i, model in enumerate(models):
        try:
            values.append(masked_outputs(model, x, players=players, baseline=baseline,
                                         target=target, output=output, batch_size=batch_size))
        except ValueError as exc:
            raise ValueError(f"{where}: model {i}: {exc}") from exc
    return extract_shared_interactions(values, alpha=alpha, tau_ratio=tau_ratio,
                                       specific_bound=specific_bound, solver=solver, steps=steps,
                                       lr=lr)
