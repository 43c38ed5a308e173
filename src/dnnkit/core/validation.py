"""Input validation at the public boundary, with one message template.

Every message reads like scikit-learn's parameter validation::

    The 'eps' parameter of nobox.attack must be a float in (0, 1]. Got -0.1 instead.

``ValueError`` is raised for bad values, ``TypeError`` for bad types and ``KeyError`` (with
close-match suggestions) for unknown names.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from typing import Any

import torch

__all__ = [
    "check_tensor",
    "check_interval",
    "check_int",
    "check_choice",
    "check_positive",
    "find_unsupported",
    "suggest",
    "param_error",
]


def _where(name: str, where: str | None) -> str:
    return f"The '{name}' parameter of {where}" if where else f"The '{name}' parameter"


def param_error(name: str, where: str | None, must: str, got: Any) -> str:
    """Format the house error message: "The 'x' parameter of f must be ... Got ... instead."."""
    return f"{_where(name, where)} must be {must}. Got {got!r} instead."


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a ' Did you mean ...?' hint for an unknown ``name`` ('' when nothing is close)."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=n, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def check_choice(value: Any, name: str, choices: Sequence[Any], *, where: str | None = None) -> Any:
    """Raise ``ValueError`` (with close matches) unless ``value`` is one of ``choices``."""
    if value not in choices:
        hint = suggest(str(value), [str(c) for c in choices]) if isinstance(value, str) else ""
        raise ValueError(
            param_error(name, where, f"one of {list(choices)}", value).rstrip(".") + "." + hint
        )
    return value


def check_interval(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    closed: str = "both",
    where: str | None = None,
) -> float:
    """Check that ``value`` is a finite real number in an interval.

    ``closed`` is one of ``"both"``, ``"left"``, ``"right"``, ``"neither"``.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        else:
            raise TypeError(param_error(name, where, "a real number", value))
    value = float(value)
    lo_br = "[" if closed in ("both", "left") else "("
    hi_br = "]" if closed in ("both", "right") else ")"
    desc = f"a float in {lo_br}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi_br}"
    if math.isnan(value):
        raise ValueError(param_error(name, where, desc, value))
    if low is not None and (value < low or (value == low and lo_br == "(")):
        raise ValueError(param_error(name, where, desc, value))
    if high is not None and (value > high or (value == high and hi_br == ")")):
        raise ValueError(param_error(name, where, desc, value))
    return value


def check_positive(value: Any, name: str, *, where: str | None = None) -> float:
    """Shorthand for a strictly positive finite float."""
    v = check_interval(value, name, 0.0, None, closed="neither", where=where)
    if math.isinf(v):
        raise ValueError(param_error(name, where, "a finite positive float", value))
    return v


def check_int(
    value: Any,
    name: str,
    low: int | None = None,
    high: int | None = None,
    *,
    where: str | None = None,
) -> int:
    """Check that ``value`` is an integer in ``[low, high]`` (bounds optional)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(param_error(name, where, "an int", value))
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f"an int in [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(param_error(name, where, rng, value))
    return value


def check_tensor(
    x: Any,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    finite: bool = True,
    floating: bool = False,
    where: str | None = None,
) -> torch.Tensor:
    """Check a tensor's type, rank, shape (``None`` = any size) and finiteness.

    Numpy arrays are converted with ``torch.as_tensor``. Returns the tensor.
    """
    if not isinstance(x, torch.Tensor):
        try:
            import numpy as np

            if isinstance(x, np.ndarray):
                x = torch.as_tensor(x)
            else:
                raise TypeError
        except TypeError:
            raise TypeError(param_error(name, where, "a torch.Tensor", type(x).__name__)) from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            raise ValueError(
                param_error(name, where, f"a tensor with ndim in {list(allowed)}",
                            f"shape {tuple(x.shape)}")
            )
    if shape is not None:
        ok = len(shape) == x.ndim and all(s is None or s == d for s, d in zip(shape, x.shape))
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(param_error(name, where, f"a tensor of shape {want}",
                                         f"shape {tuple(x.shape)}"))
    if floating and not x.is_floating_point():
        raise TypeError(param_error(name, where, "a floating-point tensor", f"dtype {x.dtype}"))
    if finite and (x.is_floating_point() or x.is_complex()):
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            n = int(bad.sum())
            raise ValueError(param_error(name, where, "finite (no NaN or inf)",
                                         f"{n} non-finite entries"))
    return x


def find_unsupported(
    model: torch.nn.Module,
    supported: tuple[type, ...],
    *,
    containers: tuple[type, ...] = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict),
) -> list[str]:
    """Return ``"path (Type)"`` for each leaf module of ``model`` whose type is not ``supported``.

    Container modules (and modules with children) are walked, not judged. Layer-walking methods
    use this to refuse rather than silently skip a layer they cannot handle.
    """
    bad: list[str] = []
    for path, module in model.named_modules():
        if isinstance(module, containers):
            continue
        if len(list(module.children())) > 0 and not isinstance(module, supported):
            continue
        if not isinstance(module, supported):
            bad.append(f"{path or '<root>'} ({type(module).__name__})")
    return bad
