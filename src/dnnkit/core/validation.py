"""Input validation at the public boundary, with one message template.

Every message reads like scikit-learn's parameter validation::

    The 'eps' parameter of nobox.attack must be a float in (0, 1]. Got -0.1 instead.

``ValueError`` is raised for bad values, ``TypeError`` for bad types and ``KeyError`` (with
close-match suggestions) for unknown names.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from numbers import Integral
from numbers import Real as _Number
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
    "validate_params",
    "declares",
    "check_params",
    "declared_params",
    "check_memory",
    "Constraint",
    "Real",
    "Int",
    "Options",
    "Instance",
    "Callable_",
    "Seed",
    "Str",
    "PathArg",
    "Tensor",
    "Sequence_",
    "Optional_",
    "AnyOf",
    "Example",
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
    if isinstance(value, bool) or not isinstance(value, _Number):
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


# --------------------------------------------------------------------------------------------
# Declarative validation (scikit-learn's ``validate_params`` is the model)
# --------------------------------------------------------------------------------------------
#
# A public function states its parameters' constraints once::
#
#     @validate_params({"x": Tensor(ndim=4, dtype="floating", low=0, high=1),
#                       "eps": Real(0, 1, closed="right"), "steps": Int(0, 100_000),
#                       "mode": Options("proto", "rotation"), "seed": Seed()})
#     def attack(model, x, *, eps=0.1, steps=10, mode="proto", seed=None): ...
#
# The wrapper checks every *passed* argument (defaults are trusted) before the body runs and
# raises with the house template. Because constraints are data, ``bad_values`` lets the
# conformance suite (tests/test_conformance.py) generate bad inputs for every parameter.

_GiB = 1024**3


def _is_real(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, _Number):
        return True
    try:
        import numpy as np

        return isinstance(v, np.generic) and np.issubdtype(type(v), np.number) \
            and not np.issubdtype(type(v), np.complexfloating) and not isinstance(v, np.bool_)
    except ImportError:  # pragma: no cover
        return False


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, Integral):
        return True
    try:
        import numpy as np

        return isinstance(v, np.integer)
    except ImportError:  # pragma: no cover
        return False


class Constraint:
    """Base of the declarative constraints: ``check`` raises, ``bad_values`` feeds the suite."""

    def describe(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def check(self, value: Any, name: str, where: str | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        """Values that must be refused, with the exception type; ``valid`` is a good value."""
        return []

    def _type_error(self, name: str, where: str | None, value: Any) -> TypeError:
        got = value if isinstance(value, (int, float, str, type(None))) else type(value).__name__
        return TypeError(param_error(name, where, self.describe(), got))


@dataclasses.dataclass(frozen=True)
class Real(Constraint):
    """A real number (not bool) in an interval; NaN always refused, inf unless ``allow_inf``."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"
    allow_inf: bool = False

    def describe(self) -> str:
        lo = "[" if self.closed in ("both", "left") else "("
        hi = "]" if self.closed in ("both", "right") else ")"
        a = "-inf" if self.low is None else f"{self.low:g}"
        b = "inf" if self.high is None else f"{self.high:g}"
        return f"a float in {lo}{a}, {b}{hi}"

    def check(self, value: Any, name: str, where: str | None) -> None:
        if not _is_real(value):
            if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
                value = value.item()
            else:
                raise self._type_error(name, where, value)
        v = float(value)
        bad = math.isnan(v) or (math.isinf(v) and not self.allow_inf)
        if self.low is not None:
            bad = bad or v < self.low or (v == self.low and self.closed in ("right", "neither"))
        if self.high is not None:
            bad = bad or v > self.high or (v == self.high and self.closed in ("left", "neither"))
        if bad:
            raise ValueError(param_error(name, where, self.describe(), value))

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        out: list[tuple[Any, type[BaseException]]] = [("a", TypeError), (math.nan, ValueError)]
        if not self.allow_inf:
            out.append((math.inf, ValueError))
        if self.low is not None:
            out.append((self.low if self.closed in ("right", "neither") else
                        self.low - max(1.0, abs(self.low)), ValueError))
        if self.high is not None:
            out.append((self.high if self.closed in ("left", "neither") else
                        self.high + max(1.0, abs(self.high)), ValueError))
        return out


