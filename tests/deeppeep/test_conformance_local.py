"""Run this module's bad-input table the way the project's conformance suite does."""

from __future__ import annotations

import inspect

import pytest

from tests.deeppeep.conformance import examples

EXAMPLES = examples()


@pytest.mark.parametrize("i", range(len(EXAMPLES)))
def test_example(i):
    ex = EXAMPLES[i]
    if ex.raises is not None:
        with pytest.raises(ex.raises, match=ex.param):
            ex.fn(*ex.args, **ex.kwargs)
        return
    ex.fn(*ex.args, **ex.kwargs)
    declared = getattr(ex.fn, "__dnnkit_params__", {})
    assert declared, ex.fn
    bound = inspect.signature(ex.fn).bind(*ex.args, **ex.kwargs)
    for name, c in declared.items():
        valid = bound.arguments.get(name)
        for bad, exc in c.bad_values(valid):
            args = dict(bound.arguments)
            args[name] = bad
            with pytest.raises(exc, match=f"'{name}"):
                ex.fn(**args)
