"""AdaPT training on any ``nn.Module``: a hook-based wrapper and the precision-switching SGD.

:class:`AdaPTModel` quantizes, per layer, the inputs and outputs of every quantized layer
(stochastic rounding, straight-through gradient) with hooks that live only for the duration of
one forward call. :class:`AdaPTSGD` keeps a float master copy of every parameter, quantizes and
normalises the gradients, adds the L1 term, runs SGD on the master, writes ``Q(master)`` back
into the model and switches each layer's ``<WL, FL>`` with push-down / push-up (spec section 3).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from dnnkit.adapt.fixed_point import FixedPointFormat, _NoiseStream, _quantize
from dnnkit.adapt.heuristics import (
    DIVERGENCES,
    STRATEGIES,
    _diversity,
    _push_down,
    _push_up,
    adapt_lookback,
    adapt_resolution,
    next_strategy,
)
from dnnkit.core.hooks import registered_hooks
from dnnkit.core.seeding import make_generator
from dnnkit.core.validation import (
    Callable_,
    Instance,
    Int,
    Optional_,
    Options,
    Real,
    Str,
    check_choice,
    check_int,
    check_interval,
    declares,
    param_error,
    suggest,
    validate_params,
)

__all__ = ["AdaPTConfig", "AdaPTModel", "AdaPTSGD", "LayerRecord"]

_W = "adapt.AdaPTConfig"


def _check_range(value, name: str) -> tuple[int, int]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(param_error(name, _W, "a (min, max) pair of ints", value))
    lo = check_int(value[0], name, 1, 100_000, where=_W)
    hi = check_int(value[1], name, 1, 100_000, where=_W)
    if lo > hi:
        raise ValueError(param_error(name, _W, "a (min, max) pair with min <= max", value))
    return lo, hi


@validate_params({"wl_init": Int(1, 32), "fl_init": Int(0, 32), "fl_floor": Int(0, 32),
                  "lookback_momentum": Real(0.0, 1.0), "results_buffer": Int(0, 31),
                  "strategy": Options(*STRATEGIES), "l1": Real(0.0, None),
                  "tol": Real(0.0, None), "divergence": Optional_(Options(*DIVERGENCES)),
                  "seed": Optional_(Int(0, 2**63 - 1))}, where=_W)
@dataclass(frozen=True)
class AdaPTConfig:
    """Hyper-parameters of AdaPT (defaults: the official AlexNet/CIFAR-10 configuration).

    Parameters
    ----------
    wl_init, fl_init : int
        Initial format of every layer (8, 4).
    fl_floor : int
        Smallest fractional length push-down may choose (4); ``<= fl_init``.
    lookback, resolution : (int, int)
        ``(min, max)`` of the gradient-diversity window and of the histogram resolution.
    lookback_momentum : float
        ``mu`` of the lookback update, in [0, 1].
    results_buffer : int
        Integer head-room bits ``B`` kept by push-up (``0..31``).
    strategy : {"min", "mean", "max"}
        Initial push-up strategy; ``adapt_strategy`` switches it from the loss history.
    quantize_weights, quantize_inputs, quantize_outputs, quantize_grads : bool
        What is simulated in fixed point. All ``False`` (and ``normalize_grads=False``,
        ``l1=0``) is plain SGD.
    normalize_grads : bool
        Per-tensor ``g / ||g||`` (always on in the official code).
    l1 : float
        L1 coefficient ``lambda_1``; the optimizer adds ``lambda_1 * sign(w)`` to the gradient.
    tol : float
        Divergence tolerated as "no information loss" in push-down (0).
    divergence : {"kl", "official"} or None
        Push-down's divergence; ``None`` means ``"kl"``, or ``"official"`` under
        ``official_compat``.
    official_compat : bool
        Reproduce the official code's quirks (spec section 3): its divergence, its bisection,
        push-down on the first output slice ``w[0]``, gradient diversity ``n / ||sum g||``,
        heuristics only for weights with ``ndim > 1``, its loss averaging for the strategy
        switch, and activation formats looked up with a per-layer counter in per-parameter
        lists (layer ``j`` uses the format of layer ``j // 2``).
    layer_types : tuple of module types
        Layers that get a format (their direct parameters and activations are quantized).
    seed : int or None
        Seed of the stochastic rounding.
    """

    wl_init: int = 8
    fl_init: int = 4
    fl_floor: int = 4
    lookback: tuple[int, int] = (25, 100)
    resolution: tuple[int, int] = (50, 150)
    lookback_momentum: float = 0.33
    results_buffer: int = 4
    strategy: Literal["min", "mean", "max"] = "min"
    adapt_strategy: bool = True
    quantize_weights: bool = True
    quantize_inputs: bool = True
    quantize_outputs: bool = True
    quantize_grads: bool = True
    normalize_grads: bool = True
    l1: float = 1e-4
    tol: float = 0.0
    divergence: Literal["kl", "official"] | None = None
    official_compat: bool = False
    layer_types: tuple[type, ...] = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)
    seed: int | None = None

    def __post_init__(self) -> None:
        check_int(self.wl_init, "wl_init", 1, 32, where=_W)
        check_int(self.fl_init, "fl_init", 0, 32, where=_W)
        check_int(self.fl_floor, "fl_floor", 0, 32, where=_W)
        if self.fl_floor > self.fl_init:
            raise ValueError(param_error("fl_floor", _W, f"<= fl_init ({self.fl_init})",
                                         self.fl_floor))
        _check_range(self.lookback, "lookback")
        _check_range(self.resolution, "resolution")
        check_interval(self.lookback_momentum, "lookback_momentum", 0.0, 1.0, where=_W)
        check_int(self.results_buffer, "results_buffer", 0, 31, where=_W)
        check_choice(self.strategy, "strategy", STRATEGIES, where=_W)
        if self.divergence is not None:
            check_choice(self.divergence, "divergence", DIVERGENCES, where=_W)
        check_interval(self.l1, "l1", 0.0, None, where=_W)
        if math.isinf(self.l1):
            raise ValueError(param_error("l1", _W, "a finite float >= 0", self.l1))
        check_interval(self.tol, "tol", 0.0, None, where=_W)
        for name in ("adapt_strategy", "quantize_weights", "quantize_inputs", "quantize_outputs",
                     "quantize_grads", "normalize_grads", "official_compat"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(param_error(name, _W, "a bool", getattr(self, name)))
        types = self.layer_types
        if (not isinstance(types, tuple) or not types
                or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types)):
            raise TypeError(param_error("layer_types", _W,
                                        "a non-empty tuple of nn.Module subclasses", types))
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, int)):
            raise TypeError(param_error("seed", _W, "an int or None", self.seed))
        if self.seed is not None:
            check_int(self.seed, "seed", 0, 2**63 - 1, where=_W)

    @property
    def divergence_kind(self) -> str:
        if self.divergence is not None:
            return self.divergence
        return "official" if self.official_compat else "kl"

    @classmethod
    def dense(cls, **overrides) -> AdaPTConfig:
        """Quantization, normalisation and L1 off: :class:`AdaPTSGD` is then ``torch.optim.SGD``."""
        base = dict(quantize_weights=False, quantize_inputs=False, quantize_outputs=False,
                    quantize_grads=False, normalize_grads=False, l1=0.0)
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True)
class LayerRecord:
    """One layer's state after an optimizer step."""

    wl: int
    fl: int
    lookback: int
    resolution: int
    sparsity: float
    grad_diversity: float = 1.0
    numel: int = 0


def _has_direct_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False))


