"""The docstring example of the public API runs."""

from __future__ import annotations

import doctest
import importlib

import pytest

from tests.conftest import need


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_docstring_examples():
    need("peft")
    res = doctest.testmod(importlib.import_module("dnnkit.netllm"), optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