@dataclasses.dataclass(frozen=True)
class Int(Constraint):
    """An integer (not bool) in ``[low, high]``. Give sizes an upper bound: 2**40 must fail."""

    low: int | None = None
    high: int | None = None

    def describe(self) -> str:
        a = "-inf" if self.low is None else str(self.low)
        b = "inf" if self.high is None else str(self.high)
        return f"an int in [{a}, {b}]"

    def check(self, value: Any, name: str, where: str | None) -> None:
        if not _is_int(value):
            raise self._type_error(name, where, value)
        v = int(value)
        if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
            raise ValueError(param_error(name, where, self.describe(), value))

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        out: list[tuple[Any, type[BaseException]]] = [(1.5, TypeError), ("3", TypeError),
                                                       (True, TypeError)]
        if self.low is not None:
            out.append((self.low - 1, ValueError))
        if self.high is not None:
            out.append((self.high + 1, ValueError))
            if self.high < 2**40:
                out.append((2**40, ValueError))
        return out


class Options(Constraint):
    """One of a fixed set of values (usually names); unknown strings get close matches."""

    def __init__(self, *choices: Any) -> None:
        if len(choices) == 1 and isinstance(choices[0], (list, tuple, set, frozenset)):
            choices = tuple(choices[0])
        self.choices = tuple(choices)

    def __repr__(self) -> str:
        return f"Options{self.choices!r}"

    def describe(self) -> str:
        return f"one of {list(self.choices)}"

    def check(self, value: Any, name: str, where: str | None) -> None:
        strs = all(isinstance(c, str) for c in self.choices)
        if strs and not isinstance(value, str):
            raise self._type_error(name, where, value)
        try:
            ok = value in self.choices
        except TypeError:
            ok = False
        if not ok:
            hint = suggest(value, [str(c) for c in self.choices]) if isinstance(value, str) else ""
            raise ValueError(param_error(name, where, self.describe(), value) + hint)

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        out: list[tuple[Any, type[BaseException]]] = [("no-such-option", ValueError)]
        if all(isinstance(c, str) for c in self.choices):
            out.append((3, TypeError))
        return out


@dataclasses.dataclass(frozen=True)
class Instance(Constraint):
    """An instance of one of ``types`` (e.g. ``torch.nn.Module``)."""

    types: tuple[type, ...]

    def __init__(self, *types: type) -> None:
        object.__setattr__(self, "types", tuple(types))

    @staticmethod
    def _name(t: type) -> str:
        mod = getattr(t, "__module__", "") or ""
        if mod.startswith("torch.nn.modules"):
            return f"torch.nn.{t.__name__}"
        if mod.startswith("torch") and hasattr(torch, t.__name__):
            return f"torch.{t.__name__}"
        return t.__name__

    def describe(self) -> str:
        names = [self._name(t) for t in self.types]
        return "an instance of " + (names[0] if len(names) == 1 else " or ".join(names))

    def check(self, value: Any, name: str, where: str | None) -> None:
        if not isinstance(value, self.types):
            raise self._type_error(name, where, value)

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        return [("not-an-object-of-the-right-type", TypeError), (object(), TypeError)]


class Callable_(Constraint):
    """Any callable (a model, a function, a victim stub)."""

    def __repr__(self) -> str:
        return "Callable_()"

    def describe(self) -> str:
        return "a callable"

    def check(self, value: Any, name: str, where: str | None) -> None:
        if not callable(value):
            raise self._type_error(name, where, value)

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        return [(3, TypeError), ("model", TypeError)]


