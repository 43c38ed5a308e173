"""Oracle: Quantus 0.6.0 (an independent XAI-evaluation library) on the same heatmaps.

Our pixel-flipping curve equals Quantus' ``PixelFlipping`` step for step, and Quantus'
``RegionPerturbation`` ranks DTD above a random ordering on a trained detection network.
"""

import pytest
import torch

from dnnkit.core.data import load_digits_split
from dnnkit.core.training import fit
from dnnkit.deep_taylor import DTDConfig, deep_taylor, pixel_flipping, sensitivity
from dnnkit.deep_taylor.experiment import (
    clamp_biases,
    detection_loss,
    make_two_digit,
    sum_pooled_net,
)
from tests.conftest import need


@pytest.fixture(scope="module")
def oracle():
    from dnnkit.deep_taylor import oracle

    try:
        oracle.import_zennit()  # quantus imports zennit, which needs the torchvision stand-ins
    except ImportError:
        pass
    need("quantus")
    return oracle


@pytest.fixture(scope="module")
def trained():
    split = load_digits_split(seed=0)
    xtr, ytr, _ = make_two_digit(split.x_train, split.y_train, 1500, 0)
    xte, yte, _ = make_two_digit(split.x_test, split.y_test, 64, 1)
    torch.manual_seed(0)
    model = sum_pooled_net([], 4, 25, in_features=xtr[0].numel())
    clamp_biases(model)
    fit(model, xtr, ytr, epochs=6, lr=3e-3, batch_size=64, seed=0, after_step=clamp_biases,
        loss_fn=detection_loss(1.0))
    return model.eval(), xte, yte


@pytest.mark.oracle
def test_pixel_flipping_equals_quantus(oracle, trained):
    model, x, y = trained
    d = x[0].numel()
    for R in (deep_taylor(model, x, y, DTDConfig(first_rule="zb")),
              deep_taylor(model, x, y, DTDConfig(first_rule="w2")), sensitivity(model, x, y)):
        # exact ties (blank pixels) may be ordered differently by numpy and torch: hand both
        # the same strict order (ranks of a stable sort), so the curves must agree exactly
        order = R.flatten(1).argsort(dim=1, descending=True, stable=True)
        top_first = torch.arange(d, 0, -1.0).expand(len(x), d).contiguous()
        ranks = torch.empty(order.shape).scatter_(1, order, top_first)
        R = ranks.view_as(R)
        ours = pixel_flipping(model, x, R, y, steps=16)
        theirs = oracle.quantus_pixel_flipping(model, x, R, y, steps=16)
        assert theirs.shape == (16, len(x))
        assert (ours[1:].double() - theirs).abs().max() <= 1e-5 * ours.abs().max()


@pytest.mark.oracle
def test_quantus_region_perturbation_prefers_dtd_to_random(oracle, trained):
    model, x, y = trained
    R = deep_taylor(model, x, y, DTDConfig(first_rule="zb"))
    g = torch.Generator().manual_seed(0)
    aopc_dtd = oracle.quantus_region_perturbation(model, x, R, y)
    aopc_rnd = oracle.quantus_region_perturbation(model, x, torch.rand(x.shape, generator=g), y)
    assert aopc_dtd.shape == (len(x),)
    assert aopc_dtd.mean() > 2 * aopc_rnd.mean()  # removing DTD's regions first hurts f more
