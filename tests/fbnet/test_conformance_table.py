"""The bad-input table: hand-written cases raise as declared, and every declared parameter of a
valid call refuses its constraint's bad values naming that parameter (what the shared
conformance suite does)."""

from __future__ import annotations

import inspect

import pytest

from dnnkit.core.validation import declared_params
from tests.fbnet.conformance import examples

EXAMPLES = examples()


def _id(e):
    return getattr(e.fn, "__qualname__", "fn") + ("-bad" if e.raises else "")


@pytest.mark.parametrize("ex", EXAMPLES, ids=_id)
def test_example(ex):
    if ex.raises is None:
        ex.fn(*ex.args, **ex.kwargs)
        return
    with pytest.raises(ex.raises) as info:
        ex.fn(*ex.args, **ex.kwargs)
    if ex.param:
        assert f"'{ex.param}'" in str(info.value)


@pytest.mark.parametrize("ex", [e for e in EXAMPLES if e.raises is None], ids=_id)
def test_declared_params_refuse_bad_values(ex):
    fn = ex.fn
    target = fn.__init__ if isinstance(fn, type) else fn
    decl = declared_params(fn) or declared_params(target)
    assert decl, f"{_id(ex)} declares no parameters"
    sig = inspect.signature(target)
    bound = sig.bind_partial(*((None,) if isinstance(fn, type) else ()), *ex.args, **ex.kwargs)
    for name, c in decl.items():
        valid = bound.arguments.get(name, sig.parameters[name].default)
        for bad, exc in c.bad_values(valid):
            kwargs = dict(bound.arguments)
            kwargs.pop("self", None)
            kwargs[name] = bad
            with pytest.raises(exc) as info:
                fn(**kwargs)
            assert f"'{name}'" in str(info.value) or f"'{name}[" in str(info.value), \
                (name, bad, str(info.value))
