"""Slimmable layers after Yu et al. (ICLR 2019): one weight shared by every width.

At width multiplier ``w`` (one entry of ``width_mult_list``) a slimmable layer uses the leading
``out(w)`` output and ``in(w)`` input channels of its full weight,
``y = conv(x, W[:out(w), :in(w)], b[:out(w)])`` (Yu et al. 2019, Sec. 3.1), and a switchable
batch normalisation keeps one set of running statistics and affine parameters per width
(Sec. 3.2, "private BN"). :func:`set_width` switches every slimmable layer of a model at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dnnkit.core.validation import (
    Instance,
    Int,
    Real,
    Sequence_,
    Tensor,
    check_int,
    check_interval,
    declares,
    param_error,
    validate_params,
)

_WIDTHS = Sequence_(Real(0.0, 1.0, closed="right"))
_CHANNELS = Sequence_(Int(1, 1 << 20))

__all__ = ["SlimmableConv2d", "SlimmableLinear", "SwitchableBatchNorm2d", "set_width"]


def _check_lists(where: str, width_mult_list: Sequence[float], **lists: Sequence[int]
                 ) -> tuple[tuple[float, ...], dict[str, tuple[int, ...]]]:
    if not isinstance(width_mult_list, (list, tuple)) or len(width_mult_list) == 0:
        raise ValueError(param_error("width_mult_list", where, "a non-empty list of floats",
                                     width_mult_list))
    widths = tuple(check_interval(w, "width_mult_list", 0.0, 1.0, closed="right", where=where)
                   for w in width_mult_list)
    if len(set(widths)) != len(widths):
        raise ValueError(param_error("width_mult_list", where, "a list of distinct widths",
                                     list(widths)))
    out = {}
    for name, values in lists.items():
        if not isinstance(values, (list, tuple)) or len(values) != len(widths):
            raise ValueError(param_error(name, where,
                                         f"a list of {len(widths)} ints (one per width)", values))
        out[name] = tuple(check_int(v, name, 1, 1 << 20, where=where) for v in values)
    return widths, out


class _Slimmable:
    """Mixin state: the width list and the active width (set by :func:`set_width`)."""

    width_mult_list: tuple[float, ...]
    width_mult: float

    def _index(self) -> int:
        return self.width_mult_list.index(self.width_mult)

    def _set_width(self, width_mult: float) -> None:
        self.width_mult = width_mult


@validate_params({"in_channels_list": _CHANNELS, "out_channels_list": _CHANNELS,
                  "width_mult_list": _WIDTHS, "bias": Instance(bool)})
class SlimmableConv2d(nn.Conv2d, _Slimmable):
    """A 2-d convolution whose active channels follow the width multiplier.

    Parameters
    ----------
    in_channels_list, out_channels_list : sequence of int
        Input / output channels at each width of ``width_mult_list`` (same length). The full
        weight has ``max(out_channels_list)`` x ``max(in_channels_list)`` channels.
    kernel_size, stride, padding, dilation, bias
        As :class:`torch.nn.Conv2d` (``groups`` is 1).
    width_mult_list : sequence of float
        The widths this layer supports, each in (0, 1]. The layer starts at the largest.

    Notes
    -----
    At width ``w`` the layer computes ``F.conv2d(x, W[:o, :i], b[:o])`` with ``o, i`` the listed
    channel counts of ``w`` (Yu et al. 2019, Sec. 3.1): every width shares the leading slice of
    one weight. An input whose channel count is not ``i`` is refused.

    Examples
    --------
    >>> conv = SlimmableConv2d([2, 4], [3, 6], 3, padding=1, width_mult_list=[0.5, 1.0])
    >>> set_width(conv, 0.5)
    >>> conv(torch.zeros(1, 2, 5, 5)).shape
    torch.Size([1, 3, 5, 5])
    """

    def __init__(self, in_channels_list: Sequence[int], out_channels_list: Sequence[int],
                 kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, *,
                 bias: bool = True, width_mult_list: Sequence[float] = (1.0,)) -> None:
        where = "slimsplit.SlimmableConv2d"
        widths, lists = _check_lists(where, width_mult_list, in_channels_list=in_channels_list,
                                     out_channels_list=out_channels_list)
        super().__init__(max(lists["in_channels_list"]), max(lists["out_channels_list"]),
                         kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=1, bias=bias)
        self.in_channels_list = lists["in_channels_list"]
        self.out_channels_list = lists["out_channels_list"]
        self.width_mult_list = widths
        self.width_mult = max(widths)

    @declares({"x": Tensor(finite=False, nonempty=False)})
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(param_error("x", "slimsplit.SlimmableConv2d.forward", "a torch.Tensor",
                                        type(x).__name__))
        i = self._index()
        cin, cout = self.in_channels_list[i], self.out_channels_list[i]
        if x.ndim != 4 or x.shape[1] != cin:
            raise ValueError(param_error("x", "slimsplit.SlimmableConv2d.forward",
                                         f"a (N, {cin}, H, W) tensor at width {self.width_mult}",
                                         f"shape {tuple(x.shape)}"))
        bias = self.bias[:cout] if self.bias is not None else None
        return F.conv2d(x, self.weight[:cout, :cin], bias, self.stride, self.padding,
                        self.dilation, 1)

    def extra_repr(self) -> str:
        return (f"{self.in_channels_list}, {self.out_channels_list}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"width_mult_list={list(self.width_mult_list)}")


@validate_params({"in_features_list": _CHANNELS, "out_features_list": _CHANNELS,
                  "width_mult_list": _WIDTHS, "bias": Instance(bool)})
class SlimmableLinear(nn.Linear, _Slimmable):
    """A linear layer using ``W[:out(w), :in(w)]`` at width ``w`` (Yu et al. 2019, Sec. 3.1).

    Parameters
    ----------
    in_features_list, out_features_list : sequence of int
        Features at each width of ``width_mult_list``.
    bias : bool
        Whether the layer has a bias (sliced as ``b[:out(w)]``).
    width_mult_list : sequence of float
        The widths this layer supports, each in (0, 1].
    """

    def __init__(self, in_features_list: Sequence[int], out_features_list: Sequence[int], *,
                 bias: bool = True, width_mult_list: Sequence[float] = (1.0,)) -> None:
        where = "slimsplit.SlimmableLinear"
        widths, lists = _check_lists(where, width_mult_list, in_features_list=in_features_list,
                                     out_features_list=out_features_list)
        super().__init__(max(lists["in_features_list"]), max(lists["out_features_list"]),
                         bias=bias)
        self.in_features_list = lists["in_features_list"]
        self.out_features_list = lists["out_features_list"]
        self.width_mult_list = widths
        self.width_mult = max(widths)

    @declares({"x": Tensor(finite=False, nonempty=False)})
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(param_error("x", "slimsplit.SlimmableLinear.forward", "a torch.Tensor",
                                        type(x).__name__))
        i = self._index()
        fin, fout = self.in_features_list[i], self.out_features_list[i]
        if x.ndim < 1 or x.shape[-1] != fin:
            raise ValueError(param_error("x", "slimsplit.SlimmableLinear.forward",
                                         f"a (..., {fin}) tensor at width {self.width_mult}",
                                         f"shape {tuple(x.shape)}"))
        bias = self.bias[:fout] if self.bias is not None else None
        return F.linear(x, self.weight[:fout, :fin], bias)

    def extra_repr(self) -> str:
        return (f"{self.in_features_list}, {self.out_features_list}, "
                f"width_mult_list={list(self.width_mult_list)}")


@validate_params({"num_features_list": _CHANNELS, "width_mult_list": _WIDTHS,
                  "eps": Real(0.0, 1.0, closed="right"), "momentum": Real(0.0, 1.0),
                  "affine": Instance(bool)})
class SwitchableBatchNorm2d(nn.Module, _Slimmable):
    """Private batch normalisation per width (Yu et al. 2019, Sec. 3.2, Eq. 1 per width).

    Holds one :class:`torch.nn.BatchNorm2d` per entry of ``width_mult_list`` (running statistics
    and affine parameters of their own); the active width selects which one normalises the input.
    Training at one width therefore never touches another width's statistics.

    Parameters
    ----------
    num_features_list : sequence of int
        Channels at each width.
    width_mult_list : sequence of float
        The widths, each in (0, 1].
    eps, momentum, affine
        As :class:`torch.nn.BatchNorm2d`.
    """

    def __init__(self, num_features_list: Sequence[int], *,
                 width_mult_list: Sequence[float] = (1.0,), eps: float = 1e-5,
                 momentum: float = 0.1, affine: bool = True) -> None:
        super().__init__()
        where = "slimsplit.SwitchableBatchNorm2d"
        widths, lists = _check_lists(where, width_mult_list, num_features_list=num_features_list)
        check_interval(eps, "eps", 0.0, 1.0, closed="right", where=where)
        check_interval(momentum, "momentum", 0.0, 1.0, where=where)
        self.num_features_list = lists["num_features_list"]
        self.width_mult_list = widths
        self.width_mult = max(widths)
        self.bn = nn.ModuleList(nn.BatchNorm2d(c, eps=eps, momentum=momentum, affine=affine)
                                for c in self.num_features_list)

    @declares({"x": Tensor(finite=False, nonempty=False)})
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(param_error("x", "slimsplit.SwitchableBatchNorm2d.forward", "a torch.Tensor",
                                        type(x).__name__))
        i = self._index()
        c = self.num_features_list[i]
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(param_error("x", "slimsplit.SwitchableBatchNorm2d.forward",
                                         f"a (N, {c}, H, W) tensor at width {self.width_mult}",
                                         f"shape {tuple(x.shape)}"))
        return self.bn[i](x)

    def extra_repr(self) -> str:
        return f"{list(self.num_features_list)}, width_mult_list={list(self.width_mult_list)}"


@validate_params({"model": Instance(nn.Module),
                  "width_mult": Real(0.0, 1.0, closed="right")})
def set_width(model: nn.Module, width_mult: float) -> None:
    """Switch every slimmable layer of ``model`` to width ``width_mult``.

    All-or-nothing: the width is checked against every layer's ``width_mult_list`` first, so a
    width that one layer does not list raises and leaves every layer as it was.

    Parameters
    ----------
    model : nn.Module
        A module containing :class:`SlimmableConv2d`, :class:`SlimmableLinear` or
        :class:`SwitchableBatchNorm2d` layers (the module itself may be one).
    width_mult : float
        The width, one entry of the layers' ``width_mult_list``.

    Raises
    ------
    TypeError
        ``model`` is not an ``nn.Module``.
    ValueError
        The model has no slimmable layer, or a layer does not list ``width_mult``.
    """
    where = "slimsplit.set_width"
    if not isinstance(model, nn.Module):
        raise TypeError(param_error("model", where, "a torch.nn.Module", type(model).__name__))
    w = check_interval(width_mult, "width_mult", 0.0, 1.0, closed="right", where=where)
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, _Slimmable)]
    if not layers:
        raise ValueError(param_error("model", where, "a module with slimmable layers",
                                     type(model).__name__))
    for name, m in layers:
        if w not in m.width_mult_list:
            raise ValueError(param_error(
                "width_mult", where,
                f"one of {list(m.width_mult_list)} (the widths of layer {name or '<root>'!r})", w))
    for _, m in layers:
        m._set_width(w)
