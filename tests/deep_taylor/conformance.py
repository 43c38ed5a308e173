"""deep_taylor's bad-input table for tests/test_conformance.py (issue 13)."""

from __future__ import annotations

import math

import torch

from dnnkit.core.validation import Example
from dnnkit.deep_taylor import (
    DTDConfig,
    conservation_gap,
    deep_taylor,
    pixel_flipping,
    propagate_linear,
    sensitivity,
    taylor_nearest_root,
)


def examples() -> list[Example]:
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).eval()
    x = torch.rand(5, 6, generator=g)
    t = torch.tensor([0, 1, 2, 0, 1])
    a, w = torch.rand(2, 3, generator=g), torch.randn(4, 3, generator=g)
    r = torch.rand(2, 4, generator=g)
    nan_x = x.clone()
    nan_x[0, 0] = math.nan
    return [
        Example(DTDConfig, kwargs={"first_rule": "zb", "low": 0.0, "high": 1.0}),
        Example(deep_taylor, args=(net, x), kwargs={"target": 1, "config": DTDConfig(),
                                                    "return_layers": False}),
        Example(conservation_gap, args=(torch.rand(3, 4), torch.rand(3))),
        Example(sensitivity, args=(net, x), kwargs={"target": t}),
        Example(taylor_nearest_root, args=(net, x), kwargs={"target": 0, "steps": 3,
                                                            "tol": 1e-3}),
        Example(pixel_flipping, args=(net, x, torch.rand(5, 6), t),
                kwargs={"steps": 3, "baseline": 0.0, "seed": 0}),
        Example(propagate_linear, args=(a, w, r, "zplus"),
                kwargs={"bias": torch.zeros(4), "low": 0.0, "high": 1.0, "eps": 1e-9}),
        # the examples
        Example(deep_taylor, args=(net, x), kwargs={"target": 1.7}, raises=TypeError,
                param="target"),
        Example(deep_taylor, args=(net, x), kwargs={"target": "a"}, raises=TypeError,
                param="target"),
        Example(deep_taylor, args=(net, x), kwargs={"target": 3}, raises=ValueError,
                param="target"),
        Example(deep_taylor, args=(net, x), kwargs={"config": "zb"}, raises=TypeError,
                param="config"),
        Example(deep_taylor, args=("net", x), raises=TypeError, param="model"),
        Example(DTDConfig, kwargs={"low": math.nan}, raises=ValueError, param="low"),
        Example(DTDConfig, kwargs={"low": -math.inf}, raises=ValueError, param="low"),
        Example(taylor_nearest_root, args=(net, x), kwargs={"tol": math.nan},
                raises=ValueError, param="tol"),
        Example(taylor_nearest_root, args=(net, x), kwargs={"tol": -1.0},
                raises=ValueError, param="tol"),
        Example(pixel_flipping, args=(net, x, None, t[:2]), raises=ValueError, param="target"),
        Example(pixel_flipping, args=(net, x, None, t + 3), raises=ValueError, param="target"),
        Example(pixel_flipping, args=(net, nan_x, None, t), raises=ValueError, param="x"),
        Example(pixel_flipping, args=(net, x, None, t), kwargs={"baseline": math.nan},
                raises=ValueError, param="baseline"),
        Example(propagate_linear, args=(a, w, r), kwargs={"eps": -1.0}, raises=ValueError,
                param="eps"),
        Example(propagate_linear, args=(a, w, r, "epsilon"), kwargs={"bias": torch.zeros(5)},
                raises=ValueError, param="bias"),
    ]
