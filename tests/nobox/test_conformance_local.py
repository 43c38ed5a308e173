"""Run this module's bad-input table locally (the project-wide suite runs it too)."""

import pytest

from tests.nobox.conformance import examples


@pytest.mark.parametrize("ex", examples(), ids=lambda e: f"{e.fn.__name__}-{e.param}")
def test_example(ex):
    if ex.raises is None:
        ex.fn(*ex.args, **ex.kwargs)
        return
    with pytest.raises(ex.raises, match=f"'{ex.param}'"):
        ex.fn(*ex.args, **ex.kwargs)
