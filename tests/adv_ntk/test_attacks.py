"""PGD: ball and range constraints, attack strength, torchattacks oracle, model left as found."""

import math

import pytest
import torch

from dnnkit.adv_ntk import AdvNTK, KernelSpec, pgd_attack, robust_accuracy
from dnnkit.core.data import load_digits_split
from tests.conftest import need


@pytest.fixture(scope="module")
def digits_mlp():
    """A small MLP trained on digits (inputs in [0, 1]) and 300 test digits."""
    split = load_digits_split(test_fraction=0.3, seed=0, flat=True)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = split.x_train, split.y_train
    for _ in range(150):
        idx = torch.randint(0, len(x), (128,), generator=g)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    net.zero_grad(set_to_none=True)
    return net, split.x_test[:300], split.y_test[:300]


def test_constraints_linf_and_l2(digits_mlp):
    net, x, y = digits_mlp
    xa = pgd_attack(net, x, y, eps=0.1, steps=5, loss="ce", generator=0)
    assert float((xa - x).abs().max()) <= 0.1 + 1e-6
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
    assert xa.shape == x.shape and xa.dtype == x.dtype and not xa.requires_grad
    x2 = pgd_attack(net, x, y, eps=0.5, steps=5, norm="l2", loss="ce", generator=0)
    assert float((x2 - x).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-5
    assert float(x2.min()) >= 0.0 and float(x2.max()) <= 1.0
    x0 = pgd_attack(net, x, y, eps=0.1, steps=0, generator=0)  # random start only
    assert 0 < float((x0 - x).abs().max()) <= 0.1 + 1e-6
    assert torch.equal(pgd_attack(net, x, y, eps=0.0), x)


def test_attack_hurts_and_is_deterministic(digits_mlp):
    net, x, y = digits_mlp
    clean, robust = robust_accuracy(net, x, y, eps=0.1, steps=10, loss="ce", generator=0)
    _, weaker = robust_accuracy(net, x, y, eps=0.02, steps=10, loss="ce", generator=0)
    assert clean > 0.85
    assert robust < weaker <= clean  # larger ball, lower robust accuracy
    assert robust_accuracy(net, x, y, eps=0.1, steps=10, loss="ce", generator=0)[1] == robust
    # the MSE attack on one-hot targets also lowers accuracy
    _, robust_mse = robust_accuracy(net, x, y, eps=0.1, steps=10, loss="mse", generator=0)
    assert robust_mse < clean


def test_model_left_as_found(digits_mlp):
    net, x, y = digits_mlp
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pgd_attack(net, x[:20], y[:20], eps=0.1, generator=0)
    robust_accuracy(net, x[:20], y[:20], eps=0.1, generator=0)
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())


def test_equals_torchattacks_bim_without_random_start(digits_mlp):
    torchattacks = need("torchattacks")
    net, x, y = digits_mlp
    ours = pgd_attack(net, x, y, eps=0.1, steps=10, alpha=0.01, random_start=False, loss="ce")
    theirs = torchattacks.BIM(net, eps=0.1, alpha=0.01, steps=10)(x, y)
    assert float((ours - theirs).abs().max()) == 0.0


def test_random_start_robust_accuracy_close_to_torchattacks_pgd(digits_mlp):
    torchattacks = need("torchattacks")
    net, x, y = digits_mlp
    _, ours = robust_accuracy(net, x, y, eps=0.1, steps=10, alpha=0.01, loss="ce", generator=0)
    torch.manual_seed(0)
    xa = torchattacks.PGD(net, eps=0.1, alpha=0.01, steps=10, random_start=True)(x, y)
    with torch.no_grad():
        theirs = float((net(xa).argmax(1) == y).float().mean())
    assert abs(ours - theirs) <= 0.03, (ours, theirs)


def test_attacks_kernel_predictor():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 8, generator=g, dtype=torch.float64) - 0.5
    y = (x[:, 0] + x[:, 1] > 0).long()
    model = AdvNTK(x[:40], y[:40], KernelSpec(depth=2), varpi=math.inf)
    xt, yt = x[40:], y[40:]
    with torch.no_grad():
        loss0 = ((model(xt) - torch.nn.functional.one_hot(yt, 2)) ** 2).sum()
    xa = pgd_attack(model, xt, yt, eps=0.1, clip=(-0.5, 0.5), generator=0)
    with torch.no_grad():
        loss1 = ((model(xa) - torch.nn.functional.one_hot(yt, 2)) ** 2).sum()
    assert float(loss1) > float(loss0)


def test_bad_inputs(digits_mlp, caplog):
    net, x, y = digits_mlp
    with pytest.raises(ValueError, match="'eps'"):
        pgd_attack(net, x, y, eps=-0.1)
    with pytest.raises(ValueError, match="'eps'"):
        pgd_attack(net, x, y, eps=math.nan)
    with pytest.raises(ValueError, match="'steps'"):
        pgd_attack(net, x, y, eps=0.1, steps=-1)
    with pytest.raises(ValueError, match="'alpha'"):
        pgd_attack(net, x, y, eps=0.1, alpha=0.0)
    with pytest.raises(ValueError, match="'norm'"):
        pgd_attack(net, x, y, eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="'loss'"):
        pgd_attack(net, x, y, eps=0.1, loss="hinge")
    with pytest.raises(ValueError, match="'y'"):
        pgd_attack(net, x, y[:-1], eps=0.1)
    with pytest.raises(ValueError, match="'clip'"):
        pgd_attack(net, x, y, eps=0.1, clip=(1.0, 0.0))
    with pytest.raises(TypeError, match="'model'"):
        pgd_attack(lambda t: t, x, y, eps=0.1)
    with pytest.raises(ValueError, match="finite"):
        pgd_attack(net, x * math.nan, y, eps=0.1)
    with pytest.raises(TypeError, match="eps"):
        robust_accuracy(net, x, y)
    with caplog.at_level("WARNING", logger="dnnkit"):
        pgd_attack(net, x[:4] + 2.0, y[:4], eps=0.1, steps=1)
    assert "outside clip" in caplog.text
