"""systolic's bad-input table for tests/test_conformance.py (issue 13)."""

from __future__ import annotations

import torch
from torch import nn

from dnnkit.core.validation import Example
from dnnkit.systolic import (
    SystolicArray,
    apply_group_size,
    draco_sweep,
    extract_layers,
    simulate,
    to_scalesim_topology,
)


def examples() -> list[Example]:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 4, 1))
    shape = (1, 3, 8, 8)
    layers = extract_layers(net, shape)
    arr = SystolicArray(8, 8, "os")
    return [
        Example(SystolicArray, args=(8, 8), kwargs={"dataflow": "ws"}),
        Example(extract_layers, args=(net, shape), kwargs={"strict": True,
                                                           "return_unmodeled": False}),
        Example(simulate, args=(layers, arr), kwargs={"strict": True}),
        Example(simulate, args=(net, arr), kwargs={"input_shape": shape}),
        Example(draco_sweep, args=(layers, arr, (1, 2)), kwargs={"strict": True}),
        Example(draco_sweep, args=(net, arr, (1, 4)), kwargs={"input_shape": shape}),
        Example(apply_group_size, args=(net, 2), kwargs={"init_from_depthwise": True}),
        Example(to_scalesim_topology, args=(layers,), kwargs={"per_group": True,
                                                              "gemm": False}),
        # the examples
        Example(draco_sweep, args=(layers, arr, (2**40,)), raises=ValueError,
                param="group_sizes"),
        Example(draco_sweep, args=(layers, arr, (3,)), raises=ValueError),
        Example(extract_layers, args=(net, (2**20, 3, 2**12, 2**12)), raises=ValueError,
                param="input_shape"),
        Example(simulate, args=("mobilenet", arr), raises=TypeError, param="model_or_layers"),
        Example(apply_group_size, args=(net, 2**40), raises=ValueError, param="group_size"),
        Example(SystolicArray, args=(0, 8), raises=ValueError, param="rows"),
        Example(extract_layers, args=(net, torch.zeros(1, 3, 8, 8)), kwargs={"strict": 1},
                raises=TypeError, param="strict"),
    ]
