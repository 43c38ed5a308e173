"""Oracle: iterative_fgsm equals torchattacks.BIM (3.5.1) on a trained MLP, same loss."""

import torch

from dnnkit.core.data import load_digits_split
from dnnkit.core.models import mlp
from dnnkit.core.training import fit
from dnnkit.nobox import iterative_fgsm
from tests.conftest import need


def test_iterative_fgsm_equals_torchattacks_bim():
    torchattacks = need("torchattacks")
    data = load_digits_split(seed=0)
    torch.manual_seed(0)
    model = mlp(64, [32], 10)
    fit(model, data.x_train, data.y_train, epochs=3, lr=1e-2, seed=0)
    model.eval()
    x, y = data.x_test[:64], data.y_test[:64]
    for eps, alpha, steps in [(0.1, 0.02, 10), (0.2, 1 / 255, 30), (0.05, 0.05, 3)]:
        ref = torchattacks.BIM(model, eps=eps, alpha=alpha, steps=steps)(x, y)

        def ce(z):
            return torch.nn.functional.cross_entropy(model(z), y)

        ours = iterative_fgsm(ce, x, eps=eps, alpha=alpha, steps=steps)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
        assert float((ours - x).abs().max()) > eps / 2
