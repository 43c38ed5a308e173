"""Invariants and faithfulness measures of relevance maps, used by tests and reports alike."""

from __future__ import annotations

import torch
from torch import nn

from dnnkit.core.hooks import eval_mode
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Real,
    Seed,
    Tensor,
    check_int,
    check_tensor,
    param_error,
    validate_params,
)

__all__ = ["conservation_gap", "negative_relevance", "pixel_flipping", "region_fraction"]


@validate_params({"relevance": Tensor(ndim=(1, 2, 3, 4, 5)), "f": Tensor(ndim=1)})
def conservation_gap(relevance: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``|f(x) - sum_p R_p(x)|`` per sample (paper Sec. 2, conservation; 0 for DTD).

    Parameters
    ----------
    relevance
        ``(N, ...)`` relevance maps.
    f
        ``(N,)`` explained outputs.
    """
    check_tensor(relevance, "relevance", where="conservation_gap")
    check_tensor(f, "f", shape=(relevance.shape[0],), where="conservation_gap")
    return (f - relevance.flatten(1).sum(1)).abs()


def negative_relevance(relevance: torch.Tensor) -> torch.Tensor:
    """``sum_p min(0, R_p)`` per sample (paper Sec. 5.1; 0 for consistent heatmaps)."""
    return relevance.flatten(1).clamp(max=0).sum(1)


@validate_params({"model": Instance(nn.Module), "x": Tensor(ndim=(2, 3, 4, 5)),
                  "relevance": Optional_(Tensor()),
                  "target": Tensor(ndim=1, dtype="integer", low=0),
                  "steps": Int(1, 10_000), "baseline": Real(), "seed": Seed()})
@torch.no_grad()
def pixel_flipping(
    model: nn.Module,
    x: torch.Tensor,
    relevance: torch.Tensor | None,
    target: torch.Tensor,
    *,
    steps: int = 16,
    baseline: float = 0.0,
    seed: int | torch.Generator | None = 0,
) -> torch.Tensor:
    """Perturbation curve: ``f_target`` as input dimensions are removed most-relevant first.

    At step ``k`` the ``k/steps`` fraction of dimensions with the highest relevance is set to
    ``baseline``. ``relevance=None`` removes dimensions in a random order (seeded). A more
    faithful explanation makes the curve fall faster (smaller area under it).

    Returns
    -------
    torch.Tensor
        ``(steps + 1, N)``: the target output after removing ``0, 1/steps, ..., 1`` of the input.
    """
    check_int(steps, "steps", 1, 10_000, where="pixel_flipping")
    n = x.shape[0]
    if tuple(target.shape) != (n,):
        raise ValueError(param_error("target", "deep_taylor.pixel_flipping",
                                     f"one class index per sample, shape ({n},)",
                                     f"shape {tuple(target.shape)}"))
    flat = x.flatten(1)
    d = flat.shape[1]
    if relevance is None:
        g = make_generator(seed)
        order = torch.stack([torch.randperm(d, generator=g) for _ in range(n)]).to(x.device)
    else:
        check_tensor(relevance, "relevance", shape=tuple(x.shape), where="pixel_flipping")
        order = relevance.flatten(1).argsort(dim=1, descending=True)
    curve = []
    with eval_mode(model):
        for k in range(steps + 1):
            m = round(k * d / steps)
            xp = flat.clone()
            if m:
                xp.scatter_(1, order[:, :m], baseline)
            out = model(xp.view_as(x))
            if k == 0 and int(target.max()) >= out.shape[-1]:
                raise ValueError(param_error("target", "deep_taylor.pixel_flipping",
                                             f"class indices in [0, {out.shape[-1] - 1}]",
                                             f"max {int(target.max())}"))
            curve.append(out.gather(1, target.view(-1, 1)).squeeze(1))
    return torch.stack(curve)


def region_fraction(relevance: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Share of positive relevance falling inside ``mask`` (e.g. the target digit), per sample."""
    pos = relevance.clamp(min=0).flatten(1)
    inside = (pos * mask.flatten(1).to(pos.dtype)).sum(1)
    return inside / pos.sum(1).clamp_min(1e-30)
