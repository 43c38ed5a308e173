"""Crafting: hard constraints, seeds, ILA property, groups, transfer evaluation, bad inputs."""

import math
import warnings

import numpy as np
import pytest
import torch

from dnnkit.nobox import (
    AttackConfig,
    craft_nobox,
    evaluate_transfer,
    iterative_fgsm,
    nobox_attack,
    train_surrogate,
)
from dnnkit.nobox.attack import ila_projection, make_groups, stage1_loss
from tests.nobox.helpers import tiny_attack, tiny_cfg, tiny_data


@pytest.fixture(scope="module")
def proto():
    x, y = tiny_data()
    return train_surrogate(x, y, tiny_cfg(iters=30), seed=0), x, y


def _check_constraints(adv, x, eps):
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert float((adv - x).abs().max()) <= eps + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


@pytest.mark.parametrize("mode", ["prototypical", "rotation", "jigsaw", "naive"])
def test_constraints_every_mode(mode):
    x, y = tiny_data()
    sur = train_surrogate(x, y, tiny_cfg(mode, iters=5), seed=0)
    adv = craft_nobox(sur, x, y, tiny_attack())
    _check_constraints(adv, x, 0.1)
    assert float((adv - x).abs().max()) > 0.05          # it actually moved


def test_float64_input_keeps_dtype():
    x, y = tiny_data()
    x = x.double()
    sur = train_surrogate(x, y, tiny_cfg(iters=3), seed=0)
    adv = craft_nobox(sur, x, y, tiny_attack(stage1_iters=3, ila_iters=3))
    _check_constraints(adv, x, 0.1)


def test_surrogate_left_as_found(proto):
    sur, x, y = proto
    sur.train()
    sur.decoder.conv1.weight.requires_grad_(True)
    before = {k: v.clone() for k, v in sur.state_dict().items()}
    craft_nobox(sur, x, y, tiny_attack(stage1_iters=2, ila_iters=2))
    assert sur.training and sur.decoder.conv1.weight.requires_grad
    assert not sur.encoder[1].weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in sur.state_dict().items())
    sur.eval()
    sur.requires_grad_(False)


