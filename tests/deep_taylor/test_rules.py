"""Rules against literal matrix-form re-implementations and a hand-computed two-layer net."""

import pytest
import torch

from dnnkit.deep_taylor import DTDConfig, deep_taylor, propagate_linear
from dnnkit.deep_taylor.rules import stabilize


def literal(a, w, r, rule, low=0.0, high=1.0):
    """R_i = sum_j q_ij / sum_i' q_i'j R_j with the paper's q for each rule, one sample at a time."""
    out = torch.zeros_like(a)
    for n in range(a.shape[0]):
        for j in range(w.shape[0]):
            if rule == "zplus":
                q = a[n] * w[j].clamp(min=0)
            elif rule == "w2":
                q = w[j] ** 2
            else:
                q = a[n] * w[j] - low * w[j].clamp(min=0) - high * w[j].clamp(max=0)
            out[n] += q / q.sum() * r[n, j]
    return out


@pytest.mark.parametrize("rule", ["zplus", "w2", "zb"])
def test_dense_rules_equal_the_literal_formula(rule, float64):
    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 6, generator=g)
    w = torch.randn(4, 6, generator=g)
    r = torch.rand(3, 4, generator=g)
    got = propagate_linear(a, w, r, rule, low=0.0, high=1.0, eps=0.0)
    assert torch.allclose(got, literal(a, w, r, rule), atol=1e-12)
    assert torch.allclose(got.sum(1), r.sum(1), atol=1e-12)  # layer-wise conservation


def test_hand_computed_two_layer_net(float64):
    # x = (1, 2); hidden h = relu(W1 x + b1); f = h1 + h2 (sum-pooling)
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(),
                              torch.nn.Linear(2, 1, bias=False)).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 1.0]]))
        net[0].bias.copy_(torch.tensor([-0.5, -1.0]))
        net[2].weight.fill_(1.0)
    x = torch.tensor([[1.0, 0.5]])
    # h = relu(1 - 0.5 - 0.5, 2 + 0.5 - 1) = (0, 1.5); f = 1.5; only unit 2 is relevant
    r_zplus = deep_taylor(net, x, 0, DTDConfig(first_rule="zplus"))
    assert torch.allclose(r_zplus, torch.tensor([[1.5 * 2 / 2.5, 1.5 * 0.5 / 2.5]]))
    r_w2 = deep_taylor(net, x, 0, DTDConfig(first_rule="w2"))
    assert torch.allclose(r_w2, torch.tensor([[1.5 * 4 / 5, 1.5 * 1 / 5]]))
    # z^B in [0, 1]^2: q = x w - l w+ - h w- = (2, 0.5) (no negative weights in unit 2)
    r_zb = deep_taylor(net, x, 0, DTDConfig(first_rule="zb", low=0.0, high=1.0))
    assert torch.allclose(r_zb, torch.tensor([[1.2, 0.3]]))


def test_stabilizer_never_divides_by_zero():
    z = torch.tensor([0.0, -0.0, 1e-30, -1e-30])
    assert (stabilize(z, 1e-9).abs() >= 1e-9).all()
    a = torch.zeros(2, 3)
    r = propagate_linear(a, torch.randn(4, 3), torch.ones(2, 4), "zplus")
    assert torch.isfinite(r).all() and (r == 0).all()


def test_propagate_linear_validates_shapes():
    with pytest.raises(ValueError, match="relevance"):
        propagate_linear(torch.rand(2, 3), torch.rand(4, 3), torch.rand(2, 5))
    with pytest.raises(ValueError, match="Did you mean"):
        propagate_linear(torch.rand(2, 3), torch.rand(4, 3), torch.rand(2, 4), "zplu")


def test_epsilon_rule_literal(float64):
    """LRP-epsilon: R_i = sum_j a_i w_ij / (z_j + eps sign z_j) R_j with z_j = a w_j + b_j."""
    g = torch.Generator().manual_seed(2)
    a, w = torch.rand(2, 5, generator=g), torch.randn(3, 5, generator=g)
    b, r = torch.randn(3, generator=g), torch.rand(2, 3, generator=g)
    eps = 0.25
    z = a @ w.T + b
    zs = z + eps * torch.where(z >= 0, 1.0, -1.0)
    want = torch.einsum("ni,ji,nj->ni", a, w, r / zs)
    got = propagate_linear(a, w, r, "epsilon", bias=b, eps=eps)
    assert torch.allclose(got, want, atol=1e-12)
    # epsilon absorbs relevance: the sum shrinks (not conservative), unlike the DTD rules
    assert (got.sum(1) != r.sum(1)).all()
