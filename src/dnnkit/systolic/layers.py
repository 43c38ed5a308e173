"""GEMM views of conv/linear layers, and tracing them out of any torch model.

A convolution is lowered to a matrix product (im2col) per group: ``Npx = E*F*N`` output pixels
(rows of the input operand), a reduction of length ``K = R*S*C`` (``C`` input channels per group)
and ``M`` filters per group. Everything a systolic-array compute model needs is in
:class:`GemmLayer`; :func:`extract_layers` builds the list from a model by running it once on an
input of a given shape with forward hooks (removed afterwards, the model is left as found).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Integral

import torch
from torch import nn

from dnnkit.core.hooks import eval_mode, registered_hooks
from dnnkit.core.validation import (
    AnyOf,
    Instance,
    Int,
    Sequence_,
    Tensor,
    check_choice,
    check_memory,
    param_error,
    suggest,
    validate_params,
)

__all__ = ["LAYER_KINDS", "GemmLayer", "divisors", "extract_layers", "regroup_layers"]

LAYER_KINDS = ("conv", "pointwise", "depthwise", "group", "fc")

#: Module types that hide matrix products this model cannot see or does not support: tracing a
#: model that calls one of them raises ``NotImplementedError`` (or warns with ``strict=False``).
_REFUSED: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase, nn.Bilinear,
)
#: Leaf modules with >= 2-D parameters that are not GEMMs (a table lookup).
_NOT_GEMM_WITH_MATRICES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n`` in increasing order."""
    return [d for d in range(1, n + 1) if n % d == 0]


def _nearest_divisors(n: int, g: int) -> list[int]:
    ds = divisors(n)
    below = [d for d in ds if d < g]
    above = [d for d in ds if d > g]
    return ([below[-1]] if below else []) + ([above[0]] if above else [])


