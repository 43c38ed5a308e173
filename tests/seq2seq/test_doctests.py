"""The docstring examples of the public API run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("mod", ["dnnkit.seq2seq", "dnnkit.seq2seq.data", "dnnkit.seq2seq.model",
                                 "dnnkit.seq2seq.metrics"])
def test_docstring_examples(mod):
    res = doctest.testmod(importlib.import_module(mod), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
