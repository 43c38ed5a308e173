"""Deep Taylor decomposition (DTD) relevance maps.

Montavon, Lapuschkin, Binder, Samek, Mueller, "Explaining nonlinear classification decisions
with deep Taylor decomposition", Pattern Recognition 65 (2017) 211-222, arXiv:1512.02479.

DTD explains one output ``f(x) >= 0`` of a ReLU network by a heatmap ``R(x)`` with
``sum_p R_p = f(x)`` (conservation) and ``R_p >= 0`` (positivity): z+ in the hidden layers,
z^B (bounded pixels) or w^2 (unbounded inputs) at the first layer.

Example
-------
>>> import torch
>>> from dnnkit.deep_taylor import DTDConfig, deep_taylor, conservation_gap
>>> net = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
>>> x = torch.rand(4, 16)
>>> R = deep_taylor(net, x, target=0, config=DTDConfig(first_rule="zb", low=0.0, high=1.0))
>>> f = net(x)[:, 0]
>>> bool((conservation_gap(R, f) <= 1e-4 * f.abs().clamp_min(1)).all()) or bool((f <= 0).any())
True
"""

from dnnkit.deep_taylor.baselines import sensitivity, taylor_nearest_root
from dnnkit.deep_taylor.decompose import DTDConfig, deep_taylor
from dnnkit.deep_taylor.metrics import conservation_gap, pixel_flipping
from dnnkit.deep_taylor.rules import propagate_linear

__all__ = ["DTDConfig", "deep_taylor", "conservation_gap", "sensitivity", "taylor_nearest_root",
           "pixel_flipping", "propagate_linear"]
