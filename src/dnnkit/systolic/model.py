"""Closed-form compute model of a rows x cols systolic array (SCALE-Sim v3.0.0's compute model).

For one group of a layer lowered to a GEMM (``Npx`` output pixels, window ``K``, ``M`` filters)
each dataflow maps two dimensions onto the array and streams the third (Samajdar et al. 2018,
SCALE-Sim, Sec. III, Table I):

====  ==========  ==========  ==========
flow  ``Sr``      ``Sc``      ``T``
====  ==========  ==========  ==========
os    ``Npx``     ``M``       ``K``
ws    ``K``       ``M``       ``Npx``
is    ``K``       ``Npx``     ``M``
====  ==========  ==========  ==========

``n_folds = ceil(Sr/R) * ceil(Sc/C)`` and every fold costs ``T + R + C - 2`` cycles (os) or
``2R + C + T - 2`` (ws, is) as SCALE-Sim v3.0.0 replays them; a group costs
``n_folds * fold - 1`` cycles and the groups of a layer run one after another. Utilisation figures
follow SCALE-Sim's COMPUTE_REPORT. Memory stalls are out of scope (SCALE-Sim reports 0 stall
cycles in its CALC bandwidth mode), so these are compute cycles.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    Str,
    check_choice,
    param_error,
    validate_params,
)
from dnnkit.systolic.layers import INPUT_SHAPE, GemmLayer, extract_layers

__all__ = [
    "DATAFLOWS",
    "DEFAULT_ARRAY",
    "LayerReport",
    "NetworkReport",
    "SystolicArray",
    "simulate",
    "simulate_layer",
    "spatial_dims",
]

DATAFLOWS = ("os", "ws", "is")


@validate_params({"rows": Int(1, 1 << 20), "cols": Int(1, 1 << 20),
                  "dataflow": Str()})  # the name (any case) is checked in __post_init__
@dataclass(frozen=True)
class SystolicArray:
    """A ``rows`` x ``cols`` array of MAC units running one dataflow.

    Parameters
    ----------
    rows, cols : int
        Array height and width (positive).
    dataflow : {'os', 'ws', 'is'}
        Output-, weight- or input-stationary.

    Raises
    ------
    ValueError
        For a non-positive size or an unknown dataflow (the message lists the valid ones).
    """

    rows: int = 64
    cols: int = 64
    dataflow: str = "os"

    def __post_init__(self) -> None:
        where = "SystolicArray"
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, Integral):
                raise TypeError(param_error(name, where, "a positive int", v))
            if v < 1:
                raise ValueError(param_error(name, where, "a positive int", v))
            object.__setattr__(self, name, int(v))
        if not isinstance(self.dataflow, str):
            raise TypeError(param_error("dataflow", where, f"one of {list(DATAFLOWS)}",
                                        self.dataflow))
        object.__setattr__(self, "dataflow", self.dataflow.lower())
        check_choice(self.dataflow, "dataflow", DATAFLOWS, where=where)

    @property
    def pes(self) -> int:
        """Number of processing elements ``rows * cols``."""
        return self.rows * self.cols


#: 64x64 output-stationary array, the default of every function taking an array.
DEFAULT_ARRAY = SystolicArray()


@dataclass(frozen=True)
class LayerReport:
    """Compute report of one layer (SCALE-Sim COMPUTE_REPORT columns, whole layer).

    ``sr, sc, t, n_folds`` describe one group; ``cycles = n_groups * (n_folds * fold - 1)``.
    Percentages: ``overall_util = 100 * macs / (cycles * PEs)``; ``mapping_eff`` = mean over folds
    of the mapped fraction of the array; ``compute_util`` = ``mapping_eff`` times the busy share
    ``T / fold`` of a fold; ``scalesim_compute_util`` is SCALE-Sim v3.0.0's figure, whose ws/is
    fold length has one drain too many (``2R + 2C + T - 3``).
    """

    name: str
    kind: str
    sr: int
    sc: int
    t: int
    n_folds: int
    n_groups: int
    macs: int
    cycles: int
    overall_util: float
    mapping_eff: float
    compute_util: float
    scalesim_compute_util: float

    @property
    def cycles_per_group(self) -> int:
        return self.cycles // self.n_groups


@dataclass(frozen=True)
class NetworkReport:
    """Per-layer reports and network totals on one array.

    ``network_util = 100 * sum(macs) / (sum(cycles) * PEs)`` (the array's utilisation over the
    whole inference); ``mean_layer_util`` is the plain mean of the per-layer ``overall_util``.
    ``unmodeled`` lists the modules that ran but cost no modelled cycles (BN, ReLU, pooling...).
    """

    array: SystolicArray
    layers: tuple[LayerReport, ...]
    total_cycles: int
    total_macs: int
    network_util: float
    mean_layer_util: float
    unmodeled: tuple[str, ...] = field(default=())

    def cycles_by_kind(self) -> dict[str, int]:
        """Total cycles per layer kind (conv, pointwise, depthwise, group, fc)."""
        out: dict[str, int] = {}
        for r in self.layers:
            out[r.kind] = out.get(r.kind, 0) + r.cycles
        return out

    def as_rows(self) -> list[dict]:
        """One plain dict per layer (for tables, CSV or ``pandas.DataFrame``)."""
        return [dict(vars(r)) for r in self.layers]


def spatial_dims(layer: GemmLayer, dataflow: str) -> tuple[int, int, int]:
    """``(Sr, Sc, T)`` of one group of ``layer`` under ``dataflow`` (table in the module doc)."""
    npx, k, m = layer.npx, layer.window, layer.out_ch_per_group
    if dataflow == "os":
        return npx, m, k
    if dataflow == "ws":
        return k, m, npx
    if dataflow == "is":
        return k, npx, m
    check_choice(dataflow, "dataflow", DATAFLOWS, where="spatial_dims")
    raise AssertionError  # pragma: no cover


def _report(layer: GemmLayer, ar: int, ac: int, df: str) -> LayerReport:
    sr, sc, t = spatial_dims(layer, df)
    n_folds = -(-sr // ar) * -(-sc // ac)
    if df == "os":
        fold = t + ar + ac - 2
        fold_scalesim = fold
    else:
        fold = 2 * ar + ac + t - 2
        fold_scalesim = 2 * ar + 2 * ac + t - 3
    # SCALE-Sim counts the last cycle index; only a 1x1 array running one 1-MAC fold gives 0
    cycles_group = max(n_folds * fold - 1, 1)
    pes = ar * ac
    macs_group = layer.macs_per_group
    mapping = 100.0 * (sr * sc) / (n_folds * pes)
    return LayerReport(
        name=layer.name, kind=layer.kind, sr=sr, sc=sc, t=t, n_folds=n_folds,
        n_groups=layer.n_groups, macs=layer.n_groups * macs_group,
        cycles=layer.n_groups * cycles_group,
        overall_util=100.0 * macs_group / (cycles_group * pes),
        mapping_eff=mapping,
        compute_util=mapping * t / fold,
        scalesim_compute_util=mapping * t / fold_scalesim,
    )


def simulate_layer(layer: GemmLayer, array: SystolicArray = DEFAULT_ARRAY) -> LayerReport:
    """Compute cycles and utilisation of one layer on ``array``.

    Parameters
    ----------
    layer : GemmLayer
    array : SystolicArray

    Returns
    -------
    LayerReport
        Exactly SCALE-Sim v3.0.0's "Total Cycles", "Overall Util %", "Mapping Efficiency %" and
        (as ``scalesim_compute_util``) "Compute Util %", with groups run back to back.

    References
    ----------
    Samajdar et al., "SCALE-Sim: Systolic CNN Accelerator Simulator", arXiv:1811.02883, Sec. III
    (spatio-temporal mapping; fold latency ``2Sr + Sc + T - 2`` in the paper — the v3.0.0 code
    uses the array size for partially filled folds and ``T + R + C - 2`` for os).

    Examples
    --------
    >>> conv0 = GemmLayer("conv0", "conv", 225, 225, 3, 3, 3, 32, stride_h=2, stride_w=2)
    >>> simulate_layer(conv0, SystolicArray(64, 64, "os")).cycles
    29987
    """
    if not isinstance(layer, GemmLayer):
        raise TypeError(param_error("layer", "simulate_layer", "a GemmLayer",
                                    type(layer).__name__))
    if not isinstance(array, SystolicArray):
        raise TypeError(param_error("array", "simulate_layer", "a SystolicArray",
                                    type(array).__name__))
    return _report(layer, array.rows, array.cols, array.dataflow)


@validate_params({"model_or_layers": AnyOf(Instance(nn.Module),
                                            Sequence_(Instance(GemmLayer), min_len=0)),
                  "array": Instance(SystolicArray), "input_shape": Optional_(INPUT_SHAPE),
                  "strict": Instance(bool)})
def simulate(model_or_layers: nn.Module | Sequence[GemmLayer],
             array: SystolicArray = DEFAULT_ARRAY, *,
             input_shape: Sequence[int] | torch.Tensor | None = None,
             strict: bool = True) -> NetworkReport:
    """Per-layer and whole-network compute report of a model (or layer list) on ``array``.

    Parameters
    ----------
    model_or_layers : nn.Module or sequence of GemmLayer
        A torch model (traced with :func:`~dnnkit.systolic.layers.extract_layers` on
        ``input_shape``) or layers built by hand.
    array : SystolicArray
        Array size and dataflow (default 64x64, output stationary).
    input_shape : tuple of int or torch.Tensor, optional
        Required for a model, batch included, e.g. ``(1, 3, 224, 224)``.
    strict : bool
        Passed to ``extract_layers`` (unsupported layers raise, or are skipped with a warning).

    Returns
    -------
    NetworkReport

    Raises
    ------
    ValueError
        No ``input_shape`` for a model, an empty layer list, or no GEMM layer in the model.

    Examples
    --------
    >>> from dnnkit.core.models import mobilenet_v1
    >>> rep = simulate(mobilenet_v1(), SystolicArray(64, 64, "os"), input_shape=(1, 3, 224, 224))
    >>> len(rep.layers), rep.total_macs
    (28, 568740352)
    """
    if not isinstance(array, SystolicArray):
        raise TypeError(param_error("array", "simulate", "a SystolicArray",
                                    type(array).__name__))
    unmodeled: list[str] = []
    if isinstance(model_or_layers, nn.Module):
        if input_shape is None:
            raise ValueError("simulate: pass input_shape (batch included, e.g. (1, 3, 224, 224)) "
                             "to trace a model.")
        layers, unmodeled = extract_layers(model_or_layers, input_shape, strict=strict,
                                           return_unmodeled=True)
    else:
        layers = list(model_or_layers)
        if not layers:
            raise ValueError("simulate: no GEMM layers found (the layer list is empty).")
        for lay in layers:
            if not isinstance(lay, GemmLayer):
                raise TypeError(param_error("model_or_layers", "simulate",
                                            "an nn.Module or a sequence of GemmLayer",
                                            type(lay).__name__))
    ar, ac, df = array.rows, array.cols, array.dataflow
    reports = tuple(_report(lay, ar, ac, df) for lay in layers)
    cycles = sum(r.cycles for r in reports)
    macs = sum(r.macs for r in reports)
    return NetworkReport(
        array=array, layers=reports, total_cycles=cycles, total_macs=macs,
        network_util=100.0 * macs / (cycles * array.pes),
        mean_layer_util=sum(r.overall_util for r in reports) / len(reports),
        unmodeled=tuple(unmodeled))
