"""AdaPT: adaptive per-layer fixed-point precision training, on any ``nn.Module``.

Paper: L. Kummer, K. Sidak, T. Reichmann, W. Gansterer, "Adaptive Precision Training (AdaPT): A
dynamic fixed point quantized training approach for DNNs", arXiv:2107.13490 (SIAM SDM 2023).
Official code: github ``lorenz0890/AdaPT``.

What it gives:

- :class:`FixedPointFormat` and :func:`quantize_fixed` — signed ``<WL, FL>`` fixed point,
  saturating, nearest (half to even) or unbiased stochastic rounding;
  :func:`~dnnkit.adapt.fixed_point.quantize_fixed_ste` is the straight-through variant.
- :class:`AdaPTModel` + :class:`AdaPTSGD` (configured by :class:`AdaPTConfig`) — training in
  simulated per-layer fixed point: activations quantized through temporary hooks, gradients and
  weights by the optimizer (float master copy), formats switched by push-down / push-up, L1
  sparsity, a per-layer trace of ``(WL, FL, lookback, resolution, sparsity)``.
- :func:`performance_model` — the paper's analytical training / inference speed-up and model
  size from that trace (:func:`~dnnkit.adapt.cost.layer_macs` counts the MACs).
- The heuristics as pure functions in :mod:`dnnkit.adapt.heuristics`: ``histogram_divergence``,
  ``gradient_diversity``, ``push_down``, ``push_up``, ``adapt_lookback``, ``adapt_resolution``,
  ``next_strategy``.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from dnnkit.adapt import AdaPTConfig, AdaPTModel, AdaPTSGD, performance_model
>>> net = AdaPTModel(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)),
...                  AdaPTConfig(seed=0, lookback=(2, 4)))
>>> opt = AdaPTSGD(net, lr=0.01)
>>> x, y = torch.randn(32, 8, generator=torch.Generator().manual_seed(0)), torch.arange(32) % 3
>>> for _ in range(5):
...     opt.zero_grad()
...     loss = nn.functional.cross_entropy(net(x), y)
...     loss.backward()
...     _ = opt.step(loss=loss)
>>> sorted(net.formats())
['0', '2']
>>> rep = performance_model(net, (1, 8), opt.trace())
>>> rep.inference_speedup > 1
True
"""

from dnnkit.adapt.cost import PerfReport, layer_macs, performance_model
from dnnkit.adapt.fixed_point import FixedPointFormat, quantize_fixed, quantize_fixed_ste
from dnnkit.adapt.heuristics import (
    adapt_lookback,
    adapt_resolution,
    gradient_diversity,
    histogram_divergence,
    next_strategy,
    push_down,
    push_up,
)
from dnnkit.adapt.training import AdaPTConfig, AdaPTModel, AdaPTSGD, LayerRecord

__all__ = [
    "FixedPointFormat",
    "quantize_fixed",
    "AdaPTConfig",
    "AdaPTModel",
    "AdaPTSGD",
    "performance_model",
]

# importable from here too, kept out of __all__ to keep the headline API small
_ = (PerfReport, layer_macs, quantize_fixed_ste, adapt_lookback, adapt_resolution,
     gradient_diversity, histogram_divergence, next_strategy, push_down, push_up, LayerRecord)
