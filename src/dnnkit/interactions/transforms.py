"""Exact Harsanyi AND / OR interactions and the AND-OR decomposition, in O(n 2**n).

Conventions: the last dimension of every tensor has length ``2**n`` and is indexed by the
little-endian bitmask of a subset (see :mod:`dnnkit.interactions.subsets`); leading dimensions
are a batch (samples, models) and are transformed independently.

Equations refer to Chen, Lou, Huang & Zhang, "Defining and Extracting Generalizable Interaction
Primitives from DNNs", ICLR 2024 (arXiv:2401.16318), Sec. 2, and Li & Zhang, ICML 2023.
"""

from __future__ import annotations

import torch

from dnnkit.core.validation import (
    AnyOf,
    Instance,
    Optional_,
    Real,
    Tensor,
    check_interval,
    check_tensor,
    param_error,
    validate_params,
)
from dnnkit.interactions.subsets import n_from_length

__all__ = [
    "and_or_interactions",
    "harsanyi_and",
    "harsanyi_or",
    "merge_singletons",
    "moebius",
    "reconstruct",
    "zeta",
]


def _butterfly(f: torch.Tensor, sign: float) -> torch.Tensor:
    """In a copy of ``f``: for each bit i, f[T | i] += sign * f[T] (T without i)."""
    size = f.shape[-1]
    n = size.bit_length() - 1
    out = f.clone()
    lead = f.shape[:-1]
    for i in range(n):
        g = out.view(*lead, size >> (i + 1), 2, 1 << i)
        if sign > 0:
            g[..., 1, :] += g[..., 0, :]
        else:
            g[..., 1, :] -= g[..., 0, :]
    return out


def _butterfly_t(g: torch.Tensor, sign: float) -> torch.Tensor:
    """Transpose of :func:`_butterfly` (superset sums), in place on ``g``."""
    size = g.shape[-1]
    n = size.bit_length() - 1
    lead = g.shape[:-1]
    for i in range(n):
        h = g.view(*lead, size >> (i + 1), 2, 1 << i)
        if sign > 0:
            h[..., 0, :] += h[..., 1, :]
        else:
            h[..., 0, :] -= h[..., 1, :]
    return g


def moebius_t_(g: torch.Tensor) -> torch.Tensor:
    """In place: the transpose of the Moebius map, ``g(T) <- sum_{S>=T} (-1)^{|S|-|T|} g(S)``."""
    return _butterfly_t(g, -1.0)


def or_transform_t_(g: torch.Tensor) -> torch.Tensor:
    """In place: the transpose of the OR map (used for exact gradients of the sparse losses)."""
    g0 = g[..., 0].clone()
    g[..., 0] = 0
    out = moebius_t_(g).flip(-1).neg_()
    out[..., 0] += g0
    return out


def moebius(f: torch.Tensor) -> torch.Tensor:
    """Unchecked fast Moebius transform ``M(f)(S) = sum_{T<=S} (-1)^{|S|-|T|} f(T)``."""
    return _butterfly(f, -1.0)


def zeta(f: torch.Tensor) -> torch.Tensor:
    """Unchecked fast subset sum ``Z(f)(T) = sum_{S<=T} f(S)`` (inverse of :func:`moebius`)."""
    return _butterfly(f, 1.0)


def _or_transform(f: torch.Tensor) -> torch.Tensor:
    """Unchecked OR transform: ``-M(u)(S)`` with ``u(T) = f(N \\ T)``; ``f(empty)`` at S = empty."""
    out = 0.0 - moebius(f.flip(-1))  # (0 - x avoids printing -0.)
    out[..., 0] = f[..., 0]
    return out


def _check_values(values: object, name: str, where: str) -> torch.Tensor:
    values = check_tensor(values, name, floating=True, where=where)
    if values.ndim == 0:
        raise ValueError(param_error(name, where, "a tensor of shape (..., 2**n)", "a scalar"))
    n_from_length(values.shape[-1], name=name, where=where)
    return values