class Seed(Constraint):
    """``None``, an int in ``[0, 2**63)`` or a ``torch.Generator`` (numpy ones too)."""

    def __repr__(self) -> str:
        return "Seed()"

    def describe(self) -> str:
        return "None, an int in [0, 2**63 - 1] or a torch.Generator"

    def check(self, value: Any, name: str, where: str | None) -> None:
        if value is None or isinstance(value, torch.Generator):
            return
        try:
            import numpy as np

            if isinstance(value, (np.random.Generator, np.random.RandomState)):
                return
        except ImportError:  # pragma: no cover
            pass
        if not _is_int(value):
            raise self._type_error(name, where, value)
        if not 0 <= int(value) < 2**63:
            raise ValueError(param_error(name, where, self.describe(), value))

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        return [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), ("0", TypeError)]


@dataclasses.dataclass(frozen=True)
class Str(Constraint):
    """A string, non-empty unless ``allow_empty``."""

    allow_empty: bool = False
    max_len: int | None = None

    def describe(self) -> str:
        return "a string" if self.allow_empty else "a non-empty string"

    def check(self, value: Any, name: str, where: str | None) -> None:
        if not isinstance(value, str):
            raise self._type_error(name, where, value)
        if (not value and not self.allow_empty) or (self.max_len and len(value) > self.max_len):
            raise ValueError(param_error(name, where, self.describe(), value))

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        out: list[tuple[Any, type[BaseException]]] = [(3, TypeError)]
        if not self.allow_empty:
            out.append(("", ValueError))
        return out


@dataclasses.dataclass(frozen=True)
class PathArg(Constraint):
    """A ``str``/``PathLike`` path; with ``root``, a relative path that stays inside ``root``.

    ``must_exist`` refuses missing paths; ``kind`` is ``"file"``, ``"dir"`` or ``"any"``.
    """

    root: str | None = None
    must_exist: bool = False
    kind: str = "any"

    def describe(self) -> str:
        s = "a path"
        if self.root is not None:
            s = "a relative path inside its root (no '..', not absolute)"
        if self.must_exist:
            s += f" to an existing {'path' if self.kind == 'any' else self.kind}"
        return s

    def check(self, value: Any, name: str, where: str | None) -> None:
        import os
        from pathlib import Path

        if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes):
            raise self._type_error(name, where, value)
        p = Path(value)
        if self.root is not None:
            root = Path(self.root).resolve()
            if p.is_absolute() or not (root / p).resolve().is_relative_to(root):
                raise ValueError(param_error(name, where, self.describe(), str(value)))
            p = root / p
        if self.must_exist:
            ok = {"file": p.is_file, "dir": p.is_dir, "any": p.exists}[self.kind]()
            if not ok:
                raise ValueError(param_error(name, where, self.describe(), str(value)))

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        out: list[tuple[Any, type[BaseException]]] = [(3, TypeError)]
        if self.root is not None:
            out += [("../../../etc/passwd", ValueError), ("/etc/passwd", ValueError)]
        if self.must_exist:
            out.append(("/nonexistent/dnnkit/path", ValueError))
        return out


_DTYPES = ("floating", "integer", "bool", "complex")


