"""The shift operation (zero FLOPs, zero parameters) and the conv-shift-conv (CSC) block.

Wu et al., "Shift: A Zero FLOP, Zero Parameter Alternative to Spatial Convolutions", CVPR 2018
(arXiv:1711.08141); semantics of the official CUDA kernel (``alvinwan/shiftresnet-cifar``).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from dnnkit.core.validation import (
    Instance,
    Int,
    Options,
    Real,
    Tensor,
    check_choice,
    check_int,
    check_interval,
    declares,
    param_error,
    validate_params,
)

__all__ = ["shift2d", "Shift2d", "shift_offsets", "shift_as_depthwise_weight", "ShiftConvBlock"]

ASSIGNMENTS = ("modulo", "grouped")


def _check_kernel(kernel_size, dilation, assignment, where: str) -> None:
    check_int(kernel_size, "kernel_size", 1, 31, where=where)
    if kernel_size % 2 == 0:
        raise ValueError(param_error("kernel_size", where, "an odd int >= 1", kernel_size))
    check_int(dilation, "dilation", 1, 1024, where=where)
    check_choice(assignment, "assignment", ASSIGNMENTS, where=where)


def _offset_groups(channels: int, kernel_size: int, assignment: str) -> list[tuple[slice, int, int]]:
    """``(channel slice, dy, dx)`` for each of the k*k directions; other channels are unshifted."""
    k2 = kernel_size * kernel_size
    a = kernel_size // 2
    per = channels // k2
    out = []
    if per == 0:
        return out
    for j in range(k2):
        dy, dx = j // kernel_size - a, j % kernel_size - a
        sl = slice(j, per * k2, k2) if assignment == "modulo" else slice(j * per, (j + 1) * per)
        out.append((sl, dy, dx))
    return out


_KERNEL = {"kernel_size": Int(1, 31), "dilation": Int(1, 1024),
           "assignment": Options(*ASSIGNMENTS)}


@validate_params({"channels": Int(1, 1 << 20), "kernel_size": Int(1, 31),
                  "assignment": Options(*ASSIGNMENTS)})
def shift_offsets(channels: int, kernel_size: int = 3, assignment: str = "modulo") -> torch.Tensor:
    """Per-channel shift ``(dy, dx)`` (in units of the dilation) as an int64 tensor ``[C, 2]``.

    ``modulo`` (official kernel): channel ``c < C'`` with ``C' = floor(C/k^2) k^2`` gets
    ``dx = (c mod k) - a``, ``dy = (floor(c/k) mod k) - a``, ``a = floor(k/2)``. ``grouped``
    (the paper's text): ``k^2`` contiguous groups of ``floor(C/k^2)`` channels, group ``j`` gets
    the direction of channel ``j`` above. Channels ``>= C'`` are unshifted (offset 0).
    """
    where = "fbnet.shift_offsets"
    check_int(channels, "channels", 1, 1 << 20, where=where)
    _check_kernel(kernel_size, 1, assignment, where)
    off = torch.zeros(channels, 2, dtype=torch.int64)
    idx = torch.arange(channels)
    for sl, dy, dx in _offset_groups(channels, kernel_size, assignment):
        off[idx[sl], 0] = dy
        off[idx[sl], 1] = dx
    return off


@validate_params({"x": Tensor(ndim=4, finite=False), **_KERNEL})
def shift2d(x: torch.Tensor, kernel_size: int = 3, dilation: int = 1,
            assignment: str = "modulo") -> torch.Tensor:
    """Shift each channel of ``x`` by its offset, filling with zeros (Shift, Sec. 3, eq. 3).

    ``y[n, c, h, w] = x[n, c, h + d*dy_c, w + d*dx_c]`` when that index is inside the image, else 0.
    Pure slicing: no multiply-adds, no parameters, differentiable (the backward pass is the
    opposite shift). Equal to ``F.conv2d(x, shift_as_depthwise_weight(C, k), padding=a*d,
    dilation=d, groups=C)`` exactly.

    Parameters
    ----------
    x : torch.Tensor
        ``[N, C, H, W]``, any dtype and device.
    kernel_size : int
        Odd ``k >= 1``; ``k*k`` directions.
    dilation : int
        Shift step ``d >= 1``.
    assignment : {'modulo', 'grouped'}
        Channel-to-direction map (see :func:`shift_offsets`).

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``x``.

    Raises
    ------
    ValueError
        Even or non-positive kernel, dilation < 1, input not 4-D.

    Examples
    --------
    >>> x = torch.arange(9.).view(1, 9, 1, 1).expand(1, 9, 3, 3).contiguous()
    >>> shift2d(x)[0, 0].tolist()   # channel 0 shifts by (dy, dx) = (-1, -1)
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    where = "fbnet.shift2d"
    _check_kernel(kernel_size, dilation, assignment, where)
    n, c, h, w = x.shape
    groups = _offset_groups(c, kernel_size, assignment)
    if c < kernel_size * kernel_size and kernel_size > 1:
        warnings.warn(f"shift2d: {c} channels < kernel_size**2 = {kernel_size ** 2}: no channel is "
                      "shifted (C' = floor(C/k^2) k^2 = 0).", stacklevel=3)
    if not groups:
        return x.clone()
    y = torch.zeros_like(x)
    shifted = (c // len(groups)) * len(groups)          # C' = floor(C / k^2) k^2
    if shifted < c:
        y[:, shifted:] = x[:, shifted:]
    for sl, dy, dx in groups:
        sy, sx = dy * dilation, dx * dilation
        if abs(sy) >= h or abs(sx) >= w:
            continue
        dst_h = slice(max(0, -sy), h - max(0, sy))
        src_h = slice(max(0, sy), h - max(0, -sy))
        dst_w = slice(max(0, -sx), w - max(0, sx))
        src_w = slice(max(0, sx), w - max(0, -sx))
        y[:, sl, dst_h, dst_w] = x[:, sl, src_h, src_w]
    return y


@validate_params({"channels": Int(1, 1 << 20), "kernel_size": Int(1, 31),
                  "assignment": Options(*ASSIGNMENTS), "dtype": Instance(torch.dtype)})
def shift_as_depthwise_weight(channels: int, kernel_size: int = 3, assignment: str = "modulo",
                              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot depthwise kernel ``[C, 1, k, k]`` with ``W[c, 0, a+dy_c, a+dx_c] = 1``.

    ``F.conv2d(x, W, padding=a*d, dilation=d, groups=C)`` (cross-correlation) equals
    :func:`shift2d`; unshifted channels get the centre tap.
    """
    where = "fbnet.shift_as_depthwise_weight"
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(param_error("dtype", where, "a floating torch.dtype", dtype))
    off = shift_offsets(channels, kernel_size, assignment)
    a = kernel_size // 2
    wgt = torch.zeros(channels, 1, kernel_size, kernel_size, dtype=dtype)
    wgt[torch.arange(channels), 0, a + off[:, 0], a + off[:, 1]] = 1
    return wgt


@validate_params(_KERNEL)
class Shift2d(nn.Module):
    """Module form of :func:`shift2d` (0 parameters, 0 multiply-adds)."""

    def __init__(self, kernel_size: int = 3, dilation: int = 1, assignment: str = "modulo"):
        super().__init__()
        _check_kernel(kernel_size, dilation, assignment, "fbnet.Shift2d")
        self.kernel_size, self.dilation, self.assignment = kernel_size, dilation, assignment

    @declares({"x": Tensor(ndim=4, finite=False)}, where="fbnet.shift2d")
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return shift2d(x, self.kernel_size, self.dilation, self.assignment)  # checks x

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, dilation={self.dilation}, " \
               f"assignment={self.assignment!r}"


@validate_params({"c_in": Int(1, 1 << 16), "c_out": Int(1, 1 << 16), "stride": Int(1, 64),
                  "expansion": Real(0.0, 64.0, closed="right"), "residual": Instance(bool),
                  "kernel_size": Int(1, 31), "dilation": Int(1, 1024)})
class ShiftConvBlock(nn.Module):
    """Conv-shift-conv (CSC) block of ShiftResNet (Shift, Sec. 4, Fig. 3).

    1x1 conv ``c_in -> E*c_in`` -> BN -> ReLU -> shift(k) -> 1x1 conv ``-> c_out`` (stride on this
    conv, i.e. subsampling) -> BN; residual add iff ``residual`` and the shapes match. No final
    activation (the caller adds one, as ResNet does after the sum). The only multiply-adds are
    the two 1x1 convs.

    Parameters
    ----------
    c_in, c_out : int
    stride : int
        1 or 2 (any >= 1).
    expansion : float
        ``E``; the middle width is ``max(1, round(E * c_in))``.
    kernel_size, dilation : int
        Of the shift.
    residual : bool
        Add the input when ``stride == 1`` and ``c_in == c_out``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expansion: float = 1.0,
                 kernel_size: int = 3, residual: bool = True, dilation: int = 1):
        super().__init__()
        where = "fbnet.ShiftConvBlock"
        check_int(c_in, "c_in", 1, 1 << 16, where=where)
        check_int(c_out, "c_out", 1, 1 << 16, where=where)
        check_int(stride, "stride", 1, 64, where=where)
        check_interval(expansion, "expansion", 0.0, 64.0, closed="right", where=where)
        mid = max(1, round(expansion * c_in))
        self.expand = nn.Conv2d(c_in, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU(inplace=False)
        self.shift = Shift2d(kernel_size, dilation)
        self.reduce = nn.Conv2d(mid, c_out, 1, stride=stride, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.use_residual = bool(residual) and stride == 1 and c_in == c_out

    @validate_params({"x": Tensor(ndim=4)}, where="fbnet.ShiftConvBlock.forward")
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.reduce(self.shift(self.relu(self.bn1(self.expand(x))))))
        return x + y if self.use_residual else y
