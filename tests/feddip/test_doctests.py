import doctest
import importlib

import pytest

from tests.conftest import need

MODULES = ["dnnkit.feddip.config", "dnnkit.feddip.masks", "dnnkit.feddip.local",
           "dnnkit.feddip.server", "dnnkit.feddip.data", "dnnkit.feddip.driver",
           "dnnkit.feddip"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name in ("dnnkit.feddip.driver", "dnnkit.feddip"):
        need("flwr")
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0
    assert res.attempted > 0


def test_public_api():
    import dnnkit.feddip as fd

    assert 2 <= len(fd.__all__) <= 6
    for name in fd.__all__:
        assert getattr(fd, name) is not None