@dataclasses.dataclass(frozen=True)
class Tensor(Constraint):
    """A ``torch.Tensor`` (numpy arrays accepted unless ``numpy=False``).

    ``ndim`` (int or tuple of ints), ``shape`` (``None`` = any size), ``dtype`` (``"floating"``,
    ``"integer"``, ``"bool"`` or a ``torch.dtype``), ``finite`` (no NaN/inf), value range
    ``[low, high]``, ``nonempty`` (no zero-size dimension).
    """

    ndim: int | tuple[int, ...] | None = None
    shape: tuple[int | None, ...] | None = None
    dtype: Any = None
    finite: bool = True
    low: float | None = None
    high: float | None = None
    nonempty: bool = True
    numpy: bool = True

    def describe(self) -> str:
        parts = ["a tensor"]
        if self.shape is not None:
            parts.append("of shape (" + ", ".join("*" if s is None else str(s)
                                                   for s in self.shape) + ")")
        elif self.ndim is not None:
            nd = (self.ndim,) if isinstance(self.ndim, int) else tuple(self.ndim)
            parts.append(f"with ndim in {list(nd)}")
        if self.dtype is not None:
            parts.append(f"of dtype {self.dtype}")
        if self.low is not None or self.high is not None:
            parts.append(f"with values in [{'-inf' if self.low is None else self.low}, "
                         f"{'inf' if self.high is None else self.high}]")
        return " ".join(parts)

    def _as_tensor(self, value: Any) -> torch.Tensor | None:
        if isinstance(value, torch.Tensor):
            return value
        if self.numpy:
            try:
                import numpy as np

                if isinstance(value, np.ndarray) and value.dtype != object:
                    return torch.as_tensor(value)
            except (ImportError, TypeError):
                return None
        return None

    def check(self, value: Any, name: str, where: str | None) -> None:
        x = self._as_tensor(value)
        if x is None:
            raise self._type_error(name, where, value)
        shp = f"shape {tuple(x.shape)}"
        if self.ndim is not None:
            nd = (self.ndim,) if isinstance(self.ndim, int) else tuple(self.ndim)
            if x.ndim not in nd:
                raise ValueError(param_error(name, where, self.describe(), shp))
        if self.shape is not None:
            if len(self.shape) != x.ndim or any(s is not None and s != d
                                                for s, d in zip(self.shape, x.shape)):
                raise ValueError(param_error(name, where, self.describe(), shp))
        if self.dtype is not None:
            kind = {"floating": x.is_floating_point(), "complex": x.is_complex(),
                    "bool": x.dtype == torch.bool,
                    "integer": not (x.is_floating_point() or x.is_complex()
                                    or x.dtype == torch.bool)}
            ok = kind[self.dtype] if isinstance(self.dtype, str) else x.dtype == self.dtype
            if not ok:
                raise TypeError(param_error(name, where, self.describe(), f"dtype {x.dtype}"))
        if self.nonempty and x.numel() == 0:
            raise ValueError(param_error(name, where, "a non-empty tensor", shp))
        if x.numel() == 0:
            return
        if self.finite and (x.is_floating_point() or x.is_complex()):
            bad = ~torch.isfinite(x)
            if bool(bad.any()):
                raise ValueError(param_error(name, where, "finite (no NaN or inf)",
                                             f"{int(bad.sum())} non-finite entries"))
        if (self.low is not None or self.high is not None) and not x.is_complex():
            lo, hi = x.min().item(), x.max().item()
            if (self.low is not None and lo < self.low) or (self.high is not None
                                                            and hi > self.high):
                raise ValueError(param_error(name, where, self.describe(),
                                             f"values in [{lo:g}, {hi:g}]"))

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        out: list[tuple[Any, type[BaseException]]] = [("not-a-tensor", TypeError),
                                                       ([[0.0]], TypeError)]
        x = self._as_tensor(valid)
        if x is None:
            return out
        if self.ndim is not None or self.shape is not None:
            out.append((x.unsqueeze(0), ValueError))
        if self.nonempty and x.ndim > 0:
            out.append((x[:0], ValueError))
        if self.shape is not None and x.ndim == len(self.shape):
            for i, s in enumerate(self.shape):
                if s is not None:
                    idx = [slice(None)] * x.ndim
                    idx[i] = slice(0, 1)
                    out.append((torch.cat([x, x[tuple(idx)]], dim=i), ValueError))
                    break
        if x.numel() and not x.is_floating_point() and not x.is_complex() \
                and x.dtype != torch.bool:
            if self.high is not None:
                out.append((x + (int(self.high) - int(x.min()) + 1), ValueError))
            if self.low is not None:
                out.append((x - (int(x.max()) - int(self.low) + 1), ValueError))
        if x.numel() and x.is_floating_point():
            if self.finite:
                y = x.clone()
                y.view(-1)[0] = math.nan
                out.append((y, ValueError))
            if self.high is not None:
                out.append((x + (abs(self.high) + 1.0), ValueError))
            if self.low is not None:
                out.append((x - (abs(self.low) + 1.0) - (x.max() - x.min()), ValueError))
        if self.dtype == "floating" and x.numel():
            out.append((torch.zeros(x.shape, dtype=torch.int64), TypeError))
        return out


