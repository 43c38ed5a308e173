"""Pruning masks: which tensors are prunable, global magnitude masks, ERK masks, applying and
checking masks, sparsity and payload sizes.

A mask is a ``{name: bool tensor}`` dict over the *prunable* entries of a state dict (the
weights of ``Conv``/``Linear`` layers by default); ``True`` keeps a weight.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dnnkit.core.seeding import SeedLike, make_generator
from dnnkit.core.validation import check_interval, param_error

__all__ = [
    "PRUNABLE_TYPES",
    "apply_mask",
    "check_mask",
    "erk_mask",
    "global_magnitude_mask",
    "mask_sparsity",
    "payload_bytes",
    "prunable_parameters",
]

#: Layer types whose ``weight`` is pruned (biases and normalisation layers are never pruned).
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_parameters(model: nn.Module,
                        types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES) -> list[str]:
    """State-dict names of the prunable weights of ``model`` (Conv/Linear ``weight``).

    Raises
    ------
    ValueError
        If ``model`` has no layer of ``types`` (nothing to prune).

    Examples
    --------
    >>> from torch import nn
    >>> prunable_parameters(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    ['0.weight', '2.weight']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("model", "prunable_parameters", "a torch.nn.Module",
                                    type(model).__name__))
    names = [f"{path}.weight" if path else "weight" for path, m in model.named_modules()
             if isinstance(m, types) and getattr(m, "weight", None) is not None]
    if not names:
        kinds = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(
            f"The model has nothing to prune: FedDIP prunes the weights of "
            f"{[t.__name__ for t in types]} layers and found none (module types: {kinds}). "
            "Pass `types=` to prunable_parameters to extend the list.")
    return names


def _check_names(state: Mapping[str, torch.Tensor], names: Sequence[str], where: str) -> None:
    if len(names) == 0:
        raise ValueError(f"The 'names' parameter of {where} must list at least one tensor.")
    missing = [n for n in names if n not in state]
    if missing:
        raise KeyError(f"{where}: prunable names {missing[:5]} are not in the state dict "
                       f"(it has {list(state)[:8]}...).")


def global_magnitude_mask(state: Mapping[str, torch.Tensor], names: Sequence[str],
                          sparsity: float) -> dict[str, torch.Tensor]:
    """Global unstructured L1 (magnitude) mask over several tensors jointly.

    The ``k = round(sparsity * n)`` weights of smallest ``|w|`` over all ``names`` together are
    pruned (``n`` = their total size), as ``torch.nn.utils.prune.global_unstructured`` with
    ``L1Unstructured`` does (FedDIP server step, official code). Ties are broken
    deterministically: among equal magnitudes the earlier entry (in ``names`` order, then
    flattened index) is pruned first.

    Parameters
    ----------
    state : mapping of str to Tensor
        State dict (or any name -> tensor mapping) holding the tensors.
    names : sequence of str
        The prunable entries of ``state``.
    sparsity : float
        Fraction of weights to prune, in [0, 1).

    Returns
    -------
    dict of str to bool Tensor
        ``True`` = kept, on each tensor's device.

    Examples
    --------
    >>> import torch
    >>> m = global_magnitude_mask({"a": torch.tensor([3.0, -1.0]), "b": torch.tensor([0.5, 2.0])},
    ...                           ["a", "b"], 0.5)
    >>> m["a"].tolist(), m["b"].tolist()
    ([True, False], [False, True])
    """
    where = "global_magnitude_mask"
    check_interval(sparsity, "sparsity", 0.0, 1.0, closed="left", where=where)
    _check_names(state, names, where)
    flat = torch.cat([state[n].detach().reshape(-1).abs().to("cpu", torch.float64)
                      for n in names])
    if not bool(torch.isfinite(flat).all()):
        raise ValueError(f"{where}: the weights to prune contain NaN or inf.")
    n = flat.numel()
    k = round(sparsity * n)
    keep = torch.ones(n, dtype=torch.bool)
    if k > 0:
        # the first k of a stable ascending sort, found in O(n) (selection, not a full sort):
        # everything below the k-th smallest magnitude, then the earliest entries equal to it
        kth = torch.kthvalue(flat, k).values
        below = flat < kth
        keep[below] = False
        rest = k - int(below.sum())
        if rest > 0:
            keep[torch.nonzero(flat == kth).view(-1)[:rest]] = False
    out: dict[str, torch.Tensor] = {}
    start = 0
    for name in names:
        t = state[name]
        out[name] = keep[start:start + t.numel()].reshape(t.shape).to(t.device)
        start += t.numel()
    return out


