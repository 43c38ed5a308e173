"""The docstring examples of the public API run (numpydoc Examples sections)."""

import doctest
import importlib

import pytest

MODULES = ["dnnkit.interactions", "dnnkit.interactions.transforms", "dnnkit.interactions.masking",
           "dnnkit.interactions.extraction", "dnnkit.interactions.metrics",
           "dnnkit.interactions.subsets", "dnnkit.interactions.explain"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0


def test_public_api_is_small_and_documented():
    import dnnkit.interactions as pkg

    assert 2 <= len(pkg.__all__) <= 8
    assert "ICLR 2024" in pkg.__doc__ and "Examples" in pkg.__doc__
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        assert obj.__doc__ and "References" in obj.__doc__, name
