"""Invariants and views of AND-OR interactions: efficiency, universal matching, sparsity, top-k
overlap across models and the order profile. Tests and reports both use these functions."""

from __future__ import annotations

import torch

from dnnkit.core.validation import check_int, check_interval, param_error
from dnnkit.interactions.subsets import subset_sizes
from dnnkit.interactions.transforms import _check_values, reconstruct

__all__ = [
    "efficiency_gap",
    "matching_gap",
    "order_profile",
    "salient_mask",
    "sparsity",
    "strength_curve",
    "topk_overlap",
]


def _target(values: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
    return values if eps is None else values + eps


def efficiency_gap(values: torch.Tensor, i_and: torch.Tensor, i_or: torch.Tensor | None = None,
                   eps: torch.Tensor | None = None) -> torch.Tensor:
    r"""``|sum_{S != empty} (I_and + I_or)(S) - (v(N) + eps_N - v(empty) - eps_empty)|``.

    The efficiency axiom of Harsanyi dividends: the non-empty interactions add up to
    ``v(N) - v(empty)``. ~0 (rounding) for any exact decomposition.

    Returns
    -------
    torch.Tensor, shape (...)
        One gap per sample.

    Examples
    --------
    >>> import torch
    >>> from dnnkit.interactions.transforms import harsanyi_and
    >>> v = torch.tensor([0.5, 1.0, 2.0, 5.0])
    >>> float(efficiency_gap(v, harsanyi_and(v)))
    0.0
    """
    values = _check_values(values, "values", "efficiency_gap")
    tot = i_and[..., 1:].sum(-1)
    if i_or is not None:
        tot = tot + i_or[..., 1:].sum(-1)
    t = _target(values, eps)
    return (tot - (t[..., -1] - t[..., 0])).abs()


def matching_gap(values: torch.Tensor, i_and: torch.Tensor, i_or: torch.Tensor | None = None,
                 eps: torch.Tensor | None = None) -> torch.Tensor:
    r"""Universal matching error ``max_T |v(x_T) + eps_T - \hat v(T)|`` per sample.

    ``\hat v`` is :func:`~dnnkit.interactions.transforms.reconstruct`; the paper's faithfulness
    property says this is 0 for every one of the ``2**n`` masks.
    """
    values = _check_values(values, "values", "matching_gap")
    return (reconstruct(i_and, i_or) - _target(values, eps)).abs().amax(-1)


def salient_mask(x: torch.Tensor, rel_threshold: float = 0.05,
                 reference: torch.Tensor | float | None = None) -> torch.Tensor:
    """``|x| > rel_threshold * reference`` with reference = max |x| over the last dim by default
    (the paper's "1/20 of the max" line)."""
    check_interval(rel_threshold, "rel_threshold", 0.0, 1.0, where="salient_mask")
    ref = x.abs().amax(-1, keepdim=True) if reference is None else reference
    return x.abs() > rel_threshold * ref


def sparsity(i_and: torch.Tensor, i_or: torch.Tensor | None = None, *,
             rel_threshold: float = 0.05) -> torch.Tensor:
    """Fraction of salient values among the AND (and OR) interactions of each sample; the
    threshold is relative to each sample's max over AND and OR."""
    both = i_and if i_or is None else torch.cat([i_and, i_or], -1)
    return salient_mask(both, rel_threshold).float().mean(-1)


def _topk_sets(x: torch.Tensor, k: int) -> torch.Tensor:
    # stable sort on -|x|: ties are broken by the smaller subset index
    order = torch.sort(-x.abs(), dim=-1, stable=True).indices[..., :k]
    member = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    return member.scatter_(-1, order, True)


def topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """Mean over samples of ``|topk(|a|) cap topk(|b|)| / k`` (Chen et al., ICLR 2024, Fig. 3).

    ``a`` and ``b`` are two models' interactions of the same kind on the same samples, shape
    ``(..., 2**n)``. Ties in ``|I|`` are broken by the smaller subset index.

    Examples
    --------
    >>> import torch
    >>> topk_overlap(torch.tensor([3.0, 2.0, 1.0, 0.0]), torch.tensor([3.0, 0.0, 2.0, 1.0]), 2)
    0.5
    """
    if a.shape != b.shape:
        raise ValueError(param_error("b", "topk_overlap", f"of shape {tuple(a.shape)} like a",
                                     f"shape {tuple(b.shape)}"))
    check_int(k, "k", 1, a.shape[-1], where="topk_overlap")
    inter = (_topk_sets(a, k) & _topk_sets(b, k)).sum(-1).double() / k
    return float(inter.mean())


def order_profile(i_and: torch.Tensor, i_or: torch.Tensor | None = None, *,
                  rel_threshold: float = 0.05) -> dict[int, tuple[float, float]]:
    """Per order ``|S|``: (sum of positive, sum of negative) salient interactions, pooled over
    samples and over AND and OR (Chen et al., ICLR 2024, Fig. 4). Salient is relative to each
    sample's max."""
    both = i_and if i_or is None else torch.cat([i_and, i_or], -1)
    mask = salient_mask(both, rel_threshold)
    k = i_and.shape[-1]
    size = subset_sizes(k.bit_length() - 1, device=i_and.device)
    if i_or is not None:
        size = torch.cat([size, size])
    sel = torch.where(mask, both, torch.zeros_like(both)).reshape(-1, both.shape[-1])
    out = {}
    for o in range(k.bit_length()):
        cols = sel[:, size == o]
        out[o] = (float(cols.clamp(min=0).sum()), float(cols.clamp(max=0).sum()))
    return out


def strength_curve(x: torch.Tensor) -> torch.Tensor:
    """``|I|`` sorted in decreasing order and divided by its max, per sample (the paper's
    sparsity plot, Fig. 2), shape ``(..., len)``."""
    s = x.abs().sort(-1, descending=True).values
    return s / s[..., :1].clamp(min=torch.finfo(s.dtype).tiny)