def erk_mask(shapes: Mapping[str, Sequence[int] | torch.Size], density: float, *,
             power: float = 1.0, seed: SeedLike = None) -> dict[str, torch.Tensor]:
    """Random Erdős–Rényi–Kernel mask with global density ``density``.

    Layer ``l`` gets density ``eps * (sum(dims_l) / prod(dims_l))**power``; ``eps`` is chosen so
    the kept total equals ``density * n``, and layers that would exceed density 1 are kept dense
    (the budget is re-solved over the others), as in RigL / the FedDIP code's round-0 mask.

    Parameters
    ----------
    shapes : mapping of str to shape
        Prunable tensor shapes (e.g. ``{n: state[n].shape for n in names}``).
    density : float
        Fraction of weights kept, in (0, 1].
    power : float
        Exponent of the ERK ratio (1 = ERK).
    seed : int, torch.Generator or None
        Randomness of the per-layer random selection.

    Returns
    -------
    dict of str to bool Tensor
        Each layer keeps exactly ``round(d_l * n_l)`` random weights (at least one).
    """
    where = "erk_mask"
    check_interval(density, "density", 0.0, 1.0, closed="right", where=where)
    if len(shapes) == 0:
        raise ValueError(f"The 'shapes' parameter of {where} must hold at least one tensor.")
    g = make_generator(seed)
    sizes = {k: int(math.prod(s)) for k, s in shapes.items()}
    total = sum(sizes.values())
    raw = {k: (sum(s) / math.prod(s)) ** power for k, s in shapes.items()}
    dense: set[str] = set()
    while True:
        budget = density * total - sum(sizes[k] for k in dense)
        denom = sum(raw[k] * sizes[k] for k in sizes if k not in dense)
        eps = budget / denom if denom > 0 else 0.0
        over = {k for k in sizes if k not in dense and eps * raw[k] > 1.0}
        if not over:
            break
        dense |= over
    out: dict[str, torch.Tensor] = {}
    for k, shape in shapes.items():
        n = sizes[k]
        if k in dense:
            out[k] = torch.ones(tuple(shape), dtype=torch.bool)
            continue
        keep = min(n, max(1, round(eps * raw[k] * n)))
        flat = torch.zeros(n, dtype=torch.bool)
        flat[torch.randperm(n, generator=g)[:keep]] = True
        out[k] = flat.reshape(tuple(shape))
    return out


def check_mask(mask: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], *,
               where: str = "FedDIP") -> dict[str, torch.Tensor]:
    """Validate ``mask`` against ``state``: known names, equal shapes, bool or 0/1 values.

    Returns the mask as bool tensors. Raises ``KeyError``/``ValueError``/``TypeError``.
    """
    if not isinstance(mask, Mapping):
        raise TypeError(param_error("mask", where, "a mapping of name -> tensor",
                                    type(mask).__name__))
    unknown = [k for k in mask if k not in state]
    if unknown:
        raise KeyError(f"{where}: mask entries {unknown[:5]} do not match any model tensor "
                       f"(model has {list(state)[:8]}...).")
    out = {}
    for k, m in mask.items():
        if not isinstance(m, torch.Tensor):
            raise TypeError(param_error(f"mask[{k!r}]", where, "a torch.Tensor", type(m).__name__))
        if tuple(m.shape) != tuple(state[k].shape):
            raise ValueError(param_error(f"mask[{k!r}]", where,
                                         f"of shape {tuple(state[k].shape)}",
                                         f"shape {tuple(m.shape)}"))
        if m.dtype != torch.bool:
            if m.is_complex() or not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(param_error(f"mask[{k!r}]", where, "bool or hold only 0 and 1",
                                             f"dtype {m.dtype} with other values"))
            m = m != 0
        out[k] = m
    return out


@torch.no_grad()
def apply_mask(model_or_state: nn.Module | dict[str, torch.Tensor],
               mask: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned entries in place: ``w <- m * w`` for each masked tensor.

    Works on an ``nn.Module`` (its parameters/buffers by state-dict name) or a state dict.
    """
    if isinstance(model_or_state, nn.Module):
        state = model_or_state.state_dict(keep_vars=True)
    elif isinstance(model_or_state, dict):
        state = model_or_state
    else:
        raise TypeError(param_error("model_or_state", "apply_mask",
                                    "an nn.Module or a state dict", type(model_or_state).__name__))
    mask = check_mask(mask, state, where="apply_mask")
    for k, m in mask.items():
        t = state[k]
        t.data.mul_(m.to(device=t.device, dtype=t.dtype))


def mask_sparsity(mask: Mapping[str, torch.Tensor]) -> float:
    """Fraction of pruned entries over all tensors of ``mask``."""
    n = sum(m.numel() for m in mask.values())
    kept = sum(int(m.sum()) for m in mask.values())
    return 1.0 - kept / n if n else 0.0


def payload_bytes(state: Mapping[str, torch.Tensor],
                  mask: Mapping[str, torch.Tensor] | None = None) -> int:
    """Bytes to send ``state``: dense ``itemsize * n`` per tensor, and for each masked tensor
    ``itemsize * nnz(mask) + ceil(n / 8)`` (kept values plus a 1-bit-per-entry bitmask)."""
    total = 0
    for k, t in state.items():
        size = t.element_size()
        if mask is not None and k in mask:
            total += size * int(mask[k].sum()) + math.ceil(t.numel() / 8)
        else:
            total += size * t.numel()
    return total
