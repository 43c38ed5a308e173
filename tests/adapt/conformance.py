"""Bad-input table of dnnkit.adapt for the conformance suite."""

from __future__ import annotations

import torch
from torch import nn

from dnnkit.adapt import (
    AdaPTConfig,
    AdaPTModel,
    AdaPTSGD,
    FixedPointFormat,
    performance_model,
    quantize_fixed,
)
from dnnkit.adapt.cost import layer_macs
from dnnkit.adapt.fixed_point import quantize_fixed_ste
from dnnkit.adapt.heuristics import histogram_divergence, push_down, push_up
from dnnkit.adapt.training import LayerRecord
from dnnkit.core.validation import Example


def _net():
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def examples() -> list[Example]:
    x = torch.randn(16)
    fmt = FixedPointFormat(8, 4)
    model = AdaPTModel(_net(), AdaPTConfig(seed=0))
    opt = AdaPTSGD(model, lr=0.01)
    x4 = torch.randn(5, 4)

    def closure():
        opt.zero_grad()
        loss = model(x4).square().mean()
        loss.backward()
        return loss

    closure()
    rec = {"0": LayerRecord(16, 8, 25, 50, 0.0), "2": LayerRecord(12, 6, 25, 50, 0.1)}
    return [
        Example(FixedPointFormat, args=(8, 4)),
        Example(quantize_fixed, args=(x, fmt), kwargs={"rounding": "nearest",
                                                       "generator": torch.Generator()}),
        Example(quantize_fixed_ste, args=(x, fmt), kwargs={"rounding": "stochastic",
                                                           "generator": torch.Generator()}),
        Example(histogram_divergence, args=(x, x.clone(), 8), kwargs={"kind": "kl"}),
        Example(push_down, args=(x, fmt, 10), kwargs={"fl_floor": 2, "tol": 0.0, "kind": "kl",
                                                        "generator": torch.Generator()}),
        Example(push_up, args=(fmt, 2.0), kwargs={"strategy": "min", "results_buffer": 4}),
        Example(AdaPTConfig, kwargs={"wl_init": 8, "fl_init": 4, "fl_floor": 4,
                                     "lookback_momentum": 0.33, "results_buffer": 4,
                                     "strategy": "min", "l1": 1e-4, "tol": 0.0,
                                     "divergence": "kl", "seed": 0}),
        Example(AdaPTModel, args=(_net(),), kwargs={"config": AdaPTConfig()}),
        Example(AdaPTSGD, args=(model,), kwargs={"lr": 0.01, "momentum": 0.9,
                                                 "dampening": 0.0, "weight_decay": 0.0}),
        Example(layer_macs, args=(_net(), (1, 4))),
        Example(performance_model, args=(_net(), (1, 4), [rec]),
                kwargs={"batch_size": 8, "accumulation_steps": 1, "log_interval": 1,
                        "iso_fraction": 0.5}),
        Example(FixedPointFormat, args=(8, 4), kwargs={"symmetric": True}),
        Example(model.layer, args=("0",)),
        Example(model.set_format, args=("2", FixedPointFormat(10, 6))),
        Example(model.generator, args=(torch.device("cpu"),)),
        Example(opt.step, kwargs={"loss": 0.5}),
        Example(opt.step, args=(closure,)),
        Example(opt.master, args=(model.model[0].weight,)),
        # hand-written bad cases
        Example(model.layer, args=("1",), raises=KeyError, param="name"),
        Example(model.set_format, args=("9", fmt), raises=KeyError, param="name"),
        Example(opt.master, args=(nn.Parameter(torch.zeros(2)),), raises=KeyError, param="p"),
        Example(opt.step, kwargs={"loss": torch.ones(2)}, raises=TypeError, param="loss"),
        Example(FixedPointFormat, args=(0, 4), raises=ValueError, param="wl"),
        Example(FixedPointFormat, args=(8, 33), raises=ValueError, param="fl"),
        Example(quantize_fixed, args=(torch.arange(3), fmt), raises=TypeError, param="x"),
        Example(quantize_fixed, args=(torch.ones(2, dtype=torch.complex64), fmt),
                raises=TypeError, param="x"),
        Example(AdaPTConfig, kwargs={"fl_init": 3, "fl_floor": 4}, raises=ValueError,
                param="fl_floor"),
        Example(AdaPTConfig, kwargs={"results_buffer": 32}, raises=ValueError,
                param="results_buffer"),
        Example(AdaPTConfig, kwargs={"lookback": (256, 100)}, raises=ValueError,
                param="lookback"),
        Example(AdaPTConfig, kwargs={"resolution": (0, 10)}, raises=ValueError,
                param="resolution"),
        Example(AdaPTConfig, kwargs={"divergence": "js"}, raises=ValueError, param="divergence"),
        Example(AdaPTModel, args=(nn.Sequential(nn.ReLU()),), raises=ValueError, param="model"),
        Example(AdaPTModel, args=(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)),),
                raises=ValueError, param="model"),
        Example(histogram_divergence, args=(x, torch.randn(5), 8), raises=ValueError,
                param="w_hat"),
        Example(performance_model, args=(_net(), (1, 4), []), raises=ValueError, param="trace"),
    ]