def test_seeds_bit_identical_and_different():
    x, y = tiny_data()
    sur = train_surrogate(x, y, tiny_cfg(iters=5), seed=0)
    cfg = tiny_attack(stage1="pgd")
    a = craft_nobox(sur, x, y, cfg, seed=3)
    b = craft_nobox(sur, x, y, cfg, seed=3)
    c = craft_nobox(sur, x, y, cfg, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # deterministic I-FGSM stage 1: same output for any seed
    assert torch.equal(craft_nobox(sur, x, y, tiny_attack(), seed=1),
                       craft_nobox(sur, x, y, tiny_attack(), seed=2))


def test_nobox_attack_seeds_and_constraints():
    x, y = tiny_data(n_per_class=6)
    y = torch.tensor([0, 0, 1, 1, 2, 2] * 2)
    kw = dict(group_size=4, surrogate_cfg=tiny_cfg(n_decoders=2, iters=4),
              attack_cfg=tiny_attack(stage1_iters=3, ila_iters=3))
    a = nobox_attack(x, y, seed=0, **kw)
    b = nobox_attack(x, y, seed=0, **kw)
    c = nobox_attack(x, y, seed=1, **kw)
    _check_constraints(a, x, 0.1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_ila_beats_clipped_stage1(proto):
    sur, x, y = proto
    cfg = AttackConfig(eps=0.05, stage1_eps=0.3, stage1_iters=20, ila_iters=20, step=0.01)
    adv, x1 = craft_nobox(sur, x, y, cfg, return_stage1=True)
    assert float((x1 - x).abs().max()) > 0.05 + 1e-3     # stage 1 used its larger budget
    clipped = torch.clamp(torch.clamp(x1, x - 0.05, x + 0.05), 0, 1)
    ila = ila_projection(sur, x, x1, adv)
    base = ila_projection(sur, x, x1, clipped)
    assert float(ila.mean()) >= float(base.mean())
    assert float(ila.mean()) > 0


def test_stage1_increases_its_loss(proto):
    sur, x, y = proto
    cls = (y == 7).long()
    loss = stage1_loss(sur, x, cls)
    x1 = iterative_fgsm(loss, x, eps=0.3, alpha=0.02, steps=15)
    with torch.no_grad():
        assert float(loss(x1)) > float(loss(x))
    naive = train_surrogate(x, y, tiny_cfg("naive", iters=5), seed=0)
    lossn = stage1_loss(naive, x, cls)
    assert float(lossn(iterative_fgsm(lossn, x, eps=0.3, alpha=0.02, steps=15))) > float(lossn(x))


def test_zero_feature_change_falls_back_with_warning(proto):
    sur, x, y = proto
    cfg = AttackConfig(eps=0.1, stage1_eps=0.3, stage1_iters=0, ila_iters=5, step=0.02)
    with pytest.warns(UserWarning, match="unchanged"):
        adv = craft_nobox(sur, x, y, cfg)
    assert torch.equal(adv, x)                          # x1 = x, clipped: no division by zero
    assert torch.isfinite(adv).all()


def test_iterative_fgsm_matches_a_literal_loop():
    torch.manual_seed(0)
    w = torch.randn(5, 3)
    x = torch.rand(4, 5)

    def f(z):
        return (z @ w).pow(2).sum()

    out = iterative_fgsm(f, x, eps=0.1, alpha=0.03, steps=6)
    z = x.clone()
    for _ in range(6):
        g = 2 * (z @ w) @ w.T
        z = torch.minimum(torch.maximum(z + 0.03 * g.sign(), x - 0.1), x + 0.1).clamp(0, 1)
    torch.testing.assert_close(out, z)
    r1 = iterative_fgsm(f, x, eps=0.1, alpha=0.03, steps=2, random_start=True, generator=0)
    r2 = iterative_fgsm(f, x, eps=0.1, alpha=0.03, steps=2, random_start=True, generator=0)
    assert torch.equal(r1, r2) and float((r1 - x).abs().max()) <= 0.1 + 1e-7
    assert torch.equal(iterative_fgsm(f, x, eps=0.1, alpha=0.03, steps=0), x)


def test_make_groups_covers_every_image_once():
    y = torch.tensor([0] * 13 + [1] * 10 + [2] * 7 + [3] * 3)
    groups = make_groups(y, group_size=10, seed=0)
    attacked = torch.cat([a for _, a in groups]).tolist()
    assert sorted(attacked) == list(range(len(y)))
    for t, a in groups:
        classes, counts = torch.unique(y[t], return_counts=True)
        assert len(classes) == 2 and counts[0] == counts[1] >= 2
        assert set(a.tolist()) <= set(t.tolist())
    full = [t for t, a in groups if len(t) == 10 and torch.equal(t, a)]
    assert len(full) >= 2
    with pytest.raises(ValueError, match="even"):
        make_groups(y, group_size=9)
    with pytest.raises(ValueError, match="two classes"):
        make_groups(torch.zeros(6, dtype=torch.long))


def test_evaluate_transfer_counts_and_logit_warning():
    x, y = tiny_data()
    y = torch.tensor([0, 1] * 4)
    adv = x.clone()
    adv[:2] = 1 - adv[:2]

    def label_victim(z):                  # "correct" on images whose first pixel < 0.5 ... stub
        return np.asarray(y)

    def flips_first_two(z):
        p = y.clone()
        if not torch.equal(z, x):
            p[:2] = 1 - p[:2]
        return p

    res = evaluate_transfer({"ok": label_victim, "flip": flips_first_two}, x, adv, y)
    assert res["ok"] == {"clean_acc": 1.0, "adv_acc": 1.0, "success_rate": 0.0,
                         "success_on_correct": 0.0}
    assert res["flip"]["adv_acc"] == 0.75 and res["flip"]["success_on_correct"] == 0.25
    logits = torch.nn.functional.one_hot(y, 2).float()
    with pytest.warns(UserWarning, match="arg-max"):
        r = evaluate_transfer({"logits": lambda z: logits}, x, x, y)
    assert r["logits"]["clean_acc"] == 1.0
    none_right = evaluate_transfer({"bad": lambda z: 1 - y}, x, x, y)
    assert math.isnan(none_right["bad"]["success_on_correct"])


def test_bad_attack_inputs(proto):
    sur, x, y = proto
    for kw, name in [({"eps": 0.0}, "eps"), ({"eps": 0.4}, "stage1_eps"),
                     ({"step": -0.1}, "step"), ({"ila_iters": -1}, "ila_iters"),
                     ({"stage1_iters": -2}, "stage1_iters"), ({"stage1": "pgdd"}, "stage1")]:
        with pytest.raises(ValueError, match=f"'{name}'"):
            AttackConfig(**{"stage1_eps": 0.3, **kw})
    with pytest.raises(ValueError, match="'eps'"):
        AttackConfig(eps=float("nan"))
    with pytest.raises(ValueError, match="exactly two classes"):
        craft_nobox(sur, x, torch.zeros(8, dtype=torch.long), tiny_attack())
    with pytest.raises(ValueError, match="values in"):
        craft_nobox(sur, x - 0.5, y, tiny_attack())
    with pytest.raises(TypeError, match="surrogate"):
        craft_nobox(torch.nn.Identity(), x, y, tiny_attack())
    with pytest.raises(ValueError, match="'steps'"):
        iterative_fgsm(lambda z: z.sum(), x, eps=0.1, alpha=0.1, steps=-1)
    with pytest.raises(ValueError, match="'alpha'"):
        iterative_fgsm(lambda z: z.sum(), x, eps=0.1, alpha=0.0, steps=1)
    with pytest.raises(TypeError, match="victims"):
        evaluate_transfer({"v": 3}, x, x, y)
    with pytest.raises(ValueError, match="'adv'"):
        evaluate_transfer({"v": lambda z: y}, x, x[:4], y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_transfer({"v": lambda z: y}, x, x, y)   # labels: no warning
