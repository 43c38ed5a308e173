import warnings

import pytest
import torch
from torch import nn

from dnnkit.deep_taylor import (
    DTDConfig,
    conservation_gap,
    deep_taylor,
    pixel_flipping,
    sensitivity,
    taylor_nearest_root,
)


def nonpos_bias(model):
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(-0.1 * m.bias.abs())
    return model.eval()


def mlp():
    torch.manual_seed(0)
    return nonpos_bias(nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(),
                                     nn.Linear(12, 3)))


def cnn(bn=False):
    torch.manual_seed(1)
    layers = [nn.Conv2d(1, 4, 3, padding=1)]
    if bn:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
               nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24, 3)]
    return nonpos_bias(nn.Sequential(*layers))


def positive_outputs(model, x):
    """Targets whose output is positive (DTD explains f >= 0)."""
    out = model(x)
    t = out.argmax(1)
    keep = out.gather(1, t[:, None]).squeeze(1) > 1e-3
    return x[keep], t[keep]


@pytest.mark.parametrize("rule", ["zb", "w2", "zplus"])
@pytest.mark.parametrize("make", [mlp, cnn])
def test_conservation_and_positivity(rule, make, float64):
    model = make()
    shape = (64, 20) if make is mlp else (64, 1, 8, 8)
    x, t = positive_outputs(model, torch.rand(*shape))
    assert len(x) > 5
    R = deep_taylor(model, x, t, DTDConfig(first_rule=rule))
    f = model(x).gather(1, t[:, None]).squeeze(1).detach()
    assert R.shape == x.shape
    assert (conservation_gap(R, f) <= 1e-9 * f).all()
    assert (R >= -1e-12).all()  # consistent for x in the rule's domain (Props. 1-3)


def test_float32_conservation_within_1e_5():
    model = cnn().float()
    x, t = positive_outputs(model, torch.rand(64, 1, 8, 8))
    R = deep_taylor(model, x, t)
    f = model(x).gather(1, t[:, None]).squeeze(1).detach()
    assert (conservation_gap(R, f) <= 1e-5 * f).all()


def test_batchnorm_is_folded_without_touching_the_model(float64):
    model = cnn(bn=True)
    with torch.no_grad():
        bn = model[1]
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, -0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # the same function with BN folded by hand
    ref = cnn(bn=False)
    with torch.no_grad():
        s = bn.weight / (bn.running_var + bn.eps).sqrt()
        ref[0].weight.copy_(model[0].weight * s.view(-1, 1, 1, 1))
        ref[0].bias.copy_((model[0].bias - bn.running_mean) * s + bn.bias)
        ref[3].load_state_dict(model[4].state_dict())
        ref[7].load_state_dict(model[8].state_dict())
    x = torch.rand(16, 1, 8, 8)
    assert torch.allclose(ref(x), model(x), atol=1e-12)
    t = model(x).argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, want = deep_taylor(model, x, t), deep_taylor(ref, x, t)
    assert torch.allclose(got, want, atol=1e-12)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def _hook_counts(model):
    return [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()]


def test_no_marks_left_on_the_model_even_when_forward_raises():
    model = mlp()
    model[1].train()  # an odd mode flag that must survive
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = _hook_counts(model)
    modes = [m.training for m in model.modules()]
    deep_taylor(model, torch.rand(4, 20), 0)
    with pytest.raises(RuntimeError):
        deep_taylor(model, torch.rand(4, 19), 0)  # shape error inside forward
    assert _hook_counts(model) == hooks
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert not any(p.grad is not None for p in model.parameters())


def test_unsupported_modules_are_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Sequential(nn.LayerNorm(4)),
                          nn.Linear(4, 2)).eval()
    with pytest.raises(TypeError, match=r"1 \(Tanh\).*2\.0 \(LayerNorm\)"):
        deep_taylor(model, torch.rand(2, 4))


def test_bad_inputs():
    model = mlp()
    with pytest.raises(ValueError, match="outside the z\\^B box"):
        deep_taylor(model, torch.rand(2, 20) + 1.5, 0)
    with pytest.raises(ValueError, match="needs inputs >= 0"):
        deep_taylor(model, torch.randn(8, 20), 0, DTDConfig(first_rule="zplus"))
    with pytest.raises(ValueError, match="low <= 0 <= high"):
        DTDConfig(low=0.5, high=1.0)
    with pytest.raises(ValueError, match="index one of 3"):
        deep_taylor(model, torch.rand(2, 20), 5)
    with pytest.raises(ValueError, match="non-finite"):
        deep_taylor(model, torch.full((2, 20), float("nan")), 0)
    with pytest.raises(ValueError, match="training mode"):
        deep_taylor(nn.Sequential(nn.Linear(4, 2), nn.Dropout()).train(), torch.rand(2, 4))
    relu = nn.ReLU()
    twice = nn.Sequential(nn.Linear(4, 4), relu, nn.Linear(4, 4), relu, nn.Linear(4, 2)).eval()
    with pytest.raises(ValueError, match="more than once"):
        deep_taylor(twice, torch.rand(2, 4))
    pos = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    with torch.no_grad():
        pos[0].bias.fill_(0.5)
    with pytest.warns(UserWarning, match="positive biases"):
        deep_taylor(pos, torch.rand(2, 4))


def test_zero_input_gives_zero_relevance_not_nan():
    R = deep_taylor(mlp(), torch.zeros(3, 20), 0)
    assert torch.isfinite(R).all()


def test_baselines(float64):
    model = mlp()
    x, t = positive_outputs(model, torch.rand(32, 20))
    s = sensitivity(model, x, t)
    xin = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(xin).gather(1, t[:, None]).sum(), xin)
    assert torch.allclose(s, g * g)
    R = taylor_nearest_root(model, x, t, steps=50)
    f = model(x).gather(1, t[:, None]).squeeze(1).detach()
    gap = conservation_gap(R, f) / f
    assert gap.mean() > 1e-3  # first-order Taylor misses part of f (paper Sec. 5.1)
    assert torch.isfinite(R).all()


def test_pixel_flipping_endpoints(float64):
    model = mlp()
    x, t = positive_outputs(model, torch.rand(16, 20))
    R = deep_taylor(model, x, t)
    curve = pixel_flipping(model, x, R, t, steps=4)
    f = model(x).gather(1, t[:, None]).squeeze(1)
    assert curve.shape == (5, len(x))
    assert torch.allclose(curve[0], f)
    assert torch.allclose(curve[-1], model(torch.zeros_like(x)).gather(1, t[:, None]).squeeze(1))
    rnd = pixel_flipping(model, x, None, t, steps=4, seed=0)
    assert torch.allclose(rnd[0], f) and not torch.allclose(rnd[2], curve[2])