@dataclasses.dataclass(frozen=True)
class Sequence_(Constraint):
    """A list/tuple (never a str) whose items satisfy ``item``, length in ``[min_len, max_len]``."""

    item: Constraint | None = None
    min_len: int = 1
    max_len: int | None = None

    def describe(self) -> str:
        s = f"a list or tuple of length >= {self.min_len}"
        if self.max_len is not None:
            s = f"a list or tuple of length in [{self.min_len}, {self.max_len}]"
        if self.item is not None:
            s += f" of {self.item.describe()}"
        return s

    def check(self, value: Any, name: str, where: str | None) -> None:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise self._type_error(name, where, value)
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            raise ValueError(param_error(name, where, self.describe(), f"length {len(value)}"))
        if self.item is not None:
            for i, v in enumerate(value):
                self.item.check(v, f"{name}[{i}]", where)

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        out: list[tuple[Any, type[BaseException]]] = [("abc", TypeError), (3, TypeError)]
        if self.min_len >= 1:
            out.append(([], ValueError))
        if self.item is not None and isinstance(valid, (list, tuple)) and valid:
            for bad, exc in self.item.bad_values(valid[0])[:2]:
                out.append(([bad] + list(valid[1:]), exc))
        return out


@dataclasses.dataclass(frozen=True)
class Optional_(Constraint):
    """``None`` or a value satisfying ``inner``."""

    inner: Constraint

    def describe(self) -> str:
        return f"None or {self.inner.describe()}"

    def check(self, value: Any, name: str, where: str | None) -> None:
        if value is not None:
            self.inner.check(value, name, where)

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        return self.inner.bad_values(valid) if valid is not None else []


@dataclasses.dataclass(frozen=True)
class AnyOf(Constraint):
    """A value satisfying at least one of ``options`` (the first one's error type is raised)."""

    options: tuple[Constraint, ...]

    def __init__(self, *options: Constraint) -> None:
        object.__setattr__(self, "options", tuple(options))

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)

    def check(self, value: Any, name: str, where: str | None) -> None:
        errors: list[Exception] = []
        for o in self.options:
            try:
                o.check(value, name, where)
                return
            except (TypeError, ValueError) as exc:
                errors.append(exc)
        kind = ValueError if any(isinstance(e, ValueError) for e in errors) else TypeError
        got = value if isinstance(value, (int, float, str, type(None))) else type(value).__name__
        raise kind(param_error(name, where, self.describe(), got))

    def bad_values(self, valid: Any) -> list[tuple[Any, type[BaseException]]]:
        # values every option refuses (each option's own bad values, kept when all refuse them)
        out: list[tuple[Any, type[BaseException]]] = [(object(), TypeError)]
        for o in self.options:
            try:
                o.check(valid, "_", None)
            except (TypeError, ValueError):
                continue
            for bad, _exc in o.bad_values(valid):
                kinds = []
                for other in self.options:
                    try:
                        other.check(bad, "_", None)
                        break
                    except (TypeError, ValueError) as exc:
                        kinds.append(type(exc))
                else:
                    out.append((bad, ValueError if ValueError in kinds else TypeError))
        return out


def _where_of(obj: Any) -> str:
    mod = getattr(obj, "__module__", "") or ""
    parts = mod.split(".")
    if len(parts) >= 2 and parts[0] == "dnnkit":
        prefix = ".".join(parts[1:3]) if parts[1] == "core" else parts[1]
    else:
        prefix = mod
    return f"{prefix}.{obj.__qualname__}" if prefix else obj.__qualname__


