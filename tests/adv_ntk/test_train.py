"""Adv-NTK training: ϖ moves from 0, lowers the adversarial validation loss, is seeded; bad input."""

import pytest
import torch

from dnnkit.adv_ntk import AdvNTK, KernelSpec, fit_adv_ntk

SPEC = KernelSpec(depth=2)


def _data(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 6, generator=g, dtype=torch.float64) - 0.5
    y = (x[:, 0] > x[:, 1]).long() + (x[:, 2] > 0.25).long()
    return x, y


def test_training_moves_varpi_and_lowers_adversarial_loss():
    x, y = _data()
    calls = []

    def on_step(step, model):
        calls.append(step)
        assert isinstance(model, AdvNTK)
        return {"seen": step}

    model, hist = fit_adv_ntk(x, y, SPEC, val_size=15, steps=6, batch_size=8, lr=0.1, eps=0.05,
                              pgd_steps=3, pgd_alpha=0.02, seed=0, on_step=on_step)
    assert model.varpi.shape == (35,) and model.varpi.requires_grad
    assert calls == list(range(1, 7)) and [h["seen"] for h in hist] == calls
    # ϖ₀ = 0 gives f ≡ 0, i.e. loss ½ per sample; training lowers it
    assert hist[0]["val_adv_loss"] == pytest.approx(0.5)
    assert hist[-1]["val_adv_loss"] < 0.45
    assert hist[-1]["varpi_norm"] > 0.3  # GradNorm steps of size lr
    # seeded: same seed, same ϖ
    model2, _ = fit_adv_ntk(x, y, SPEC, val_size=15, steps=6, batch_size=8, lr=0.1, eps=0.05,
                            pgd_steps=3, pgd_alpha=0.02, seed=0)
    assert torch.equal(model.varpi, model2.varpi)


def test_explicit_validation_split_and_per_class():
    x, y = _data()
    model, hist = fit_adv_ntk(x[:30], y[:30], SPEC, x_val=x[30:], y_val=y[30:], steps=3,
                              batch_size=10, eps=0.05, pgd_steps=2, per_class=True,
                              num_classes=3)
    assert model.varpi.shape == (30, 3) and len(hist) == 3
    assert torch.equal(model.x_train, x[:30])


def test_zero_steps_returns_zero_predictor():
    x, y = _data()
    model, hist = fit_adv_ntk(x, y, SPEC, val_size=10, steps=0)
    assert hist == [] and float(model.varpi.detach().abs().max()) == 0.0


def test_bad_inputs():
    x, y = _data()
    with pytest.raises(ValueError, match="'val_size'"):
        fit_adv_ntk(x, y, SPEC, val_size=50)
    with pytest.raises(ValueError, match="'val_size'"):
        fit_adv_ntk(x, y, SPEC, val_size=0)
    with pytest.raises(ValueError, match="'lr'"):
        fit_adv_ntk(x, y, SPEC, val_size=10, lr=0.0)
    with pytest.raises(ValueError, match="'steps'"):
        fit_adv_ntk(x, y, SPEC, val_size=10, steps=-1)
    with pytest.raises(ValueError, match="'eps'"):
        fit_adv_ntk(x, y, SPEC, val_size=10, eps=-1.0)
    with pytest.raises(ValueError, match="'y_val'"):
        fit_adv_ntk(x, y, SPEC, x_val=x[:5])
    with pytest.raises(ValueError, match="'y_train'"):
        fit_adv_ntk(x, y[:-3], SPEC, val_size=10)
    with pytest.raises(ValueError, match="'x_val'"):
        fit_adv_ntk(x, y, SPEC, x_val=torch.zeros(4, 5), y_val=y[:4])