@dataclass(frozen=True)
class GemmLayer:
    """One conv/linear layer in its per-group GEMM view (the unit SCALE-Sim simulates).

    Parameters
    ----------
    name : str
        Layer name (module path when traced).
    kind : {'conv', 'pointwise', 'depthwise', 'group', 'fc'}
        What the layer is; only used for reporting and for choosing which layers DRACO regroups.
    in_h, in_w : int
        *Effective* input extent (padding included, rows/columns a strided window never reaches
        excluded): ``in_h = (E - 1) * stride_h + k_h`` for an output height ``E``.
    k_h, k_w : int
        Kernel size (1 for linear layers).
    in_ch_per_group, out_ch_per_group : int
        ``C`` and ``M`` of one group.
    stride_h, stride_w : int
        Strides.
    n_groups : int
        Number of groups (``C_total / C``); a depthwise layer has ``n_groups = C_total`` and
        ``in_ch_per_group = 1``.
    batch : int
        Images (or tokens of a linear layer) processed together; folded into the output pixels.

    Raises
    ------
    ValueError
        When a size is not a positive int, or the kernel is larger than the input.
    """

    name: str
    kind: str
    in_h: int
    in_w: int
    k_h: int
    k_w: int
    in_ch_per_group: int
    out_ch_per_group: int
    stride_h: int = 1
    stride_w: int = 1
    n_groups: int = 1
    batch: int = 1

    def __post_init__(self) -> None:
        where = f"GemmLayer {self.name!r}"
        check_choice(self.kind, "kind", LAYER_KINDS, where=where)
        for field_name in ("in_h", "in_w", "k_h", "k_w", "in_ch_per_group", "out_ch_per_group",
                           "stride_h", "stride_w", "n_groups", "batch"):
            v = getattr(self, field_name)
            if isinstance(v, bool) or not isinstance(v, Integral):
                raise TypeError(param_error(field_name, where, "a positive int", v))
            if v < 1:
                raise ValueError(param_error(field_name, where, "a positive int", v))
            object.__setattr__(self, field_name, int(v))
        if self.k_h > self.in_h or self.k_w > self.in_w:
            raise ValueError(
                f"{where}: the {self.k_h}x{self.k_w} kernel is larger than the "
                f"{self.in_h}x{self.in_w} (padded) input; the output would be empty.")

    # --- derived sizes (SCALE-Sim's names in brackets) ------------------------------------
    @property
    def out_h(self) -> int:
        """Output height ``E = floor((in_h - k_h) / stride_h) + 1``."""
        return (self.in_h - self.k_h) // self.stride_h + 1

    @property
    def out_w(self) -> int:
        """Output width ``F``."""
        return (self.in_w - self.k_w) // self.stride_w + 1

    @property
    def npx(self) -> int:
        """Output pixels per filter, batch included (``Npx = E*F*N``)."""
        return self.out_h * self.out_w * self.batch

    @property
    def window(self) -> int:
        """Reduction length ``K = R*S*C`` [window size]."""
        return self.k_h * self.k_w * self.in_ch_per_group

    @property
    def macs_per_group(self) -> int:
        """Multiply-accumulates of one group: ``Npx * M * K``."""
        return self.npx * self.out_ch_per_group * self.window

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the whole layer."""
        return self.n_groups * self.macs_per_group

    @property
    def params(self) -> int:
        """Weights of the whole layer (biases excluded): ``n_groups * M * K``."""
        return self.n_groups * self.out_ch_per_group * self.window

    @property
    def in_channels(self) -> int:
        return self.n_groups * self.in_ch_per_group

    @property
    def out_channels(self) -> int:
        return self.n_groups * self.out_ch_per_group


def _conv_kind(k_h: int, k_w: int, c_in: int, groups: int) -> str:
    if groups == 1:
        return "pointwise" if (k_h, k_w) == (1, 1) else "conv"
    return "depthwise" if groups == c_in else "group"


def _conv_layer(name: str, m: nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> GemmLayer:
    batch = 1 if x.dim() == 3 else int(x.shape[0])
    e, f = int(y.shape[-2]), int(y.shape[-1])
    k_h, k_w = m.kernel_size
    s_h, s_w = m.stride
    g = m.groups
    return GemmLayer(
        name=name, kind=_conv_kind(k_h, k_w, m.in_channels, g),
        in_h=(e - 1) * s_h + k_h, in_w=(f - 1) * s_w + k_w, k_h=k_h, k_w=k_w,
        in_ch_per_group=m.in_channels // g, out_ch_per_group=m.out_channels // g,
        stride_h=s_h, stride_w=s_w, n_groups=g, batch=batch)


def _linear_layer(name: str, m: nn.Linear, x: torch.Tensor) -> GemmLayer:
    tokens = max(1, x.numel() // m.in_features)
    return GemmLayer(name=name, kind="fc", in_h=1, in_w=1, k_h=1, k_w=1,
                     in_ch_per_group=m.in_features, out_ch_per_group=m.out_features,
                     batch=tokens)


def _why_refused(m: nn.Module) -> str | None:
    if isinstance(m, _REFUSED):
        return f"{type(m).__name__} is not modelled (only Conv2d and Linear are)"
    if isinstance(m, nn.Conv2d):
        if tuple(m.dilation) != (1, 1):
            return f"dilated Conv2d (dilation={tuple(m.dilation)}) is not modelled"
        return None
    if isinstance(m, (nn.Linear, *_NOT_GEMM_WITH_MATRICES)):
        return None
    if len(list(m.children())) == 0 and any(p.dim() >= 2 for p in m.parameters(recurse=False)):
        return (f"{type(m).__name__} holds a weight matrix and may hide a matrix product this "
                "model cannot see (only Conv2d and Linear are modelled)")
    return None


#: An input shape ``(N, C, H, W)`` (or any rank) or an example tensor.
INPUT_SHAPE = AnyOf(Sequence_(Int(1, 1_000_000), max_len=8), Tensor())


@validate_params({"model": Instance(nn.Module), "input_shape": INPUT_SHAPE,
                  "strict": Instance(bool), "return_unmodeled": Instance(bool)})
def extract_layers(model: nn.Module, input_shape: Sequence[int] | torch.Tensor, *,
                   strict: bool = True, return_unmodeled: bool = False
                   ) -> list[GemmLayer] | tuple[list[GemmLayer], list[str]]:
    """Trace the conv/linear layers a model runs on an input of ``input_shape``.

    The model runs once in eval mode under ``torch.no_grad`` on a zero tensor placed on the
    device and dtype of its first parameter; forward hooks record every ``nn.Conv2d`` and
    ``nn.Linear`` call (a module called twice gives two layers, the second named ``name#2``).
    Hooks are removed and every module's training flag restored, even when forward raises.

    Parameters
    ----------
    model : nn.Module
        Any torch model.
    input_shape : tuple of int or torch.Tensor
        Shape of the input, batch included (e.g. ``(1, 3, 224, 224)``), or an example input.
    strict : bool
        With ``True`` (default) a dilated, transposed, 1-D or 3-D convolution, an attention or
        recurrent module, or an unknown leaf holding a weight matrix raises
        ``NotImplementedError`` naming the layer; with ``False`` it is skipped with a warning.
    return_unmodeled : bool
        Also return the names of the leaf modules that ran but cost no modelled cycles (BN,
        activations, pooling, ...).

    Returns
    -------
    list of GemmLayer
        In execution order (and the unmodeled names if asked).

    Raises
    ------
    ValueError
        When forward fails on the shape (the message names it) or no GEMM layer ran.
    NotImplementedError
        For layers this model does not support (see ``strict``).

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8))
    >>> [(l.name, l.kind, l.out_h) for l in extract_layers(net, (1, 3, 16, 16))]
    [('0', 'conv', 16), ('2', 'depthwise', 14)]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("model", "extract_layers", "a torch.nn.Module",
                                    type(model).__name__))
    if isinstance(input_shape, torch.Tensor):
        example = input_shape
        shape = tuple(example.shape)
    else:
        try:
            shape = tuple(int(s) for s in input_shape)
        except (TypeError, ValueError):
            raise TypeError(param_error("input_shape", "extract_layers",
                                        "a tuple of ints or a tensor", input_shape)) from None
        if not shape or any(s < 1 for s in shape):
            raise ValueError(param_error("input_shape", "extract_layers",
                                         "a non-empty tuple of positive ints", input_shape))
        numel = 1
        for s in shape:
            numel *= s
        check_memory(8.0 * numel, "input_shape", "systolic.extract_layers")
        p = next(iter(model.parameters()), None)
        example = torch.zeros(shape, device=p.device if p is not None else "cpu",
                              dtype=p.dtype if p is not None and p.is_floating_point()
                              else torch.get_default_dtype())

    calls: list[tuple[str, nn.Module, torch.Tensor | None, torch.Tensor | None]] = []

    def make_hook(path: str):
        def hook(module, args, kwargs, output):
            x = args[0] if args else kwargs.get("input")
            x = x if isinstance(x, torch.Tensor) else None
            y = output if isinstance(output, torch.Tensor) else None
            calls.append((path, module, x, y))
        return hook

    with registered_hooks() as handles, eval_mode(model), torch.no_grad():
        for path, module in model.named_modules():
            is_leaf = len(list(module.children())) == 0
            if is_leaf or isinstance(module, (nn.Conv2d, nn.Linear, *_REFUSED)):
                handles.append(module.register_forward_hook(make_hook(path or "<root>"),
                                                           with_kwargs=True))
        try:
            model(example)
        except (NotImplementedError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise ValueError(f"extract_layers: the model's forward failed on an input of shape "
                             f"{shape}: {type(exc).__name__}: {exc}") from exc

    layers: list[GemmLayer] = []
    unmodeled: list[str] = []
    seen: dict[str, int] = {}
    refused = {path: why for path, module, _, _ in calls
               if (why := _why_refused(module)) is not None}
    for path, why in refused.items():
        msg = f"extract_layers: layer {path!r}: {why}."
        if strict:
            raise NotImplementedError(msg + " Pass strict=False to skip it with a warning.")
        warnings.warn(msg + " Skipped (its cycles are not counted).", stacklevel=2)
    for path, module, x, y in calls:
        # a refused module, or a module inside one (e.g. MultiheadAttention.out_proj)
        if path in refused or any(path.startswith(r + ".") for r in refused):
            continue
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if x is None or (isinstance(module, nn.Conv2d) and y is None):
                raise NotImplementedError(f"extract_layers: layer {path!r} was called with "
                                          "non-tensor input/output; cannot read its shape.")
            seen[path] = seen.get(path, 0) + 1
            name = path if seen[path] == 1 else f"{path}#{seen[path]}"
            layer = (_conv_layer(name, module, x, y) if isinstance(module, nn.Conv2d)
                     else _linear_layer(name, module, x))
            layers.append(layer)
        elif len(list(module.children())) == 0:
            unmodeled.append(path)
    if not layers:
        raise ValueError(f"extract_layers: no GEMM layers found (no nn.Conv2d or nn.Linear ran "
                         f"on an input of shape {shape}).")
    return (layers, unmodeled) if return_unmodeled else layers


def _regroup(layer: GemmLayer, g: int, where: str) -> GemmLayer:
    c_in, c_out = layer.in_channels, layer.out_channels
    if isinstance(g, bool) or not isinstance(g, Integral) or g < 1:
        raise ValueError(param_error("group_size", where, "a positive int (channels per group)",
                                     g))
    g = min(int(g), c_in)
    if c_in % g:
        raise ValueError(
            f"{where}: group size {g} does not divide the {c_in} input channels of layer "
            f"{layer.name!r}; nearest valid group sizes: {_nearest_divisors(c_in, g)} "
            f"(all: {divisors(c_in)}).")
    n_groups = c_in // g
    if c_out % n_groups:
        raise ValueError(f"{where}: {n_groups} groups do not divide the {c_out} output channels "
                         f"of layer {layer.name!r}.")
    kind = ("group" if n_groups > 1 else
            ("pointwise" if (layer.k_h, layer.k_w) == (1, 1) else "conv"))
    if n_groups == c_in and n_groups > 1:
        kind = "depthwise"
    return replace(layer, kind=kind, in_ch_per_group=g, out_ch_per_group=c_out // n_groups,
                   n_groups=n_groups)


def regroup_layers(layers: Sequence[GemmLayer], group_size: int | Mapping[str, int]
                   ) -> list[GemmLayer]:
    """DRACO's regrouping: give depthwise layers ``G`` channels per group.

    A depthwise layer with ``C`` channels becomes a group convolution with ``C / G`` groups of
    ``G`` input and ``m*G`` output channels (``m`` = channel multiplier). ``G`` larger than ``C`` is
    clamped to ``C`` (a full convolution). Other layers are unchanged.

    Parameters
    ----------
    layers : sequence of GemmLayer
    group_size : int or mapping of str to int
        One ``G`` for every depthwise layer, or ``{layer_name: G}`` for chosen depthwise or group
        layers (the others are unchanged).

    Returns
    -------
    list of GemmLayer

    Raises
    ------
    ValueError
        When ``G`` does not divide a layer's channels (the message lists the nearest valid sizes)
        or a mapped layer is not a depthwise/group layer.
    KeyError
        For a mapped name that is not a layer (with close matches).

    Examples
    --------
    >>> dw = GemmLayer("dw", "depthwise", 9, 9, 3, 3, 1, 1, n_groups=32)
    >>> g4 = regroup_layers([dw], 4)[0]
    >>> (g4.kind, g4.n_groups, g4.in_ch_per_group, g4.macs // dw.macs)
    ('group', 8, 4, 4)
    """
    where = "regroup_layers"
    layers = list(layers)
    for lay in layers:
        if not isinstance(lay, GemmLayer):
            raise TypeError(param_error("layers", where, "a sequence of GemmLayer",
                                        type(lay).__name__))
    if isinstance(group_size, Mapping):
        names = {lay.name for lay in layers}
        for key in group_size:
            if key not in names:
                raise KeyError(f"{where}: no layer named {key!r}.{suggest(str(key), names)}")
        out = []
        for lay in layers:
            if lay.name in group_size:
                if lay.kind not in ("depthwise", "group"):
                    raise ValueError(f"{where}: layer {lay.name!r} is a {lay.kind} layer; only "
                                     "depthwise and group layers can be regrouped.")
                out.append(_regroup(lay, group_size[lay.name], where))
            else:
                out.append(lay)
        return out
    if isinstance(group_size, bool) or not isinstance(group_size, Integral) or group_size < 1:
        raise ValueError(param_error("group_size", where,
                                     "a positive int or a mapping {layer name: int}", group_size))
    return [_regroup(lay, group_size, where) if lay.kind == "depthwise" else lay
            for lay in layers]