@validate_params({"model": Instance(nn.Module), "config": Optional_(Instance(AdaPTConfig))},
                 where="adapt.AdaPTModel")
class AdaPTModel(nn.Module):
    """Wrap a user's model for simulated fixed-point training (hooks, no rewritten layers).

    Every module of ``config.layer_types`` is a *quantized layer* with its own format
    ``<WL, FL>`` (initially ``<wl_init, fl_init>``). During ``forward`` — and only then — hooks
    replace the floating inputs and the output of each quantized layer by their stochastic
    fixed-point quantization (nearest rounding in eval mode) with a straight-through gradient;
    the hooks are removed when the call returns or raises. Weights are quantized by
    :class:`AdaPTSGD` (it owns the float master copy).

    Parameters
    ----------
    model : nn.Module
        The user's network. Every parameter must belong directly to a quantized layer.
    config : AdaPTConfig

    Raises
    ------
    ValueError
        No quantized layer, or parameters held by modules outside ``layer_types`` (listed).

    Examples
    --------
    >>> net = AdaPTModel(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)),
    ...                  AdaPTConfig(seed=0))
    >>> net(torch.zeros(5, 4)).shape, net.formats()["0"]
    (torch.Size([5, 2]), FixedPointFormat(wl=8, fl=4, symmetric=False))
    """

    def __init__(self, model: nn.Module, config: AdaPTConfig | None = None) -> None:
        where = "adapt.AdaPTModel"
        if not isinstance(model, nn.Module):
            raise TypeError(param_error("model", where, "a torch.nn.Module",
                                        type(model).__name__))
        config = AdaPTConfig() if config is None else config
        if not isinstance(config, AdaPTConfig):
            raise TypeError(param_error("config", where, "an AdaPTConfig",
                                        type(config).__name__))
        super().__init__()
        self.model = model
        self.config = config
        layers = [(n, m) for n, m in model.named_modules() if isinstance(m, config.layer_types)]
        if not layers:
            names = [t.__name__ for t in config.layer_types]
            raise ValueError(param_error("model", where,
                                         f"a model with at least one layer of type {names}",
                                         type(model).__name__))
        bad = [f"{n or '<root>'} ({type(m).__name__})" for n, m in model.named_modules()
               if _has_direct_params(m) and not isinstance(m, config.layer_types)]
        if bad:
            raise ValueError(
                param_error("model", where, "a model whose parameters all belong to layers of "
                            f"{[t.__name__ for t in config.layer_types]}", ", ".join(bad))
                + " Add their types to AdaPTConfig.layer_types to quantize them.")
        self._layers: dict[str, nn.Module] = dict(layers)
        fmt = FixedPointFormat(config.wl_init, config.fl_init)
        self._formats: dict[str, FixedPointFormat] = {n: fmt for n in self._layers}
        self._seed = config.seed
        self._generators: dict[torch.device, torch.Generator] = {}
        self._bitgens: dict[torch.device, np.random.SFC64] = {}
        self._buffers: dict = {}                        # activation noise buffers, by shape

    # -- state ------------------------------------------------------------------------------
    def layer_names(self) -> list[str]:
        """Names (``named_modules`` paths of the wrapped model) of the quantized layers."""
        return list(self._layers)

    @validate_params({"name": Str()}, where="adapt.AdaPTModel.layer")
    def layer(self, name: str) -> nn.Module:
        """The quantized layer called ``name`` (one of :meth:`layer_names`)."""
        self._check_layer(name, "adapt.AdaPTModel.layer")
        return self._layers[name]

    def _check_layer(self, name: str, where: str) -> None:
        if name not in self._layers:
            raise KeyError(param_error("name", where, "the name of a quantized layer", name)
                           + suggest(name, self._layers))

    def formats(self) -> dict[str, FixedPointFormat]:
        """Current format of every quantized layer."""
        return dict(self._formats)

    @validate_params({"name": Str(), "fmt": Instance(FixedPointFormat)},
                     where="adapt.AdaPTModel.set_format")
    def set_format(self, name: str, fmt: FixedPointFormat) -> None:
        """Set a layer's format (weights follow at the optimizer's next step)."""
        self._check_layer(name, "adapt.AdaPTModel.set_format")
        self._formats[name] = fmt

    def sparsity(self) -> dict[str, float]:
        """Fraction of exact zeros among each quantized layer's parameters."""
        out = {}
        for n, m in self._layers.items():
            ps = list(m.parameters(recurse=False))
            tot = sum(p.numel() for p in ps)
            zeros = sum(int((p.detach() == 0).sum()) for p in ps)
            out[n] = zeros / tot if tot else 0.0
        return out

    def l1_penalty(self) -> torch.Tensor:
        """``lambda_1 * sum |w|`` over the quantized layers' parameters (for logging: the
        optimizer already adds its gradient)."""
        ps = [p for m in self._layers.values() for p in m.parameters(recurse=False)]
        if not ps:
            return torch.zeros(())
        return self.config.l1 * sum(p.detach().abs().sum() for p in ps)

    @declares({"device": Instance(torch.device)}, where="adapt.AdaPTModel.generator")
    def generator(self, device: torch.device) -> torch.Generator:
        """The stochastic-rounding generator for ``device`` (one per device, seeded)."""
        # inline check (every quantized activation asks): a hit is a device checked before
        gen = self._generators.get(device) if isinstance(device, torch.device) else None
        if gen is None:
            if not isinstance(device, torch.device):
                raise TypeError(param_error("device", "adapt.AdaPTModel.generator",
                                            "a torch.device", type(device).__name__))
            seed = None if self._seed is None else self._seed + len(self._generators)
            gen = make_generator(seed, device=device)
            self._generators[device] = gen
        return gen

    def _noise_stream(self, device: torch.device) -> _NoiseStream:
        """A fresh stream of stochastic-rounding draws keyed by this model's generator (streams
        are used one after the other, so they share one numpy bit generator per device)."""
        bitgen = self._bitgens.get(device)
        if bitgen is None and device.type == "cpu":
            bitgen = self._bitgens[device] = np.random.SFC64(0)
        return _NoiseStream(self.generator(device), bitgen)

    # -- forward ----------------------------------------------------------------------------
    def _act_format(self, idx: int, name: str) -> FixedPointFormat:
        if self.config.official_compat:
            names = list(self._formats)
            return self._formats[names[min(idx // 2, len(names) - 1)]]
        return self._formats[name]

    def _q(self, x, fmt: FixedPointFormat, streams: dict | None = None):
        """``x + (Q(x) - x).detach()`` (straight-through); ``streams`` batches the draws."""
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return x
        xd = x.detach()
        if self.training:
            if streams is None:
                gen = self.generator(x.device)
            else:
                gen = streams.get(x.device)
                if gen is None:
                    gen = streams[x.device] = self._noise_stream(x.device)
                if xd.dtype in (torch.float32, torch.float64):
                    # _quantize's arithmetic in a reused noise buffer (dead once x + q exists)
                    buf, arr = self._noise_buffer(xd)
                    k = gen.fill_(buf, arr).add_(xd, alpha=2.0 ** fmt.fl).floor_()
                    k = k.clamp_(fmt.qmin, fmt.qmax).mul_(fmt.eps)
                    return x + k.sub_(xd)
            q = _quantize(xd, fmt, "stochastic", gen)
        else:
            q = _quantize(xd, fmt, "nearest", None)
        return x + q.sub_(xd)                         # q is a fresh tensor: in place is safe

    def _noise_buffer(self, like: torch.Tensor) -> tuple[torch.Tensor, np.ndarray | None]:
        key = (threading.get_ident(), like.shape, like.dtype, like.device)
        hit = self._buffers.get(key)
        if hit is None:
            if len(self._buffers) > 64:                 # e.g. many batch sizes: start over
                self._buffers.clear()
            if like.device.type == "cpu":
                arr = np.empty(like.numel(), np.float32 if like.dtype == torch.float32
                               else np.float64)
                hit = (torch.from_numpy(arr).view(like.shape), arr)
            else:
                hit = (torch.empty_like(like, memory_format=torch.contiguous_format), None)
            self._buffers[key] = hit
        return hit

    def forward(self, *args, **kwargs):
        cfg = self.config
        if not (cfg.quantize_inputs or cfg.quantize_outputs):
            return self.model(*args, **kwargs)
        streams: dict = {}                            # one noise stream per device and call
        q = self._q
        with registered_hooks() as hooks:
            for idx, (name, m) in enumerate(self._layers.items()):
                fmt = self._act_format(idx, name)
                if cfg.quantize_inputs:
                    hooks.append(m.register_forward_pre_hook(
                        lambda _m, inp, f=fmt: tuple(q(t, f, streams) for t in inp)))
                if cfg.quantize_outputs:
                    hooks.append(m.register_forward_hook(
                        lambda _m, _i, out, f=fmt: q(out, f, streams)))
            return self.model(*args, **kwargs)


def _floats(ts: list[torch.Tensor]) -> list[float]:
    """Python floats of 0-d tensors with one device synchronisation when they share a device."""
    if not ts:
        return []
    if len({(t.device, t.dtype) for t in ts}) == 1:
        return torch.stack(ts).tolist()
    return [float(t) for t in ts]


@dataclass
class _LayerState:
    lookback: int
    resolution: int
    n: int = 0
    norm_sum: float = 0.0
    acc: torch.Tensor | None = None
    sparsity: float = 0.0
    gd: float = 1.0
    params: list[tuple[str, nn.Parameter]] = field(default_factory=list)
    numel: int = 0


@dataclass
class _Flat:
    params: list[nn.Parameter]
    sizes: list[int]
    master: torch.Tensor
    master_views: list[torch.Tensor]
    layer_names: list[str]
    layer_sizes: list[int]
    buf: torch.Tensor | None = None
    buf_views: list[torch.Tensor] = field(default_factory=list)
    vec_key: tuple | None = None
    vecs: tuple = ()
    vec_segments: list = field(default_factory=list)
    # work buffers, reused every step (a step keeps nothing from them but copies)
    g: torch.Tensor | None = None                     # raw gradients (+ L1)
    w: torch.Tensor | None = None                     # sign of the visible weights
    q: torch.Tensor | None = None                     # noise, then the prepared gradients
    q_np: object = None
    qw: torch.Tensor | None = None                    # noise, then Q(master)
    qw_np: object = None
    views: dict = field(default_factory=dict)

    def buffers(self) -> None:
        if self.g is not None:
            return
        m = self.master
        self.g, self.w = torch.empty_like(m), torch.empty_like(m)
        if m.device.type == "cpu":
            dt = np.float32 if m.dtype == torch.float32 else np.float64
            self.q_np, self.qw_np = np.empty(m.numel(), dt), np.empty(m.numel(), dt)
            self.q, self.qw = torch.from_numpy(self.q_np), torch.from_numpy(self.qw_np)
        else:
            self.q, self.qw = torch.empty_like(m), torch.empty_like(m)
        for key in ("g", "w", "q", "qw"):
            flat = getattr(self, key)
            self.views[key] = [v.view(p.shape) for v, p in zip(flat.split(self.sizes),
                                                               self.params)]
        self.views["qw_layers"] = list(self.qw.split(self.layer_sizes))


@validate_params({"lr": Real(0.0, 1e6, closed="right"), "momentum": Real(0.0, 1.0),
                  "dampening": Real(0.0, 1.0), "weight_decay": Real(0.0, 1e6)},
                 where="adapt.AdaPTSGD")
class AdaPTSGD(torch.optim.Optimizer):
    """SGD on a float master copy with AdaPT's per-layer precision switching (spec section 3).

    Per step and per quantized layer ``l``, for each of its parameters (weight first):
    ``g <- g + lambda_1 sign(w)``; ``g <- Q^stoch_l(g)``; ``g <- g / ||g||``; for the weight:
    accumulate ``(sum ||g||, sum g)``, gradient diversity ``GD``, adapt lookback and resolution,
    and after ``lookback`` gradients run push-down then push-up; then momentum SGD on the master
    (``torch.optim.SGD``'s update, weight decay on the master) and write ``Q^stoch_l(master)``
    back into the model.

    Parameters
    ----------
    model : AdaPTModel
    lr : float
        Learning rate (with unit-norm gradients, an absolute step length per tensor).
    momentum, dampening, weight_decay : float
    nesterov : bool

    Raises
    ------
    FloatingPointError
        NaN/inf in a gradient or master weight (names the layer and parameter).
    RuntimeError
        ``step()`` when no parameter has a gradient.
    """

    def __init__(self, model: AdaPTModel, lr: float, momentum: float = 0.9,
                 dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        where = "adapt.AdaPTSGD"
        if not isinstance(model, AdaPTModel):
            raise TypeError(param_error("model", where, "an AdaPTModel (wrap your network "
                                        "first)", type(model).__name__))
        check_interval(lr, "lr", 0.0, 1e6, closed="right", where=where)
        check_interval(momentum, "momentum", 0.0, 1.0, where=where)
        check_interval(dampening, "dampening", 0.0, 1.0, where=where)
        check_interval(weight_decay, "weight_decay", 0.0, 1e6, where=where)
        if not isinstance(nesterov, bool):
            raise TypeError(param_error("nesterov", where, "a bool", nesterov))
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(param_error("nesterov", where,
                                         "False unless momentum > 0 and dampening == 0",
                                         nesterov))
        params = [p for n in model.layer_names()
                  for p in model.layer(n).parameters(recurse=False)]
        super().__init__(params, dict(lr=float(lr), momentum=float(momentum),
                                      dampening=float(dampening),
                                      weight_decay=float(weight_decay), nesterov=nesterov))
        self.model = model
        cfg = model.config
        self.config = cfg
        self.strategy = cfg.strategy
        self._loss_hist: list[float] = []
        self._trace: list[dict[str, LayerRecord]] = []
        self._layers: dict[str, _LayerState] = {}
        for name in model.layer_names():
            m = model.layer(name)
            ps = sorted(m.named_parameters(recurse=False), key=lambda kv: kv[0] != "weight")
            self._layers[name] = _LayerState(cfg.lookback[0], cfg.resolution[0], params=ps)
            for pname, p in ps:
                if not bool(torch.isfinite(p.detach()).all()):
                    raise FloatingPointError(f"Non-finite values in parameter '{pname}' of "
                                             f"layer '{name}'.")
                dt = p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32
                self.state[p]["master"] = p.detach().to(dt).clone()
        for st in self._layers.values():
            st.numel = sum(p.numel() for _, p in st.params)
        self._flat = self._make_flat()
        with torch.no_grad():
            self._write_back(list(self._layers), {})

    # -- helpers ----------------------------------------------------------------------------
    def _stream(self, streams: dict, device: torch.device) -> _NoiseStream:
        gen = streams.get(device)
        if gen is None:
            gen = streams[device] = self.model._noise_stream(device)
        return gen

    def _quantize_all(self, xs: list[torch.Tensor], fmts: list[FixedPointFormat],
                      streams: dict) -> list[torch.Tensor]:
        """``Q^stoch`` of every tensor with its own format, as a handful of ``_foreach`` calls.

        Same arithmetic as :func:`~dnnkit.adapt.fixed_point._quantize`:
        ``clamp(floor(2^fl x + U), qmin, qmax) * 2^-fl`` (the product is exact).
        """
        if any(x.dtype not in (torch.float32, torch.float64) for x in xs):
            return [_quantize(x, f, "stochastic", self._stream(streams, x.device))
                    for x, f in zip(xs, fmts)]
        ks = torch._foreach_mul(xs, [2.0 ** f.fl for f in fmts])
        torch._foreach_add_(ks, [self._stream(streams, x.device).uniform(x) for x in xs])
        torch._foreach_floor_(ks)
        torch._foreach_clamp_min_(ks, [f.qmin for f in fmts])
        torch._foreach_clamp_max_(ks, [f.qmax for f in fmts])
        torch._foreach_mul_(ks, [f.eps for f in fmts])
        return ks

    def _write_back(self, names: list[str], streams: dict) -> None:
        """``p <- Q^stoch_l(master)`` for every parameter of the named layers; sparsity."""
        ps, ms, fmts = [], [], []
        for name in names:
            fmt = self.model._formats[name]
            for _, p in self._layers[name].params:
                ps.append(p)
                ms.append(self.state[p]["master"])
                fmts.append(fmt)
        if not ps:
            return
        qs = self._quantize_all(ms, fmts, streams) if self.config.quantize_weights else ms
        torch._foreach_copy_(ps, qs)
        signs = torch._foreach_sign(
            [p if p.dtype in (torch.float32, torch.float64) else p.float() for p in ps])
        torch._foreach_abs_(signs)
        nonzero = _floats([t.sum(dtype=torch.float64) for t in signs])
        i = 0
        for name in names:
            st = self._layers[name]
            k = len(st.params)
            st.sparsity = 1.0 - sum(nonzero[i:i + k]) / st.numel if st.numel else 0.0
            i += k

    def _adapt_strategy(self, loss: float) -> None:
        lbs = [s.lookback for s in self._layers.values()]
        avg_lb = max(1, int(sum(lbs) / len(lbs)))
        h = self._loss_hist
        if self.config.official_compat:
            if len(h) > avg_lb:
                mean = abs(sum(h) / avg_lb)
                self.strategy = next_strategy(self.strategy, mean, loss)
                del h[:-avg_lb]
        elif len(h) >= avg_lb:
            mean = sum(h[-avg_lb:]) / avg_lb
            self.strategy = next_strategy(self.strategy, abs(mean), loss)
            del h[:-avg_lb]
        h.append(float(loss))

    def _switch(self, name: str, st: _LayerState, master: torch.Tensor, gen) -> None:
        cfg, model = self.config, self.model
        fmt = model._formats[name]
        w = master[0] if cfg.official_compat else master
        if w.numel() > 0:
            fmt = _push_down(w, fmt, st.resolution, cfg.fl_floor, cfg.tol, cfg.divergence_kind,
                             cfg.official_compat, gen)
        fmt = _push_up(fmt, st.gd, self.strategy, cfg.results_buffer)
        model._formats[name] = fmt
        st.n, st.norm_sum, st.acc = 0, 0.0, None

    def _check_finite(self, items, grads) -> None:
        """One reduction over every gradient; the slow per-tensor search only on failure."""
        if math.isfinite(sum(_floats(torch._foreach_norm(grads)))):
            return
        for (name, _, _, pname, _), g in zip(items, grads):
            if not bool(torch.isfinite(g).all()):
                raise FloatingPointError(f"Non-finite gradient in parameter '{pname}' of "
                                         f"layer '{name}'.")

    # -- flat fast path ---------------------------------------------------------------------
    def _make_flat(self) -> _Flat | None:
        """Masters of one dtype/device live in one flat buffer (``state[p]["master"]`` are
        views), so the quantized step runs as a few elementwise passes over all parameters."""
        ps = [p for st in self._layers.values() for _, p in st.params]
        ms = [self.state[p]["master"] for p in ps]
        if not ps or len({(m.dtype, m.device) for m in ms}) != 1 or any(
                p.dtype != ms[0].dtype for p in ps) or len({id(p) for p in ps}) != len(ps):
            return None
        master = torch.cat([m.reshape(-1) for m in ms])
        sizes = [p.numel() for p in ps]
        views = [v.view(p.shape) for v, p in zip(master.split(sizes), ps)]
        for p, v in zip(ps, views):
            self.state[p]["master"] = v
        return _Flat(ps, sizes, master, views, list(self._layers),
                     [st.numel for st in self._layers.values()])

    def _flat_ready(self, items) -> _Flat | None:
        f, cfg = self._flat, self.config
        if (f is None or len(items) != len(f.params) or not cfg.quantize_grads
                or not cfg.quantize_weights):
            return None
        state = self.state
        if any(state[p].get("master") is not v for p, v in zip(f.params, f.master_views)):
            return None                                 # state replaced (load_state_dict)
        if self.param_groups[0]["momentum"] != 0:
            if f.buf is None:
                if any("momentum_buffer" in state[p] for p in f.params):
                    return None
            elif any(state[p].get("momentum_buffer") is not v
                     for p, v in zip(f.params, f.buf_views)):
                return None
        return f

    def _vectors(self, f: _Flat) -> tuple[torch.Tensor, ...]:
        """Per-element ``2^fl``, ``qmin``, ``qmax``, ``2^-fl``; a switch refills only the
        switched layer's segment."""
        fmts = tuple(self.model._formats[n] for n in f.layer_names)
        if fmts == f.vec_key:
            return f.vecs
        if f.vec_key is None:
            m = f.master
            f.vecs = tuple(torch.empty_like(m) for _ in range(4))
            f.vec_segments = [list(v.split(f.layer_sizes)) for v in f.vecs]
            old = (None,) * len(fmts)
        else:
            old = f.vec_key
        for j, (a, b) in enumerate(zip(old, fmts)):
            if a != b:
                for seg, val in zip((s[j] for s in f.vec_segments),
                                    (2.0 ** b.fl, b.qmin, b.qmax, b.eps)):
                    seg.fill_(val)
        f.vec_key = fmts
        return f.vecs

    def _quantize_flat(self, f: _Flat, x: torch.Tensor, out: str, streams: dict
                       ) -> torch.Tensor:
        """``clamp(floor(2^fl x + U), qmin, qmax) * 2^-fl`` elementwise with per-parameter
        formats (the arithmetic of :func:`~dnnkit.adapt.fixed_point._quantize`), into the work
        buffer ``out``."""
        scale, lo, hi, eps = self._vectors(f)
        u = self._stream(streams, x.device).fill_(getattr(f, out), getattr(f, out + "_np"))
        return u.addcmul_(x, scale).floor_().clamp_(lo, hi).mul_(eps)

    def _prepare_flat(self, f: _Flat, streams: dict):
        cfg = self.config
        if cfg.l1 > 0:
            torch._foreach_copy_(f.views["w"], [p.detach() for p in f.params])
            f.g.add_(f.w.sign_(), alpha=cfg.l1)
        q = self._quantize_flat(f, f.g, "q", streams)
        views = f.views["q"]
        norms = _floats(torch._foreach_norm(views))
        if cfg.normalize_grads:
            pos = [k for k, n in enumerate(norms) if n > 0]
            if pos:
                torch._foreach_div_([views[k] for k in pos], [norms[k] for k in pos])
                for k in pos:
                    norms[k] = 1.0
        return list(views), norms, q

    def _sgd_flat(self, f: _Flat, g: torch.Tensor) -> None:
        group = self.param_groups[0]
        lr, mom, damp = group["lr"], group["momentum"], group["dampening"]
        wd, nesterov = group["weight_decay"], group["nesterov"]
        d_p = g.add(f.master, alpha=wd) if wd != 0 else g
        if mom != 0:
            if f.buf is None:
                f.buf = torch.clone(d_p).detach()
                f.buf_views = [v.view(p.shape) for v, p in zip(f.buf.split(f.sizes), f.params)]
                for p, v in zip(f.params, f.buf_views):
                    self.state[p]["momentum_buffer"] = v
            else:
                f.buf.mul_(mom).add_(d_p, alpha=1 - damp)
            d_p = d_p.add(f.buf, alpha=mom) if nesterov else f.buf
        f.master.add_(d_p, alpha=-lr)

    def _write_back_flat(self, f: _Flat, streams: dict) -> None:
        self._quantize_flat(f, f.master, "qw", streams)
        torch._foreach_copy_(f.params, f.views["qw"])
        f.qw.sign_().abs_()
        nonzero = _floats([t.sum(dtype=torch.float64) for t in f.views["qw_layers"]])
        for st, nz in zip(self._layers.values(), nonzero):
            st.sparsity = 1.0 - nz / st.numel if st.numel else 0.0

    # -- public -----------------------------------------------------------------------------
    @validate_params({"closure": Optional_(Callable_()), "loss": Optional_(Real())},
                     where="adapt.AdaPTSGD.step")
    @torch.no_grad()
    def step(self, closure=None, *, loss: float | torch.Tensor | None = None):
        """One AdaPT step. ``loss`` (a float or one-element tensor, or the closure's value)
        drives the strategy switch. A non-finite ``loss`` argument raises ``ValueError``; a
        closure returning a non-finite loss raises ``FloatingPointError``.

        All gradients are prepared at once (``_foreach`` kernels, or a few elementwise passes
        over the flat master when every parameter has a gradient); the heuristics then run layer
        by layer in parameter order, and a switch triggered by a weight re-prepares the layer's
        later parameters (its bias) with the new format, as in the sequential algorithm.
        Non-finite gradients are refused before any update.
        """
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        items = [(name, st, i, pname, p) for name, st in self._layers.items()
                 for i, (pname, p) in enumerate(st.params) if p.grad is not None]
        if not items:
            raise RuntimeError("AdaPTSGD.step() was called but no parameter has a gradient; "
                               "call loss.backward() first.")
        cfg, model, state = self.config, self.model, self.state
        masters = [state[it[4]]["master"] for it in items]
        flat = self._flat_ready(items)
        if flat is not None:
            flat.buffers()
            torch._foreach_copy_(flat.views["g"], [it[4].grad.detach() for it in items])
            if not math.isfinite(float(flat.g.sum())):
                self._check_finite(items, flat.views["g"])
            grads = None                                # raw gradients: p.grad, on demand
        else:
            grads = [it[4].grad.detach() for it in items]
            grads = [g if g.dtype == m.dtype else g.to(m.dtype)
                     for g, m in zip(grads, masters)]
            self._check_finite(items, grads)
        if loss is not None and cfg.adapt_strategy:
            lv = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
            if not math.isfinite(lv):
                raise FloatingPointError(f"Non-finite loss {lv} passed to AdaPTSGD.step().")
            self._adapt_strategy(lv)
        streams: dict = {}
        # every gradient at once with the formats at the start of the step ...
        if flat is not None:
            gs, norms, g_flat = self._prepare_flat(flat, streams)
        else:
            gs, norms = self._prepare(items, grads, streams)
        # ... then the heuristics, layer by layer in parameter order; a switch re-prepares the
        # layer's later parameters with the new format (the sequential algorithm's order)
        for j, (name, st, i, _, p) in enumerate(items):
            if not ((p.ndim > 1) if cfg.official_compat else i == 0):
                continue
            st.n += 1
            st.norm_sum += 1.0 if cfg.official_compat else norms[j]
            st.acc = gs[j].clone() if st.acc is None else st.acc.add_(gs[j])
            norm_sum = float(st.n) if cfg.official_compat else st.norm_sum
            st.gd = _diversity(norm_sum, float(torch.linalg.vector_norm(st.acc)))
            st.lookback = adapt_lookback(st.lookback, st.gd, lookback_range=cfg.lookback,
                                         momentum=cfg.lookback_momentum)
            st.resolution = adapt_resolution(st.resolution, st.lookback,
                                             lookback_range=cfg.lookback,
                                             resolution_range=cfg.resolution)
            if st.n >= st.lookback:
                m = masters[j]
                old = model._formats[name]
                self._switch(name, st, m, self._stream(streams, m.device))
                later = [k for k in range(j + 1, len(items)) if items[k][0] == name]
                if later and model._formats[name] != old and cfg.quantize_grads:
                    raw = [grads[k] if grads is not None
                           else items[k][4].grad.detach().to(masters[k].dtype) for k in later]
                    g2, n2 = self._prepare([items[k] for k in later], raw, streams)
                    for k, g_k, n_k in zip(later, g2, n2):
                        if flat is not None:
                            gs[k].copy_(g_k)           # a view of the flat gradient
                        else:
                            gs[k] = g_k
                        norms[k] = n_k
        if flat is not None:
            self._sgd_flat(flat, g_flat)
            self._write_back_flat(flat, streams)
        else:
            self._sgd(items, masters, gs)
            self._write_back(list(dict.fromkeys(it[0] for it in items)), streams)
        record: dict[str, LayerRecord] = {}
        for name, st in self._layers.items():
            f = model._formats[name]
            record[name] = LayerRecord(f.wl, f.fl, st.lookback, st.resolution, st.sparsity,
                                       st.gd, st.numel)
        self._trace.append(record)
        return loss

    def _prepare(self, items, grads: list[torch.Tensor], streams: dict
                 ) -> tuple[list[torch.Tensor], list[float]]:
        """Steps 1-2 for a batch: ``g + lambda_1 sign(w)``, ``Q^stoch_l(g)``, ``g / ||g||``.

        Returns the prepared gradients and their norms after normalisation (1.0 or 0.0 where
        normalised); never modifies ``p.grad``."""
        cfg, model = self.config, self.model
        g = grads
        owned = False                                   # may g be modified in place?
        if cfg.l1 > 0:
            g = torch._foreach_add(g, torch._foreach_sign([it[4].detach() for it in items]),
                                   alpha=cfg.l1)
            owned = True
        if cfg.quantize_grads:
            g = self._quantize_all(g, [model._formats[it[0]] for it in items], streams)
            owned = True
        g = list(g)
        norms = _floats(torch._foreach_norm(g))
        if cfg.normalize_grads:
            pos = [k for k, n in enumerate(norms) if n > 0]
            if pos:
                sub, scal = [g[k] for k in pos], [norms[k] for k in pos]
                if owned:
                    torch._foreach_div_(sub, scal)
                else:
                    for k, t in zip(pos, torch._foreach_div(sub, scal)):
                        g[k] = t
                for k in pos:
                    norms[k] = 1.0
        return g, norms

    def _sgd(self, items, masters: list[torch.Tensor], gs: list[torch.Tensor]) -> None:
        """``torch.optim.SGD``'s single-tensor update on the masters, as ``_foreach`` calls
        (the same per-tensor kernels, so the dense path equals SGD bit for bit)."""
        group = self.param_groups[0]
        lr, mom, damp = group["lr"], group["momentum"], group["dampening"]
        wd, nesterov = group["weight_decay"], group["nesterov"]
        d_p = list(gs)
        if wd != 0:
            d_p = list(torch._foreach_add(d_p, masters, alpha=wd))
        if mom != 0:
            bufs, old = [], []
            for k, it in enumerate(items):
                st = self.state[it[4]]
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = torch.clone(d_p[k]).detach()
                else:
                    old.append(k)
                bufs.append(buf)
            if old:
                ob = [bufs[k] for k in old]
                torch._foreach_mul_(ob, mom)
                torch._foreach_add_(ob, [d_p[k] for k in old], alpha=1 - damp)
            d_p = list(torch._foreach_add(d_p, bufs, alpha=mom)) if nesterov else bufs
        torch._foreach_add_(masters, d_p, alpha=-lr)

    def trace(self) -> list[dict[str, LayerRecord]]:
        """One ``{layer: LayerRecord}`` per step taken (formats after the step)."""
        return list(self._trace)

    def layer_state(self) -> dict[str, LayerRecord]:
        """The current record of every layer (initial state before any step)."""
        out = {}
        for name, st in self._layers.items():
            f = self.model._formats[name]
            out[name] = LayerRecord(f.wl, f.fl, st.lookback, st.resolution, st.sparsity, st.gd,
                                    st.numel)
        return out

    @validate_params({"p": Instance(torch.Tensor)}, where="adapt.AdaPTSGD.master")
    def master(self, p: nn.Parameter) -> torch.Tensor:
        """The float master copy of a parameter."""
        if p not in self.state or "master" not in self.state[p]:
            raise KeyError(param_error("p", "adapt.AdaPTSGD.master", "a parameter of a "
                                       "quantized layer of the optimizer's model",
                                       f"tensor of shape {tuple(p.shape)}"))
        return self.state[p]["master"]

