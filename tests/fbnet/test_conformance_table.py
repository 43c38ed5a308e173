"""Every example of the bad-input table behaves as declared (until the shared suite runs it)."""

from __future__ import annotations

import pytest

from tests.fbnet.conformance import examples


@pytest.mark.parametrize("ex", examples(), ids=lambda e: getattr(e.fn, "__qualname__", "fn"))
def test_example(ex):
    if ex.raises is None:
        ex.fn(*ex.args, **ex.kwargs)
        return
    with pytest.raises(ex.raises) as info:
        ex.fn(*ex.args, **ex.kwargs)
    if ex.param:
        assert f"'{ex.param}'" in str(info.value)
