"""The docstring example of the public API runs."""

from __future__ import annotations

import doctest
import importlib
import warnings

from tests.conftest import need


def test_docstring_examples():
    need("peft")
    warnings.filterwarnings("ignore", category=FutureWarning)
    res = doctest.testmod(importlib.import_module("dnnkit.netllm"), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
