"""The same relevance computed by zennit (an independent LRP/DTD library), for cross-checks.

zennit 0.5.1 imports torchvision at import time; torchvision is not required by dnnkit (its
wheel would replace a CPU torch), so when it is absent minimal stand-ins are registered for the
three torchvision modules zennit touches. Only zennit's ResNet canonizers need the real classes.
"""

from __future__ import annotations

import sys
import types

import torch
from torch import nn

from dnnkit.deep_taylor.decompose import DTDConfig

__all__ = ["import_zennit", "zennit_relevance"]


def import_zennit():
    """Import zennit, stubbing ``torchvision.models.resnet`` if torchvision is missing."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        if "torchvision" not in sys.modules:
            tv = types.ModuleType("torchvision")
            models = types.ModuleType("torchvision.models")
            resnet = types.ModuleType("torchvision.models.resnet")

            class _Unavailable(nn.Module):
                """torchvision is not installed."""

            resnet.Bottleneck = _Unavailable
            resnet.BasicBlock = _Unavailable
            models.resnet = resnet
            tv.models = models
            sys.modules.update({"torchvision": tv, "torchvision.models": models,
                                "torchvision.models.resnet": resnet})
    import zennit  # noqa: F401
    import zennit.attribution
    import zennit.composites
    import zennit.rules
    import zennit.types

    return zennit


def zennit_relevance(model: nn.Module, x: torch.Tensor, target: torch.Tensor,
                     config: DTDConfig | None = None) -> torch.Tensor:
    """zennit's relevance with the composite matching ``config`` (z+ hidden layers, biases
    ignored; z^B or w^2 first layer; ReLU pass; average pooling by the Norm (z) rule;
    max-pooling by the gradient, i.e. winner-take-all)."""
    config = config or DTDConfig()
    if config.hidden_rule != "zplus" or config.maxpool != "winner_take_all":
        raise NotImplementedError("zennit_relevance covers hidden_rule='zplus' with "
                                  "winner-take-all max-pooling.")
    zennit = import_zennit()
    R, T = zennit.rules, zennit.types
    eps = config.stabilizer
    first = {
        "zb": lambda: R.ZBox(low=config.low, high=config.high, stabilizer=eps),
        "w2": lambda: R.WSquare(stabilizer=eps, zero_params="bias"),
        "zplus": lambda: R.ZPlus(stabilizer=eps, zero_params="bias"),
    }[config.first_rule]()
    composite = zennit.composites.SpecialFirstLayerMapComposite(
        layer_map=[(T.Activation, R.Pass()), (T.AvgPool, R.Norm(stabilizer=eps)),
                   (T.Linear, R.ZPlus(stabilizer=eps, zero_params="bias"))],
        first_map=[(T.Linear, first)],
    )
    xin = x.detach().clone().requires_grad_(True)
    with zennit.attribution.Gradient(model=model, composite=composite) as attributor:
        out = model(xin).detach()
        onehot = torch.zeros_like(out).scatter_(1, target.view(-1, 1), 1.0)
        _, rel = attributor(xin, onehot * out)
    return rel.detach()