def check_params(constraints: dict[str, Constraint], values: dict[str, Any],
                 where: str | None) -> None:
    """Check ``values`` (a name -> value mapping) against ``constraints``; absent names pass."""
    for name, c in constraints.items():
        if name in values:
            c.check(values[name], name, where)


def validate_params(constraints: dict[str, Constraint], *, where: str | None = None):
    """Decorate a public function (or class: its ``__init__``) with parameter constraints.

    Every argument passed by the caller is checked before the body runs; defaults are trusted.
    The constraints are kept on the wrapper as ``__dnnkit_params__`` so the conformance suite
    can generate bad values for each parameter.
    """
    for k, c in constraints.items():
        if not isinstance(c, Constraint):
            raise TypeError(f"constraint for {k!r} must be a Constraint, got {c!r}")

    def deco(obj: Any) -> Any:
        is_class = isinstance(obj, type)
        target = obj.__init__ if is_class else obj
        sig = inspect.signature(target)
        missing = set(constraints) - set(sig.parameters)
        if missing:
            raise TypeError(f"validate_params on {obj.__qualname__}: no parameter(s) "
                            f"{sorted(missing)}")
        label = where or _where_of(obj)

        @functools.wraps(target)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{label}: {exc}") from None
            check_params(constraints, bound.arguments, label)
            return target(*args, **kwargs)

        wrapper.__dnnkit_params__ = dict(constraints)  # type: ignore[attr-defined]
        wrapper.__dnnkit_where__ = label  # type: ignore[attr-defined]
        if is_class:
            obj.__init__ = wrapper
            obj.__dnnkit_params__ = dict(constraints)
            obj.__dnnkit_where__ = label
            return obj
        return wrapper

    return deco


def declares(constraints: dict[str, Constraint], *, where: str | None = None):
    """Attach constraints to a hot-path function that validates *inline* (no wrapper).

    For calls whose cost must stay at a few microseconds (``forward`` of a layer, an O(1) mode
    switch), the function checks its arguments itself; ``declares`` records what it promises
    so that the conformance suite generates the same bad values as for :func:`validate_params`
    and holds the inline checks to them. Prefer :func:`validate_params` everywhere else.
    """
    for k, c in constraints.items():
        if not isinstance(c, Constraint):
            raise TypeError(f"constraint for {k!r} must be a Constraint, got {c!r}")

    def deco(fn: Any) -> Any:
        missing = set(constraints) - set(inspect.signature(fn).parameters)
        if missing:
            raise TypeError(f"declares on {fn.__qualname__}: no parameter(s) {sorted(missing)}")
        fn.__dnnkit_params__ = dict(constraints)
        fn.__dnnkit_where__ = where or _where_of(fn)
        return fn

    return deco


def declared_params(fn: Any) -> dict[str, Constraint]:
    """The constraints declared with :func:`validate_params` on ``fn`` ({} when none)."""
    return dict(getattr(fn, "__dnnkit_params__", {}) or {})


def check_memory(nbytes: float, name: str, where: str | None = None, *,
                 limit_gib: float = 8.0) -> None:
    """Refuse work whose estimated allocation exceeds ``limit_gib`` before allocating it."""
    if nbytes > limit_gib * _GiB:
        raise ValueError(f"{_where(name, where)} asks for about {nbytes / _GiB:,.1f} GiB of "
                         f"memory (limit {limit_gib:g} GiB); choose a smaller value.")


@dataclasses.dataclass
class Example:
    """A call registered with the conformance suite (``tests/<module>/conformance.py``).

    Without ``raises`` it is a *valid* call: the suite replaces each declared parameter with the
    constraint's bad values and expects the right error naming that parameter. With ``raises``
    (and ``param``) it is a hand-written bad case that must raise that type naming ``param``.
    """

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    raises: type[BaseException] | None = None
    param: str | None = None
