"""Run this module's bad-input table locally, including generated bad values per declared
parameter (what the project-wide conformance suite does)."""

import inspect
import warnings

import pytest

from dnnkit.core.validation import declared_params
from tests.nobox.conformance import examples

EXAMPLES = examples()


@pytest.mark.parametrize("ex", EXAMPLES, ids=lambda e: f"{e.fn.__name__}-{e.param}")
def test_example(ex):
    if ex.raises is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ex.fn(*ex.args, **ex.kwargs)
        return
    with pytest.raises(ex.raises, match=f"'{ex.param}'"):
        ex.fn(*ex.args, **ex.kwargs)


def _perturbed():
    for ex in EXAMPLES:
        if ex.raises is not None:
            continue
        params = declared_params(ex.fn)
        assert params, f"{ex.fn.__name__} declares no constraints"
        target = ex.fn.__init__ if inspect.isclass(ex.fn) else ex.fn
        sig = inspect.signature(target)
        bound = sig.bind_partial(*((None,) if inspect.isclass(ex.fn) else ()) + ex.args,
                                 **ex.kwargs)
        for name, c in params.items():
            valid = bound.arguments.get(name, sig.parameters[name].default)
            for bad, exc in c.bad_values(valid):
                yield ex, name, bad, exc


@pytest.mark.parametrize("case", list(_perturbed()),
                         ids=lambda c: f"{c[0].fn.__name__}-{c[1]}-{type(c[2]).__name__}")
def test_generated_bad_values(case):
    ex, name, bad, exc = case
    target = ex.fn.__init__ if inspect.isclass(ex.fn) else ex.fn
    names = [p for p in inspect.signature(target).parameters if p != "self"]
    args, kwargs = list(ex.args), dict(ex.kwargs)
    pos = names.index(name)
    if pos < len(args):
        args[pos] = bad
    else:
        kwargs[name] = bad
    with pytest.raises(exc, match=f"'{name}"):
        ex.fn(*args, **kwargs)
