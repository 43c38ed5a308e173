"""Subsets of players as bitmask integers (little-endian: bit ``i`` set <=> player ``i`` present).

Every array of ``2**n`` numbers in :mod:`dnnkit.interactions` (masked outputs ``v(x_T)``,
interactions ``I(S)``, splits ``gamma_T``, noise ``eps_T``) is indexed by this bitmask, so
``values[0]`` is the empty set, ``values[-1]`` the full set ``N`` and ``values[1 << i]`` the
singleton ``{i}``. The official code of Chen et al. uses the opposite (big-endian) order.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from dnnkit.core.validation import check_int, param_error

__all__ = [
    "MAX_PLAYERS",
    "check_n",
    "index_to_subset",
    "n_from_length",
    "subset_sizes",
    "subset_to_index",
]

#: Largest number of players accepted (2**20 masked forwards and values per sample).
MAX_PLAYERS = 20

_HINT = ("group players (e.g. larger image patches or word groups) so that n <= "
         f"{MAX_PLAYERS}; every method here enumerates all 2**n subsets")


def check_n(n: object, *, where: str) -> int:
    """Check a number of players ``1 <= n <= MAX_PLAYERS`` before anything of size 2**n exists."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(param_error("n", where, "an int", n))
    if n < 1:
        raise ValueError(param_error("n", where, "at least 1 player", n))
    if n > MAX_PLAYERS:
        raise ValueError(param_error("n", where, f"at most {MAX_PLAYERS} players", n).rstrip(".")
                         + f"; {_HINT}.")
    return n


def n_from_length(length: int, *, name: str = "values", where: str) -> int:
    """The ``n`` with ``2**n == length``; a clear error for other lengths."""
    if length < 2 or length & (length - 1):
        raise ValueError(param_error(name, where, "a tensor whose last dimension is 2**n "
                                     "(n >= 1 players)", f"last dimension {length}"))
    n = length.bit_length() - 1
    return check_n(n, where=where)


def subset_to_index(players: Iterable[int], n: int | None = None) -> int:
    """Bitmask of a set of player indices (bit ``i`` <=> player ``i``).

    Examples
    --------
    >>> subset_to_index([0, 2])
    5
    >>> subset_to_index([])
    0
    """
    mask = 0
    for p in players:
        p = check_int(p, "players", 0, None if n is None else n - 1, where="subset_to_index")
        if mask >> p & 1:
            raise ValueError(f"subset_to_index: player {p} is listed twice.")
        mask |= 1 << p
    return mask


def index_to_subset(index: int, n: int | None = None) -> frozenset[int]:
    """The players present in bitmask ``index``.

    Examples
    --------
    >>> sorted(index_to_subset(5))
    [0, 2]
    """
    hi = None if n is None else (1 << n) - 1
    index = check_int(index, "index", 0, hi, where="index_to_subset")
    return frozenset(i for i in range(index.bit_length()) if index >> i & 1)


def subset_sizes(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``|S|`` for every bitmask ``S`` in ``0..2**n-1`` (int64 tensor of length ``2**n``)."""
    check_n(n, where="subset_sizes")
    sizes = torch.zeros(1, dtype=torch.int64, device=device)
    for _ in range(n):
        sizes = torch.cat([sizes, sizes + 1])
    return sizes
