"""Presets, the FLOP count behind the CPU-time warnings, and an sklearn victim end to end."""

import pytest
import torch
from torch import nn

from dnnkit.nobox import craft_nobox, evaluate_transfer, preset, train_surrogate
from dnnkit.nobox.surrogate import NoBoxSurrogate, surrogate_flops


def _brute_flops(model: NoBoxSurrogate, shape) -> float:
    """2 x multiply-adds of every convolution, counted with forward hooks."""
    total = 0.0

    def hook(m, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        if isinstance(m, nn.ConvTranspose2d):
            total += 2.0 * inp[0].shape[2] * inp[0].shape[3] * m.in_channels * m.out_channels * k
        else:
            total += 2.0 * out.shape[2] * out.shape[3] * m.in_channels // m.groups \
                * m.out_channels * k

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        model.eval()(torch.rand(1, *shape))
    finally:
        for h in handles:
            h.remove()
    return total


@pytest.mark.parametrize("name,mode", [("digits8", "prototypical"), ("colour32", "prototypical"),
                                       ("colour32", "naive"), ("digits8", "rotation")])
def test_flop_count_matches_hooks(name, mode):
    scfg, _ = preset(name, mode)
    shape = {"digits8": (1, 8, 8), "colour32": (3, 32, 32)}[name]
    model = NoBoxSurrogate(shape[0], scfg)
    assert surrogate_flops(scfg, shape) == pytest.approx(_brute_flops(model, shape), rel=0.02)


def test_imagenet_preset_warns_with_an_estimate():
    with pytest.warns(UserWarning, match=r"h of single-core CPU time"):
        scfg, acfg = preset("imagenet224")
    assert scfg.n_decoders == 20 and scfg.n_iters == 15000 and acfg.eps == 0.1
    assert preset("imagenet224", "jigsaw", warn=False)[0].n_iters == 5000


def test_colour_preset_runs_and_sklearn_victim():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32, generator=g)
    y = torch.tensor([0, 1] * 4)
    scfg, acfg = preset("colour32")
    from dataclasses import replace

    sur = train_surrogate(x, y, replace(scfg, iters=2, width=4, decoder_width=2), seed=0)
    adv = craft_nobox(sur, x, y, replace(acfg, stage1_iters=2, ila_iters=2))
    assert adv.shape == x.shape and float((adv - x).abs().max()) <= acfg.eps + 1e-6
    clf = LogisticRegression(max_iter=200).fit(x.flatten(1).numpy(), y.numpy())
    res = evaluate_transfer({"logreg": lambda z: clf.predict(z.flatten(1).numpy())}, x, adv, y)
    assert res["logreg"]["clean_acc"] == 1.0 and 0.0 <= res["logreg"]["adv_acc"] <= 1.0
