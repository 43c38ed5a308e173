"""AdaPT's analytical performance model (official ``utils/analytics.py``; spec section 4).

Costs are bit-weighted multiply-accumulates, always as a ratio to float32 (32 bits):

* quantized forward cost of one trace record ``C_q = sum_l d_l (M_l wl_l + O_l)``, float32 cost
  ``C_32 = sum_l 32 M_l`` (``M_l`` MACs of layer ``l``, ``d_l`` its weight density);
* push-down/push-up overhead, official (``official_macs=True``):
  ``O_l = 32 interval / (lb_l A) [3 P_l beta_l res_l d_l + (lb_l + 1) P_l + 1]`` with
  ``beta_l = 2 log2(wl_l - 8)`` if ``wl_l > 8`` else 1 bisection steps, charged against one
  sample's forward pass. Corrected (default): per optimizer step the forward pass costs
  ``A B M_l wl_l`` and the heuristics ``32 [beta_l (3 P_l + res_l) d_l + (lb_l + 1) P_l + 1] /
  lb_l`` (a histogram is linear in the tensor size ``P_l`` plus ``res_l`` for the divergence,
  not their product; push-down runs once per lookback window);
* training speed-up ``2 sum C_32 / (sum C_q + sum C_32)`` (backward and update at float32);
* inference speed-up ``sum 32 M_l / sum d_l wl_l M_l`` at the final record;
* model size ``(sum_l wl_l / 32 L) mean_l d_l`` (official, unweighted) and the
  parameter-weighted ``sum n_l d_l wl_l / sum 32 n_l``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dnnkit.adapt.training import AdaPTModel, LayerRecord
from dnnkit.core.hooks import eval_mode, registered_hooks
from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Real,
    check_int,
    check_interval,
    param_error,
    suggest,
    validate_params,
)

__all__ = ["PerfReport", "layer_macs", "performance_model"]

_MAC_TYPES = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class PerfReport:
    """Analytical ratios vs float32 (> 1 speed-up means faster; size < 1 means smaller)."""

    training_speedup: float
    training_speedup_iso: float | None
    inference_speedup: float
    model_size_ratio: float
    model_size_ratio_weighted: float
    final_sparsity: float
    overhead_fraction: float


@dataclass(frozen=True)
class _Layer:
    macs: int
    p_size: int       # tensor size the heuristics cost is charged for
    numel: int


def _standard(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple[int, int]:
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        per = out.shape[-1] * out.shape[-2] * m.out_channels * (m.in_channels // m.groups) * kh * kw
        return per, m.weight.numel()
    if isinstance(m, nn.Linear):
        rows = max(1, inp.numel() // max(1, inp.shape[0]) // m.in_features)
        return rows * m.in_features * m.out_features, m.weight.numel()
    n = out.numel() // max(1, out.shape[0])            # batch norm: one multiply-add per element
    return n, (m.weight.numel() if m.weight is not None else n)


def _official(m: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple[int, int]:
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        h, w, c = inp.shape[-2], inp.shape[-1], inp.shape[-3]
        return 2 * h * w * (m.in_channels * kh + 1) * m.out_channels * c, kh * kw * m.out_channels
    if isinstance(m, nn.Linear):
        return 2 * m.in_features * m.out_features - m.in_features, m.in_features
    n = inp.numel() // max(1, inp.shape[0])
    return 4 * n, n


def _measure(model: nn.Module, input_shape: Sequence[int], official: bool) -> dict[str, _Layer]:
    where = "adapt.layer_macs"
    if isinstance(model, AdaPTModel):
        model = model.model
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("model", where, "a torch.nn.Module", type(model).__name__))
    if (not isinstance(input_shape, (tuple, list)) or not input_shape
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in input_shape)):
        raise TypeError(param_error("input_shape", where, "a tuple of ints (batch first)",
                                    input_shape))
    for s in input_shape:
        check_int(s, "input_shape", 1, 1 << 20, where=where)
    if math.prod(input_shape) > 1 << 28:
        raise ValueError(param_error("input_shape", where, "at most 2**28 elements",
                                     tuple(input_shape)))
    p = next(iter(model.parameters()), None)
    x = torch.zeros(tuple(input_shape), dtype=p.dtype if p is not None else torch.float32,
                    device=p.device if p is not None else "cpu")
    found: dict[str, _Layer] = {}
    fn = _official if official else _standard
    with registered_hooks() as hooks, eval_mode(model), torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, _MAC_TYPES):
                def hook(mod, args, out, name=name):
                    macs, psize = fn(mod, args[0], out)
                    prev = found.get(name)
                    numel = sum(q.numel() for q in mod.parameters(recurse=False))
                    found[name] = _Layer(macs + (prev.macs if prev else 0), psize, numel)
                hooks.append(m.register_forward_hook(hook))
        model(x)
    return found


@validate_params({"model": Instance(nn.Module)})
def layer_macs(model: nn.Module, input_shape: Sequence[int], *,
               official_macs: bool = False) -> dict[str, int]:
    """Multiply-accumulates per sample of every Conv2d / Linear / BatchNorm layer.

    The model runs once on ``zeros(input_shape)`` (eval mode, no grad, hooks removed after).
    Standard counts: conv ``H_out W_out C_out C_in/groups k_h k_w``, linear
    ``in * out`` (per row), batch norm one per output element. ``official_macs=True`` uses the
    official code's formulas (conv ``2 H_in W_in (C_in k_h + 1) C_out C_in``, linear
    ``2 in out - in``, batch norm ``4 H W C``; its activation add-ons are left out).

    Examples
    --------
    >>> layer_macs(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(),
    ...                          nn.Linear(256, 10)), (1, 1, 8, 8))
    {'0': 2304, '2': 2560}
    """
    return {k: v.macs for k, v in _measure(model, input_shape, official_macs).items()}


@validate_params({"model": Instance(nn.Module), "batch_size": Int(1, 1_000_000),
                  "accumulation_steps": Int(1, 1_000_000), "log_interval": Int(1, 1_000_000),
                  "iso_fraction": Optional_(Real(0.0, 1.0, closed="right")),
                  "final_records": Int(1, 10_000_000)})
def performance_model(model: nn.Module, input_shape: Sequence[int],
                      trace: Sequence[Mapping[str, LayerRecord]], *,
                      batch_size: int = 1, accumulation_steps: int = 1, log_interval: int = 1,
                      official_macs: bool = False, include_overhead: bool = True,
                      iso_fraction: float | None = None, final_records: int = 1) -> PerfReport:
    """Turn a precision/sparsity trace into AdaPT's analytical speed-ups and size ratio.

    Parameters
    ----------
    model : nn.Module or AdaPTModel
        The network (MACs are counted on ``input_shape``, batch size 1 recommended).
    input_shape : tuple of int
        Shape of one input batch, batch first, e.g. ``(1, 1, 8, 8)``.
    trace : sequence of {layer name: LayerRecord}
        ``AdaPTSGD.trace()``; every ``log_interval``-th record is used (the official code logs
        every 10 steps).
    batch_size : int
        Samples per mini-batch ``B`` (corrected model only; the official model charges one
        sample's forward pass per record).
    accumulation_steps : int
        Mini-batches per optimizer step ``A``.
    official_macs : bool
        The official (non-standard) MAC formulas, see :func:`layer_macs`.
    include_overhead : bool
        Charge the heuristics' cost ``O_l``.
    final_records : int
        The final-state metrics (inference speed-up, model sizes, sparsity) are averaged over
        the last ``final_records`` used records (official: 1, the last record).
    iso_fraction : float, optional
        Fraction of the training needed to reach the float32 target accuracy: the iso-accuracy
        speed-up is ``training_speedup / iso_fraction``.

    Returns
    -------
    PerfReport

    Examples
    --------
    >>> net = nn.Linear(4, 2)
    >>> rec = {"": LayerRecord(16, 8, 25, 50, 0.0)}
    >>> r = performance_model(net, (1, 4), [rec], include_overhead=False)
    >>> round(r.training_speedup, 4), r.inference_speedup, r.model_size_ratio
    (1.3333, 2.0, 0.5)
    """
    where = "adapt.performance_model"
    check_int(accumulation_steps, "accumulation_steps", 1, 1_000_000, where=where)
    check_int(log_interval, "log_interval", 1, 1_000_000, where=where)
    check_int(batch_size, "batch_size", 1, 1_000_000, where=where)
    if iso_fraction is not None:
        check_interval(iso_fraction, "iso_fraction", 0.0, 1.0, closed="right", where=where)
    if isinstance(trace, Mapping) or not isinstance(trace, Sequence) or len(trace) == 0:
        raise ValueError(param_error("trace", where, "a non-empty list of {layer: LayerRecord}",
                                     type(trace).__name__))
    layers = _measure(model, input_shape, official_macs)
    records = list(trace)[log_interval - 1::log_interval] or [trace[-1]]
    if records[-1] is not trace[-1]:
        records.append(trace[-1])
    for rec in records:
        if not isinstance(rec, Mapping) or not rec:
            raise ValueError(param_error("trace", where, "records mapping layer names to "
                                         "LayerRecord", type(rec).__name__))
        for name, r in rec.items():
            if name not in layers:
                raise KeyError(f"Layer {name!r} of the trace has no MAC count (not a Conv2d, "
                               f"Linear or BatchNorm reached by the forward pass)."
                               f"{suggest(name, layers)}")
            if not isinstance(r, LayerRecord):
                raise TypeError(param_error("trace", where, "LayerRecord values",
                                            type(r).__name__))
    a = float(accumulation_steps)
    c_q = c_32 = over = 0.0
    for rec in records:
        for name, r in rec.items():
            lay = layers[name]
            d = 1.0 - r.sparsity
            beta = 2.0 * math.log2(r.wl - 8) if r.wl > 8 else 1.0
            if official_macs:          # official: one sample's forward per record
                fwd = lay.macs
                o = (3 * lay.p_size * beta * r.resolution * d + (r.lookback + 1) * lay.p_size + 1)
                o = 32.0 * o * log_interval / (r.lookback * a)
            else:                      # per optimizer step: A mini-batches of batch_size samples
                fwd = lay.macs * batch_size * a
                o = beta * (3 * lay.p_size + r.resolution) * d + (r.lookback + 1) * lay.p_size + 1
                o = 32.0 * o / r.lookback
            o = o if include_overhead else 0.0
            over += o
            c_q += d * (fwd * r.wl + o)
            c_32 += 32.0 * fwd
    train = 2.0 * c_32 / (c_q + c_32)
    inf_s, size_s, size_w, spars = [], [], [], []
    for final in records[-final_records:]:
        inf_q = sum((1.0 - r.sparsity) * r.wl * layers[n].macs for n, r in final.items())
        inf_32 = sum(32.0 * layers[n].macs for n in final)
        dens = [1.0 - r.sparsity for r in final.values()]
        inf_s.append(inf_32 / inf_q if inf_q > 0 else math.inf)
        size_s.append(sum(r.wl for r in final.values()) / (32.0 * len(final))
                      * (sum(dens) / len(dens)))
        num = sum(layers[n].numel * (1.0 - r.sparsity) * r.wl for n, r in final.items())
        den = sum(32.0 * layers[n].numel for n in final)
        size_w.append(num / den if den > 0 else 0.0)
        spars.append(1.0 - sum(dens) / len(dens))
    k = float(len(inf_s))
    return PerfReport(
        training_speedup=train,
        training_speedup_iso=None if iso_fraction is None else train / float(iso_fraction),
        inference_speedup=sum(inf_s) / k,
        model_size_ratio=sum(size_s) / k,
        model_size_ratio_weighted=sum(size_w) / k,
        final_sparsity=sum(spars) / k,
        overhead_fraction=over / c_q if c_q > 0 else 0.0,
    )
