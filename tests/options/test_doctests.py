"""The docstring examples of the public API run."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("mod", ["dnnkit.options", "dnnkit.options.pricers",
                                 "dnnkit.options.data", "dnnkit.options.surrogate"])
def test_doctests(mod):
    res = doctest.testmod(importlib.import_module(mod), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
