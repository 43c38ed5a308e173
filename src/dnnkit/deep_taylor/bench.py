"""``dnnkit bench deep_taylor``: our DTD vs zennit (same composite) vs one forward+backward."""

from __future__ import annotations

import torch
from torch import nn

from dnnkit.core.benchmark import Timing, time_call
from dnnkit.core.registry import register_bench
from dnnkit.deep_taylor.decompose import DTDConfig, deep_taylor


def bench_cnn(width: int = 32) -> nn.Sequential:
    """3 conv + 2 fc ReLU CNN for 3x32x32 inputs (the spec's benchmark model)."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, 10),
    ).eval()


@register_bench("deep_taylor")
def bench(quick: bool = False) -> list[Timing]:
    from dnnkit.deep_taylor.oracle import zennit_relevance

    torch.manual_seed(0)
    model = bench_cnn()
    x = torch.rand(16 if quick else 64, 3, 32, 32)
    target = model(x).argmax(1)
    cfg = DTDConfig(first_rule="zb", low=0.0, high=1.0, check_assumptions=False)
    repeat = 3 if quick else 7
    ours = time_call(lambda: deep_taylor(model, x, target, cfg), repeat=repeat)
    theirs = time_call(lambda: zennit_relevance(model, x, target, cfg), repeat=repeat)

    def plain() -> None:
        xin = x.clone().requires_grad_(True)
        model(xin)[:, 0].sum().backward()

    floor = time_call(plain, repeat=repeat)
    n = x.shape[0]
    err = float((deep_taylor(model, x, target, cfg) - zennit_relevance(model, x, target, cfg))
                .abs().max())
    return [
        Timing(f"DTD z^B+z+ on 3conv+2fc CNN, batch {n}, 3x32x32", ours, "zennit 0.5.1", theirs,
               note=f"max |dR| vs zennit {err:.1e} (float32)"),
        Timing("same, vs one plain forward+backward (floor)", ours, "autograd", floor,
               note="speedup < 1: cost relative to the floor"),
    ]
