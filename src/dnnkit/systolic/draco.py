"""DRACO: raise the data reuse of depthwise layers by giving each group G channels.

Jha et al. (ISVLSI 2020, arXiv:2006.15103) observe that depthwise convolutions leave a systolic
array almost idle (one input channel per filter: a ``K = 9`` reduction and one filter column per
GEMM, and a full fill/drain per channel) and co-optimise the network instead of the dataflow:
turning each depthwise layer into a group convolution with ``G`` channels per group multiplies
the work per fetched weight/activation by ``G``, fills more of the array and cuts latency at a
small cost in MACs and parameters. On an ``R x C`` output-stationary array a 3x3 depthwise layer
with ``Ch`` channels and an ``E x F`` output costs (module doc of :mod:`dnnkit.systolic.model`)

``cycles(G) = (Ch/G) * (ceil(E*F/R) * ceil(G/C) * (9G + R + C - 2) - 1)``,
``MACs(G) = E*F*Ch*9*G``,

so going from ``G = 1`` to ``G = 2`` halves the number of GEMMs while each grows by 9 cycles.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral

import torch
from torch import nn

from dnnkit.core.validation import (
    AnyOf,
    Instance,
    Int,
    Optional_,
    Sequence_,
    check_interval,
    param_error,
    suggest,
    validate_params,
)
from dnnkit.systolic.layers import (
    INPUT_SHAPE,
    GemmLayer,
    divisors,
    extract_layers,
    regroup_layers,
)
from dnnkit.systolic.model import DEFAULT_ARRAY, NetworkReport, SystolicArray, simulate

__all__ = ["SweepPoint", "apply_group_size", "choose_group_sizes", "draco_sweep"]


@dataclass(frozen=True)
class SweepPoint:
    """Network metrics with every depthwise layer regrouped to ``group_size`` channels/group.

    ``latency_reduction`` (percent) and ``util_gain`` (ratio of network utilisations) and
    ``mac_overhead`` (percent) compare with the unmodified network (``G = 1``). ``params`` counts
    GEMM weights (biases and normalisation excluded).
    """

    group_size: int | str
    total_cycles: int
    total_macs: int
    params: int
    network_util: float
    mean_layer_util: float
    latency_reduction: float
    util_gain: float
    mac_overhead: float
    report: NetworkReport = field(repr=False, compare=False)


def _layers_of(model_or_layers, input_shape, strict: bool, where: str) -> list[GemmLayer]:
    if isinstance(model_or_layers, nn.Module):
        if input_shape is None:
            raise ValueError(f"{where}: pass input_shape (batch included, e.g. (1, 3, 224, 224)) "
                             "to trace a model.")
        return extract_layers(model_or_layers, input_shape, strict=strict)
    layers = list(model_or_layers)
    if not layers:
        raise ValueError(f"{where}: no GEMM layers found (the layer list is empty).")
    return layers


def _point(g, rep: NetworkReport, layers: Sequence[GemmLayer], base: NetworkReport) -> SweepPoint:
    return SweepPoint(
        group_size=g, total_cycles=rep.total_cycles, total_macs=rep.total_macs,
        params=sum(lay.params for lay in layers), network_util=rep.network_util,
        mean_layer_util=rep.mean_layer_util,
        latency_reduction=100.0 * (1.0 - rep.total_cycles / base.total_cycles),
        util_gain=rep.network_util / base.network_util,
        mac_overhead=100.0 * (rep.total_macs / base.total_macs - 1.0), report=rep)


#: A channels-per-group size: larger than any real layer's channel count is an error, not a
#: silent clamp to the channel count.
GROUP_SIZE = Int(1, 1 << 16)


@validate_params({"model_or_layers": AnyOf(Instance(nn.Module),
                                            Sequence_(Instance(GemmLayer), min_len=0)),
                  "array": Instance(SystolicArray), "group_sizes": Sequence_(GROUP_SIZE),
                  "input_shape": Optional_(INPUT_SHAPE), "strict": Instance(bool)})
def draco_sweep(model_or_layers: nn.Module | Sequence[GemmLayer],
                array: SystolicArray = DEFAULT_ARRAY,
                group_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32), *,
                input_shape: Sequence[int] | torch.Tensor | None = None,
                strict: bool = True) -> list[SweepPoint]:
    """Sweep the channels-per-group ``G`` of all depthwise layers (DRACO, uniform ``G``).

    Parameters
    ----------
    model_or_layers : nn.Module or sequence of GemmLayer
        A model (traced on ``input_shape``) or layers.
    array : SystolicArray
    group_sizes : sequence of int
        Candidate ``G``; each must divide every depthwise layer's channel count (``G`` larger
        than a layer's channels is clamped to it).
    input_shape : tuple of int or torch.Tensor, optional
        Required for a model.
    strict : bool
        Passed to ``extract_layers``.

    Returns
    -------
    list of SweepPoint
        One per ``G``, in the given order; comparisons are against the unmodified network.

    Raises
    ------
    ValueError
        A ``G`` that does not divide some layer's channels (nearest valid sizes suggested).

    Examples
    --------
    >>> from dnnkit.core.models import mobilenet_v1
    >>> pts = draco_sweep(mobilenet_v1(), SystolicArray(64, 64, "os"), (1, 2),
    ...                   input_shape=(1, 3, 224, 224))
    >>> round(pts[1].latency_reduction), round(pts[1].mac_overhead, 1)
    (44, 3.1)
    """
    where = "draco_sweep"
    layers = _layers_of(model_or_layers, input_shape, strict, where)
    group_sizes = list(group_sizes)
    if not group_sizes:
        raise ValueError(param_error("group_sizes", where, "a non-empty sequence of ints", []))
    base = simulate(layers, array)
    points = []
    for g in group_sizes:
        lay_g = regroup_layers(layers, g)
        points.append(_point(g, simulate(lay_g, array), lay_g, base))
    return points


def choose_group_sizes(model_or_layers: nn.Module | Sequence[GemmLayer],
                       array: SystolicArray = DEFAULT_ARRAY, *, target_util: float,
                       candidates: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
                       input_shape: Sequence[int] | torch.Tensor | None = None,
                       strict: bool = True) -> dict[str, int]:
    """Per-layer ``G`` (DRACO's data-reuse-aware choice): the smallest candidate whose layer
    utilisation reaches ``target_util`` percent, else the one with the highest utilisation.

    Layers with small feature maps (low reuse) get larger ``G``. Candidates that do not divide a
    layer's channels are skipped for that layer. Pass the result to :func:`regroup_layers`,
    :func:`draco_sweep`'s building blocks or :func:`apply_group_size`.
    """
    where = "choose_group_sizes"
    layers = _layers_of(model_or_layers, input_shape, strict, where)
    if not isinstance(array, SystolicArray):
        raise TypeError(param_error("array", where, "a SystolicArray", type(array).__name__))
    check_interval(target_util, "target_util", 0.0, 100.0, closed="right", where=where)
    out: dict[str, int] = {}
    for lay in layers:
        if lay.kind != "depthwise":
            continue
        best_g, best_u = 1, -1.0
        for g in sorted({min(int(c), lay.in_channels) for c in candidates}):
            if lay.in_channels % g:
                continue
            u = simulate(regroup_layers([lay], g), array).layers[0].overall_util
            if u >= target_util:
                best_g = g
                break
            if u > best_u:
                best_g, best_u = g, u
        out[lay.name] = best_g
    return out


def _embed(old: torch.Tensor, c_old: int, groups_old: int, c_new: int, groups_new: int
           ) -> torch.Tensor:
    """Group-conv weight ``(M, c_new, kh, kw)`` computing the same function as ``old``."""
    m = old.shape[0]
    new = torch.zeros(m, c_new, *old.shape[2:], dtype=old.dtype, device=old.device)
    per_old, per_new = m // groups_old, m // groups_new
    o = torch.arange(m, device=old.device)
    start = (o // per_old) * c_old - (o // per_new) * c_new
    for j in range(c_old):
        new[o, start + j] = old[:, j]
    return new


@validate_params({"model": Instance(nn.Module),
                  "group_size": AnyOf(GROUP_SIZE, Instance(Mapping)),
                  "init_from_depthwise": Instance(bool)})
def apply_group_size(model: nn.Module, group_size: int | Mapping[str, int], *,
                     init_from_depthwise: bool = False) -> nn.Module:
    """A copy of ``model`` whose depthwise ``Conv2d`` layers have ``G`` channels per group.

    Each depthwise conv (``groups == in_channels > 1``) becomes ``Conv2d(C, M, k, stride,
    padding, dilation, groups=C // G, bias, padding_mode)`` on the same device and dtype. The
    original model is not modified.

    Parameters
    ----------
    model : nn.Module
    group_size : int or mapping of str to int
        One ``G`` for every depthwise conv, or ``{module path: G}`` for chosen depthwise/group
        convs. ``G`` larger than the channel count is clamped to it.
    init_from_depthwise : bool
        ``False``: fresh (default torch) initialisation of the new convs. ``True``: copy each
        original kernel into its place in the larger group and zero the rest, so the new model
        computes exactly the same function (possible when each old group fits in one new group).

    Returns
    -------
    nn.Module
        The regrouped copy (same training flag as ``model``).

    Raises
    ------
    ValueError
        ``G`` not dividing a layer's channels (nearest valid sizes suggested), a mapped module
        that is not a grouped ``Conv2d``, or an impossible exact initialisation.
    KeyError
        A mapped name that is not a module (with close matches).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU())
    >>> g4 = apply_group_size(net, 4, init_from_depthwise=True)
    >>> g4[0].groups
    2
    >>> x = torch.randn(2, 8, 5, 5)
    >>> bool(torch.allclose(g4(x), net(x)))
    True
    """
    where = "apply_group_size"
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("model", where, "a torch.nn.Module", type(model).__name__))
    modules = dict(model.named_modules())
    if isinstance(group_size, Mapping):
        for key in group_size:
            if key not in modules:
                raise KeyError(f"{where}: no module named {key!r}.{suggest(str(key), modules)}")
            m = modules[key]
            if not isinstance(m, nn.Conv2d) or m.groups == 1:
                raise ValueError(f"{where}: module {key!r} is a {type(m).__name__} with "
                                 f"groups={getattr(m, 'groups', None)}; only grouped/depthwise "
                                 "Conv2d layers can be regrouped.")
        targets = dict(group_size)
    else:
        if isinstance(group_size, bool) or not isinstance(group_size, Integral) or group_size < 1:
            raise ValueError(param_error("group_size", where,
                                         "a positive int or a mapping {module path: int}",
                                         group_size))
        targets = {name: int(group_size) for name, m in modules.items()
                   if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels}
    plan: dict[str, tuple[nn.Conv2d, int]] = {}
    for name, g in targets.items():
        m = modules[name]
        if isinstance(g, bool) or not isinstance(g, Integral) or g < 1:
            raise ValueError(param_error("group_size", where, "a positive int", g))
        g = min(int(g), m.in_channels)
        if m.in_channels % g:
            ds = divisors(m.in_channels)
            near = [max([d for d in ds if d < g], default=None),
                    min([d for d in ds if d > g], default=None)]
            raise ValueError(
                f"{where}: group size {g} does not divide the {m.in_channels} input channels of "
                f"{name!r}; nearest valid group sizes: {[d for d in near if d]} (all: {ds}).")
        n_groups = m.in_channels // g
        if m.out_channels % n_groups:
            raise ValueError(f"{where}: {n_groups} groups do not divide the {m.out_channels} "
                             f"output channels of {name!r}.")
        c_old = m.in_channels // m.groups
        if init_from_depthwise and (g % c_old or m.groups % n_groups):
            raise ValueError(f"{where}: cannot initialise {name!r} exactly: its groups of "
                             f"{c_old} channels do not fit into groups of {g}.")
        plan[name] = (m, n_groups)

    new_model = copy.deepcopy(model)
    new_modules = dict(new_model.named_modules())
    for name, (old, n_groups) in plan.items():
        if n_groups == old.groups:
            continue
        w = old.weight
        conv = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size, stride=old.stride,
                         padding=old.padding, dilation=old.dilation, groups=n_groups,
                         bias=old.bias is not None, padding_mode=old.padding_mode,
                         device=w.device, dtype=w.dtype)
        if init_from_depthwise:
            with torch.no_grad():
                conv.weight.copy_(_embed(w.detach(), old.in_channels // old.groups, old.groups,
                                         old.in_channels // n_groups, n_groups))
                if old.bias is not None:
                    conv.bias.copy_(old.bias.detach())
        conv.train(old.training)
        conv.weight.requires_grad_(w.requires_grad)
        if name == "":
            return conv
        parent_name, _, child = name.rpartition(".")
        setattr(new_modules[parent_name] if parent_name else new_model, child, conv)
    return new_model
