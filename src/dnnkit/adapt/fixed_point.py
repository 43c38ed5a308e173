"""Signed two's-complement fixed-point formats ``<WL, FL>`` and a saturating quantizer.

A format ``<WL, FL>`` stores an integer code ``k`` in ``[-2^(WL-1), 2^(WL-1) - 1]`` and represents
``v = k * 2^-FL`` (Kummer et al., AdaPT, section 3; the official code uses ``qtorch``'s
``fixed_point_quantize``, which this quantizer matches). ``FL > WL`` is allowed (range below 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from dnnkit.core.validation import (
    Instance,
    Int,
    Optional_,
    Options,
    Tensor,
    check_choice,
    check_int,
    declares,
    param_error,
    validate_params,
)

__all__ = ["FixedPointFormat", "quantize_fixed", "quantize_fixed_ste", "Rounding"]

Rounding = Literal["nearest", "stochastic"]
_ROUNDINGS = ("nearest", "stochastic")


@declares({"wl": Int(1, 32), "fl": Int(0, 32), "symmetric": Instance(bool)},
          where="adapt.FixedPointFormat")  # checked inline by __post_init__
@dataclass(frozen=True)
class FixedPointFormat:
    """A signed fixed-point format ``<wl, fl>``.

    Parameters
    ----------
    wl : int
        Word length in bits including the sign, ``1..32``.
    fl : int
        Fractional length, ``0..32`` (may exceed ``wl``).
    symmetric : bool
        Clamp to ``[-max, max]`` instead of ``[-max - eps, max]`` (default off, like qtorch).

    Examples
    --------
    >>> f = FixedPointFormat(8, 4)
    >>> f.eps, f.min_value, f.max_value
    (0.0625, -8.0, 7.9375)
    """

    wl: int
    fl: int
    symmetric: bool = False

    def __post_init__(self) -> None:
        check_int(self.wl, "wl", 1, 32, where="adapt.FixedPointFormat")
        check_int(self.fl, "fl", 0, 32, where="adapt.FixedPointFormat")
        if not isinstance(self.symmetric, bool):
            raise TypeError(param_error("symmetric", "adapt.FixedPointFormat", "a bool",
                                        self.symmetric))

    @property
    def eps(self) -> float:
        """Resolution ``2^-fl``."""
        return 2.0 ** -self.fl

    @property
    def qmin(self) -> int:
        """Smallest integer code."""
        return -(2 ** (self.wl - 1)) + (1 if self.symmetric else 0)

    @property
    def qmax(self) -> int:
        """Largest integer code."""
        return 2 ** (self.wl - 1) - 1

    @property
    def min_value(self) -> float:
        return self.qmin * self.eps

    @property
    def max_value(self) -> float:
        return self.qmax * self.eps

    def __str__(self) -> str:
        return f"<{self.wl},{self.fl}>"


def _check_x(x: torch.Tensor, where: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(param_error("x", where, "a torch.Tensor", type(x).__name__))
    if not x.is_floating_point():
        raise TypeError(param_error("x", where, "a real floating-point tensor",
                                    f"dtype {x.dtype}"))


def _check_fmt(fmt: FixedPointFormat, where: str) -> None:
    if not isinstance(fmt, FixedPointFormat):
        raise TypeError(param_error("fmt", where, "a FixedPointFormat", type(fmt).__name__))


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    # half types cannot hold 2^-32 or 2^31: compute in float32 and cast back
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


class _NoiseStream:
    """Uniform ``[0, 1)`` draws for stochastic rounding, keyed by one draw of a torch generator.

    The hot path of training draws ~10^5 uniforms per step; on CPU torch's Mersenne twister
    (``uniform_``) costs ~11 ns per float, numpy's SFC64 about a quarter of that. A stream takes
    one 63-bit seed from the torch generator (so the user's generator stays the only source of
    randomness, and re-seeding it reproduces the stream) and serves every draw of one forward
    pass or one optimizer step from a numpy ``Generator(SFC64(seed))``. The draws have the
    resolution of torch's: ``float32`` on the ``2^-24`` grid, ``float64`` on the ``2^-53`` grid,
    so ``floor(x / eps + U)`` keeps exactly the distribution of :func:`quantize_fixed`. Tensors
    on other devices draw with ``uniform_`` from the torch generator.
    """

    __slots__ = ("generator", "_np", "_bitgen")

    def __init__(self, generator: torch.Generator | None,
                 bitgen: np.random.SFC64 | None = None) -> None:
        self.generator = generator
        self._np = None
        self._bitgen = bitgen                        # re-keyed, saves numpy's seeding cost

    def uniform(self, like: torch.Tensor) -> torch.Tensor:
        """A fresh tensor shaped like ``like`` (float32 or float64) of uniform draws."""
        if like.device.type == "cpu":
            if self._np is None:
                self._np = _numpy_generator(self.generator, self._bitgen)
            dt = np.float32 if like.dtype == torch.float32 else np.float64
            return torch.from_numpy(self._np.random(like.numel(), dtype=dt).reshape(like.shape))
        return torch.empty_like(like).uniform_(generator=self.generator)

    def fill_(self, t: torch.Tensor, arr: np.ndarray | None = None) -> torch.Tensor:
        """Overwrite ``t`` with draws (``arr``: the numpy array sharing ``t``'s CPU memory)."""
        if arr is not None:
            if self._np is None:
                self._np = _numpy_generator(self.generator, self._bitgen)
            self._np.random(dtype=arr.dtype.type, out=arr)
            return t
        return t.uniform_(generator=self.generator)


def _numpy_generator(generator: torch.Generator | None,
                     bitgen: np.random.SFC64 | None = None) -> np.random.Generator:
    """A numpy SFC64 generator whose whole 256-bit state is drawn from ``generator``."""
    words = torch.randint(-2**63, 2**63 - 1, (4,), generator=generator).numpy().view(np.uint64)
    bitgen = np.random.SFC64(0) if bitgen is None else bitgen
    bitgen.state = {"bit_generator": "SFC64", "state": {"state": words}, "has_uint32": 0,
                    "uinteger": 0}
    return np.random.Generator(bitgen)


def _quantize(x: torch.Tensor, fmt: FixedPointFormat, rounding: str,
              generator: torch.Generator | _NoiseStream | None) -> torch.Tensor:
    """Unchecked quantizer (internal hot path): 4 elementwise passes plus the draws.

    ``generator`` may also be a :class:`_NoiseStream` (training's batched draws).
    """
    wd = _work_dtype(x)
    xw = x if x.dtype == wd else x.to(wd)
    if rounding == "nearest":
        k = torch.round(xw * (2.0 ** fmt.fl))         # exact power-of-two scale; half to even
    else:                                             # floor(x / eps + U[0, 1)): unbiased
        if isinstance(generator, _NoiseStream):
            k = generator.uniform(xw)
        else:
            k = torch.empty_like(xw).uniform_(generator=generator)
        # U + 2^fl * x: the product is exact, so this is fl(x / eps + U) as before
        k = k.add_(xw, alpha=2.0 ** fmt.fl).floor_()
    k.clamp_(fmt.qmin, fmt.qmax).mul_(fmt.eps)
    return k if k.dtype == x.dtype else k.to(x.dtype)


_Q_PARAMS = {"x": Tensor(dtype="floating", nonempty=False), "fmt": Instance(FixedPointFormat),
             "rounding": Options(*_ROUNDINGS),
             "generator": Optional_(Instance(torch.Generator))}


@validate_params(_Q_PARAMS)
def quantize_fixed(x: torch.Tensor, fmt: FixedPointFormat, rounding: Rounding = "nearest", *,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Quantize ``x`` to the fixed-point grid of ``fmt`` (saturating), spec section 2.

    Parameters
    ----------
    x : Tensor
        Any shape, real floating dtype; the result has the same shape, dtype and device.
    fmt : FixedPointFormat
        Target format ``<wl, fl>``.
    rounding : {"nearest", "stochastic"}
        ``nearest``: ``k = round_half_even(x / eps)``. ``stochastic``:
        ``k = floor(x / eps + U[0, 1))``, so ``E[Q(x)] = x`` inside the range and
        ``Q(x)`` is one of the two neighbouring grid points.
    generator : torch.Generator, optional
        Source of the uniform draws for stochastic rounding (same device as ``x``).

    Returns
    -------
    Tensor
        ``clamp(k, qmin, qmax) * 2^-fl``.

    Raises
    ------
    TypeError
        ``x`` is not a real floating tensor, ``fmt`` not a format.
    ValueError
        Unknown ``rounding``; a generator on another device.

    Examples
    --------
    >>> quantize_fixed(torch.tensor([0.03, 0.1, 100.0]), FixedPointFormat(8, 4))
    tensor([0.0000, 0.1250, 7.9375])
    """
    where = "adapt.quantize_fixed"
    _check_x(x, where)
    _check_fmt(fmt, where)
    check_choice(rounding, "rounding", _ROUNDINGS, where=where)
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(param_error("generator", where, "a torch.Generator or None",
                                        type(generator).__name__))
        if torch.device(generator.device).type != x.device.type:
            raise ValueError(param_error("generator", where, f"on the device of x ({x.device})",
                                         f"a generator on {generator.device}"))
    return _quantize(x, fmt, rounding, generator)


class _STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, q):  # noqa: D102
        return q

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        return grad, None


@validate_params(_Q_PARAMS)
def quantize_fixed_ste(x: torch.Tensor, fmt: FixedPointFormat, rounding: Rounding = "stochastic",
                       *, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`quantize_fixed` in the forward pass, identity in the backward pass.

    The straight-through estimator (the official code assigns ``.data``, which has the same
    effect): ``d Q(x) / d x := 1``, also outside the range.

    Examples
    --------
    >>> x = torch.tensor([0.3, 20.0], requires_grad=True)
    >>> y = quantize_fixed_ste(x, FixedPointFormat(8, 4), "nearest")
    >>> y.sum().backward(); y.detach(), x.grad
    (tensor([0.3125, 7.9375]), tensor([1., 1.]))
    """
    q = quantize_fixed(x.detach(), fmt, rounding, generator=generator)
    return _STE.apply(x, q)
