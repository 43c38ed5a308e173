"""Oracle: our DTD equals zennit's on the same model with the matching composite."""

import pytest
import torch

from dnnkit.deep_taylor import DTDConfig, deep_taylor
from tests.conftest import need
from tests.deep_taylor.test_decompose import cnn, mlp, positive_outputs


@pytest.fixture(scope="module")
def zennit_relevance():
    try:
        from dnnkit.deep_taylor.oracle import zennit_relevance
    except ImportError:  # pragma: no cover
        pytest.fail("dnnkit.deep_taylor.oracle failed to import")
    try:
        from dnnkit.deep_taylor.oracle import import_zennit

        import_zennit()
    except ImportError:
        need("zennit")
    return zennit_relevance


@pytest.mark.oracle
@pytest.mark.parametrize("rule", ["zb", "w2"])
@pytest.mark.parametrize("make", [mlp, cnn])
def test_equals_zennit_in_float64(zennit_relevance, rule, make, float64):
    model = make()
    shape = (32, 20) if make is mlp else (32, 1, 8, 8)
    x, t = positive_outputs(model, torch.rand(*shape))
    cfg = DTDConfig(first_rule=rule, low=0.0, high=1.0)
    ours = deep_taylor(model, x, t, cfg)
    theirs = zennit_relevance(model, x, t, cfg)
    assert theirs.abs().max() > 1e-3  # the oracle computed something
    assert (ours - theirs).abs().max() <= 1e-5
    assert (ours - theirs).abs().max() <= 1e-10 * theirs.abs().max()
