"""Memory of an explanation (issue 20): what autograd keeps for the backward pass.

Counted with ``saved_tensors_hooks`` (exactly deterministic, unlike wall time or RSS): the
z^B + z+ explanation must not hold more than a plain forward+backward of the same batch. The
peak-RSS ratio (goal <= 2x) is a row of ``dnnkit bench deep_taylor``.
"""

import torch
from torch import nn

from dnnkit.deep_taylor import DTDConfig, deep_taylor
from dnnkit.deep_taylor.bench import bench_cnn, saved_tensor_peak_bytes


def test_saved_tensors_no_more_than_a_plain_backward():
    torch.manual_seed(0)
    model = bench_cnn(width=8)
    x = torch.rand(8, 3, 32, 32)
    t = model(x).argmax(1)
    cfg = DTDConfig(first_rule="zb", low=0.0, high=1.0, check_assumptions=False)

    def plain():
        xin = x.clone().requires_grad_(True)
        model(xin)[:, 0].sum().backward()

    params = list(model.parameters())
    ours = saved_tensor_peak_bytes(lambda: deep_taylor(model, x, t, cfg), params)
    floor = saved_tensor_peak_bytes(plain, params)
    # the largest activation: ReLU output of the first conv, 8 x 8 x 32 x 32 float32
    assert floor >= 8 * 8 * 32 * 32 * 4
    assert ours <= 1.1 * floor, (ours, floor)  # 2.09x before issue 20
    model.zero_grad(set_to_none=True)


def test_saved_tensor_counter_counts_each_storage_once():
    x = torch.rand(1000, requires_grad=True)

    def twice():
        y = x * x  # saves x twice (one storage)
        y.sum().backward()

    assert saved_tensor_peak_bytes(twice) == 4000
    assert saved_tensor_peak_bytes(twice, exclude=[x]) == 0


def test_inplace_relu_gives_the_same_relevance(float64):
    torch.manual_seed(3)
    a = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    b = nn.Sequential(*[nn.ReLU(inplace=True) if isinstance(m, nn.ReLU) else m for m in a])
    x = torch.rand(5, 1, 8, 8)
    t = a(x).argmax(1)
    x0 = x.clone()
    ra, rb = deep_taylor(a, x, t), deep_taylor(b, x, t)
    assert torch.equal(x, x0)  # the user's input is untouched
    assert torch.allclose(ra, rb, atol=1e-12) and ra.abs().max() > 0