@validate_params({"values": Tensor(nonempty=False)})  # length 2**n: checked below
def harsanyi_and(values: torch.Tensor) -> torch.Tensor:
    r"""Harsanyi dividends (AND interactions) of a set function, batched over leading dims.

    .. math:: I_{and}(S) = \sum_{T \subseteq S} (-1)^{|S|-|T|} v(x_T)

    computed with the fast subset-Moebius transform in O(n 2**n) (no 2**n x 2**n matrix).

    Parameters
    ----------
    values : torch.Tensor, shape (..., 2**n)
        ``v(x_T)`` for every subset bitmask ``T`` (bit i <=> player i present); floating point.

    Returns
    -------
    torch.Tensor, shape (..., 2**n)
        ``I(S)`` indexed by bitmask; same dtype and device as ``values``. They sum to
        ``v(N)`` (efficiency: ``sum_{S != empty} I(S) = v(N) - v(empty)``) and every ``v(x_T)``
        equals ``sum_{S <= T} I(S)`` (universal matching).

    Raises
    ------
    ValueError
        If the last dimension is not a power of two, ``n`` exceeds 20, or values are non-finite.

    References
    ----------
    Harsanyi (1963); Ren et al. (2023) and Chen et al. (ICLR 2024), Eq. (1)-(2).

    Examples
    --------
    >>> import torch
    >>> harsanyi_and(torch.tensor([0.0, 1.0, 2.0, 5.0]))  # v = 0, v({0}), v({1}), v({0,1})
    tensor([0., 1., 2., 2.])
    """
    values = _check_values(values, "values", "harsanyi_and")
    return moebius(values)


@validate_params({"values": Tensor(nonempty=False)})  # length 2**n: checked below
def harsanyi_or(values: torch.Tensor) -> torch.Tensor:
    r"""OR interactions of a set function (a pattern counts when ANY of its players is present).

    .. math:: I_{or}(S) = -\sum_{T \subseteq S} (-1)^{|S|-|T|} v(x_{N \setminus T}),
              \quad S \neq \emptyset; \qquad I_{or}(\emptyset) = v(x_\emptyset)

    so that ``v(x_T) = I_or(empty) + sum_{S : S cap T != empty} I_or(S)`` for every ``T``.

    Parameters
    ----------
    values : torch.Tensor, shape (..., 2**n)
        ``v(x_T)`` indexed by bitmask.

    Returns
    -------
    torch.Tensor, shape (..., 2**n)

    References
    ----------
    Li & Zhang (ICML 2023); Chen et al. (ICLR 2024), Sec. 2, definition of OR interactions.

    Examples
    --------
    >>> import torch
    >>> harsanyi_or(torch.tensor([0.0, 1.0, 1.0, 1.0]))  # v = 1 if any player is present
    tensor([0., 0., 0., 1.])
    """
    values = _check_values(values, "values", "harsanyi_or")
    return _or_transform(values)


