"""Public API surface and doctests of dnnkit.shortcut."""

from __future__ import annotations

import doctest

import dnnkit.shortcut as sc


def test_public_api():
    assert 2 <= len(sc.__all__) <= 6
    assert all(callable(getattr(sc, n)) for n in sc.__all__)
    assert "arXiv:2110.03095" in sc.__doc__


def test_doctests():
    from dnnkit.shortcut import protocol, sources

    for mod in (sc, protocol, sources):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0 and res.attempted > 0, mod.__name__
