import pytest
import torch
from torch import nn

from dnnkit.feddip.local import dpf_local_train

from .helpers import tiny_clients, tiny_model


def _batches(seed=0, n=3):
    x, y = tiny_clients(1, 16 * n, seed)[0]
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, len(x), 16)]


@pytest.mark.oracle
@pytest.mark.parametrize("momentum, wd", [(0.0, 5e-4), (0.9, 1e-3)])
def test_all_ones_mask_and_no_penalty_equals_torch_sgd(momentum, wd):
    data = _batches()
    a, b = tiny_model(), tiny_model()
    ones = {k: torch.ones_like(v, dtype=torch.bool) for k, v in a.state_dict().items()
            if k.endswith("weight")}
    dpf_local_train(a, ones, data, epochs=2, lr=0.05, lam=0.0, weight_decay=wd,
                    momentum=momentum)
    opt = torch.optim.SGD(b.parameters(), lr=0.05, momentum=momentum, weight_decay=wd)
    for _ in range(2):
        for x, y in data:
            opt.zero_grad()
            nn.functional.cross_entropy(b(x), y).backward()
            opt.step()
    for k, v in a.state_dict().items():
        torch.testing.assert_close(v, b.state_dict()[k], rtol=0, atol=1e-6)


def test_dpf_gradient_is_taken_at_masked_weights_and_applied_densely():
    data = _batches(n=1)
    model = tiny_model()
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(3)
    mask = {k: torch.rand(v.shape, generator=g) > 0.5 for k, v in w0.items()
            if k.endswith("weight")}
    # reference: gradient of the loss at m*w, applied to the dense w (one plain SGD step)
    ref = tiny_model()
    with torch.no_grad():
        for k, p in ref.named_parameters():
            if k in mask:
                p.mul_(mask[k])
    x, y = data[0]
    nn.functional.cross_entropy(ref(x), y).backward()
    grads = {k: p.grad.clone() for k, p in ref.named_parameters()}
    dpf_local_train(model, mask, data, epochs=1, lr=0.1, lam=0.0, weight_decay=0.0)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), w0[k] - 0.1 * grads[k], rtol=0, atol=1e-6)
    # pruned coordinates moved (error feedback), i.e. the update was not masked
    k = "0.weight"
    moved = (model.state_dict()[k] != w0[k]) & ~mask[k]
    assert bool(moved.any())


def test_penalty_pulls_weights_to_zero_and_model_mode_is_restored():
    data = _batches()
    a, b = tiny_model(), tiny_model()
    b.eval()
    dpf_local_train(a, None, data, epochs=3, lr=0.1, lam=0.0)
    dpf_local_train(b, None, data, epochs=3, lr=0.1, lam=0.5)
    assert not b.training
    na = sum(float(p.norm()) for k, p in a.named_parameters() if k.endswith("weight"))
    nb = sum(float(p.norm()) for k, p in b.named_parameters() if k.endswith("weight"))
    assert nb < na


def test_prox_term_keeps_model_closer_to_global():
    data = _batches()
    a, b = tiny_model(), tiny_model()
    g = {k: v.clone() for k, v in a.state_dict().items()}
    dpf_local_train(a, None, data, epochs=4, lr=0.2)
    dpf_local_train(b, None, data, epochs=4, lr=0.2, prox_mu=1.0, global_state=g)
    da = sum(float((a.state_dict()[k] - g[k]).norm()) for k in g)
    db = sum(float((b.state_dict()[k] - g[k]).norm()) for k in g)
    assert db < da


def test_bad_inputs():
    m = tiny_model()
    with pytest.raises(ValueError, match="empty loader"):
        dpf_local_train(m, None, [], epochs=1)
    with pytest.raises(ValueError, match="global_state"):
        dpf_local_train(m, None, _batches(), prox_mu=0.1)
    with pytest.raises(ValueError, match="shape"):
        dpf_local_train(m, {"0.weight": torch.ones(2, 2, dtype=torch.bool)}, _batches())
    with pytest.raises(KeyError, match="do not match"):
        dpf_local_train(m, {"9.weight": torch.ones(2, 2, dtype=torch.bool)}, _batches())
    with pytest.raises(ValueError, match="lr"):
        dpf_local_train(m, None, _batches(), lr=-1.0)
    w = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match="non-finite"):
        dpf_local_train(m, {"0.weight": torch.zeros(12, 6, dtype=torch.bool)},
                        [(torch.full((4, 6), float("nan")), torch.zeros(4, dtype=torch.long))])
    # the dense weights were restored although the step raised
    torch.testing.assert_close(m.state_dict()["0.weight"], w["0.weight"])


def _autograd_reference(model, mask, data, *, epochs, lr, lam, weight_decay, momentum):
    """DPF written the plain way: mask the weights, differentiate CE + lam * sum ||w~||_2
    through the graph, restore the dense weights, torch.optim.SGD step."""
    params = dict(model.named_parameters())
    names = list(mask) if mask else [k for k in params if k.endswith("weight")]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    losses = []
    for _ in range(epochs):
        for x, y in data:
            dense = {k: params[k].detach().clone() for k in (mask or {})}
            with torch.no_grad():
                for k, m in (mask or {}).items():
                    params[k].mul_(m.to(params[k].dtype))
            loss = nn.functional.cross_entropy(model(x), y)
            loss = loss + lam * sum(torch.linalg.vector_norm(params[k], ord=2.0)
                                    for k in names)
            losses.append(float(loss.detach()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for k in dense:
                    params[k].copy_(dense[k])
            opt.step()
    return sum(losses) / len(losses)


@pytest.mark.parametrize("masked, momentum, zero_layer",
                         [(True, 0.0, False), (False, 0.0, False), (True, 0.9, False),
                          (True, 0.0, True)])
def test_closed_form_penalty_gradient_is_bit_identical_to_autograd(masked, momentum,
                                                                   zero_layer):
    # the fast path adds (w~ / ||w~||) * lam after backward instead of differentiating the
    # norms through the graph; the trained weights and the loss must not change by one bit
    data = _batches(n=3)
    a, b = tiny_model(), tiny_model()
    g = torch.Generator().manual_seed(5)
    mask = None
    if masked:
        mask = {k: torch.rand(v.shape, generator=g) > 0.6 for k, v in a.state_dict().items()
                if k.endswith("weight")}
        if zero_layer:  # an all-pruned tensor: ||w~|| = 0, subgradient 0
            mask["2.weight"] = torch.zeros_like(mask["2.weight"])
    kw = {"epochs": 3, "lr": 0.2, "lam": 0.05, "weight_decay": 5e-4, "momentum": momentum}
    ours = dpf_local_train(a, mask, data, **kw)
    ref_loss = _autograd_reference(b, mask, data, **kw)
    assert ours["loss"] == ref_loss
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