def merge_singletons(i_and: torch.Tensor, i_or: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move OR mass of ``|S| <= 1`` onto AND (they coincide there); the official reporting rule."""
    size = i_and.shape[-1]
    idx = [0] + [1 << i for i in range(size.bit_length() - 1)]
    i_and = i_and.clone()
    i_or = i_or.clone()
    i_and[..., idx] += i_or[..., idx]
    i_or[..., idx] = 0
    return i_and, i_or


def _split(values: torch.Tensor, gamma: torch.Tensor | None, eps: torch.Tensor | None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    half = 0.5 * (values if eps is None else values + eps)
    if gamma is None:
        return half, half
    return half + gamma, half - gamma


@validate_params({"values": Tensor(nonempty=False),
                  "gamma": Optional_(AnyOf(Real(), Tensor(nonempty=False))),
                  "eps": Optional_(AnyOf(Real(), Tensor(nonempty=False))),
                  "merge": Instance(bool)})
def and_or_interactions(
    values: torch.Tensor,
    gamma: torch.Tensor | None = None,
    eps: torch.Tensor | None = None,
    *,
    merge: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""AND and OR interactions of the split ``v + eps = v_and + v_or``.

    .. math:: v_{and}(x_T) = \tfrac12 (v(x_T) + \epsilon_T) + \gamma_T, \quad
              v_{or}(x_T) = \tfrac12 (v(x_T) + \epsilon_T) - \gamma_T

    then ``I_and = harsanyi_and(v_and)`` and ``I_or = harsanyi_or(v_or)``. For any ``gamma`` the
    pair reproduces every ``v(x_T) + eps_T`` exactly (universal matching, see
    :func:`reconstruct`).

    Parameters
    ----------
    values : torch.Tensor, shape (..., 2**n)
    gamma, eps : torch.Tensor broadcastable to ``values``, a float, or None
        The learnable split and the bounded noise; a float is the same value for every ``T``;
        ``None`` means zero.
    merge : bool
        Add ``I_or(S)`` to ``I_and(S)`` and zero it for ``|S| <= 1`` (where AND and OR coincide),
        as all the paper's figures do. Reconstruction is unchanged by the merge.

    Returns
    -------
    (i_and, i_or) : tuple of torch.Tensor, each of shape (..., 2**n)

    References
    ----------
    Chen et al. (ICLR 2024), Sec. 2 (AND-OR decomposition with gamma and the noise term).

    Examples
    --------
    >>> import torch
    >>> v = torch.tensor([0.0, 1.0, 2.0, 5.0])
    >>> a, o = and_or_interactions(v)
    >>> a, o
    (tensor([0., 2., 3., 1.]), tensor([ 0.,  0.,  0., -1.]))
    """
    where = "and_or_interactions"
    values = _check_values(values, "values", where)
    split = {"gamma": gamma, "eps": eps}
    for name, t in list(split.items()):
        if t is not None:
            if isinstance(t, (int, float)) and not isinstance(t, bool):   # a scalar split/noise
                t = check_interval(t, name, where=where)
                t = torch.tensor(t, dtype=values.dtype, device=values.device)
            t = check_tensor(t, name, floating=True, where=where)
            split[name] = t
            try:
                torch.broadcast_shapes(t.shape, values.shape)
            except RuntimeError:
                raise ValueError(param_error(name, where, f"broadcastable to {tuple(values.shape)}",
                                             f"shape {tuple(t.shape)}")) from None
    v_and, v_or = _split(values, split["gamma"], split["eps"])
    i_and, i_or = moebius(v_and), _or_transform(v_or)
    return merge_singletons(i_and, i_or) if merge else (i_and, i_or)


@validate_params({"i_and": Tensor(nonempty=False), "i_or": Optional_(Tensor(nonempty=False))})
def reconstruct(i_and: torch.Tensor, i_or: torch.Tensor | None = None) -> torch.Tensor:
    r"""Rebuild ``v(x_T) + eps_T`` for every ``T`` from AND and OR interactions.

    .. math:: \hat v(T) = \sum_{S \subseteq T} I_{and}(S) + I_{or}(\emptyset)
              + \sum_{S \cap T \neq \emptyset} I_{or}(S)

    Parameters
    ----------
    i_and : torch.Tensor, shape (..., 2**n)
    i_or : torch.Tensor, shape (..., 2**n), optional

    Returns
    -------
    torch.Tensor, shape (..., 2**n)

    References
    ----------
    Chen et al. (ICLR 2024), Sec. 2 (universal matching of the AND-OR decomposition).

    Examples
    --------
    >>> import torch
    >>> v = torch.tensor([0.0, 1.0, 2.0, 5.0])
    >>> reconstruct(*and_or_interactions(v))
    tensor([0., 1., 2., 5.])
    """
    i_and = _check_values(i_and, "i_and", "reconstruct")
    rec = zeta(i_and)
    if i_or is not None:
        i_or = _check_values(i_or, "i_or", "reconstruct")
        if i_or.shape[-1] != i_and.shape[-1]:
            raise ValueError(param_error("i_or", "reconstruct", f"of length {i_and.shape[-1]} "
                                         "like i_and", f"length {i_or.shape[-1]}"))
        nonempty = i_or.clone()
        nonempty[..., 0] = 0
        z = zeta(nonempty)
        rec = rec + i_or[..., :1] + z[..., -1:] - z.flip(-1)
    return rec
