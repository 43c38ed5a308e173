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

__all__ = ["import_zennit", "zennit_relevance", "import_quantus", "quantus_pixel_flipping",
           "quantus_region_perturbation"]


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


def import_quantus():
    """Import Quantus (0.6.0). It imports zennit at import time when zennit is installed, so
    zennit is imported first through :func:`import_zennit` (torchvision stand-ins)."""
    try:
        import_zennit()
    except ImportError:
        pass
    import quantus

    return quantus


def _quantus_inputs(model: nn.Module, x: torch.Tensor, relevance: torch.Tensor,
                    target: torch.Tensor):
    if x.dtype != torch.float32 or any(p.dtype != torch.float32 for p in model.parameters()):
        raise TypeError("Quantus 0.6.0 feeds float32 arrays to the model: pass a float32 model "
                        "and inputs.")
    return (x.detach().cpu().numpy(), target.detach().cpu().numpy(),
            relevance.detach().to(torch.float32).cpu().numpy())


def quantus_pixel_flipping(model: nn.Module, x: torch.Tensor, relevance: torch.Tensor,
                           target: torch.Tensor, *, steps: int = 16,
                           baseline: float = 0.0) -> torch.Tensor:
    """Quantus' ``PixelFlipping`` curve (Bach et al. 2015) for the same heatmaps: ``(steps, N)``,
    the target logit after removing ``1/steps, ..., 1`` of the input dimensions, most relevant
    first (compare with ``pixel_flipping(...)[1:]``)."""
    quantus = import_quantus()
    xs, ys, rs = _quantus_inputs(model, x, relevance, target)
    d = int(xs[0].size)
    if d % steps:
        raise ValueError(f"quantus_pixel_flipping: {d} input dimensions are not a multiple of "
                         f"steps={steps}.")
    metric = quantus.PixelFlipping(features_in_step=d // steps, normalise=False,
                                   perturb_baseline=baseline, disable_warnings=True)
    curves = metric(model=model.eval(), x_batch=xs, y_batch=ys, a_batch=rs, channel_first=True,
                    softmax=False, device="cpu", batch_size=len(xs))
    return torch.tensor(curves, dtype=torch.float64).T


def quantus_region_perturbation(model: nn.Module, x: torch.Tensor, relevance: torch.Tensor,
                                target: torch.Tensor, *, patch_size: int = 2,
                                regions: int = 16, baseline: float = 0.0) -> torch.Tensor:
    """Quantus' ``RegionPerturbation`` (Samek et al. 2017, most relevant first): per sample the
    AOPC, the mean drop ``f(x) - f(x_perturbed)`` over the first ``regions`` removed patches of
    ``patch_size`` x ``patch_size`` pixels (higher = more faithful)."""
    quantus = import_quantus()
    xs, ys, rs = _quantus_inputs(model, x, relevance, target)
    metric = quantus.RegionPerturbation(patch_size=patch_size, order="morf",
                                        regions_evaluation=regions, normalise=False,
                                        perturb_baseline=baseline, disable_warnings=True)
    drops = metric(model=model.eval(), x_batch=xs, y_batch=ys, a_batch=rs, channel_first=True,
                   softmax=False, device="cpu", batch_size=len(xs))
    return torch.tensor([float(sum(c) / len(c)) for c in drops], dtype=torch.float64)
