"""Validation conformance over the whole public API (issue 13).

Like ``test_registry.py`` for experiments, this file makes bad-input handling a property every
module gets for free:

(a) every name in every ``dnnkit.<module>.__all__`` (and every public method of an exported
    class) either declares its parameters' constraints with
    :func:`dnnkit.core.validation.validate_params` or sits in :data:`EXEMPT` with a reason;
(b) every *valid* :class:`~dnnkit.core.validation.Example` a module registers in
    ``tests/<module>/conformance.py`` runs, and for each declared parameter each bad value the
    constraint generates (``bad_values``) raises the declared exception type, naming the
    parameter, within a second and without a big allocation;
(c) every hand-written bad ``Example`` raises its type naming its parameter.

A new module registers its table by writing ``tests/<module>/conformance.py`` with a function
``examples() -> list[Example]``; nothing here needs editing.
"""

from __future__ import annotations

import importlib
import inspect
import re
import resource
import time
from pathlib import Path
from typing import Any

import pytest

import dnnkit
from dnnkit.core.validation import Example, declared_params

TESTS = Path(__file__).resolve().parent
SRC = Path(dnnkit.__file__).resolve().parent
TIME_LIMIT_S = 1.0
RSS_LIMIT_MB = 512

# "module.Name" or "module.Class.method" -> why it declares nothing. Keep reasons concrete.
EXEMPT: dict[str, str] = {
    "feddip.FedDIPConfig.replace": "its keyword arguments are FedDIPConfig fields, checked by "
                                   "the class's declared constraints (replace calls __init__)",
    "feddip.FedDIPStrategy.start": "Flower entry point: the grid and records are Flower's own "
                                   "objects, built by Flower's ServerApp",
    "feddip.FedDIPStrategy.configure_train": "Flower callback: called by Flower's ServerApp "
                                             "with Flower's own message objects, not by users",
    "feddip.FedDIPStrategy.aggregate_train": "Flower callback (see configure_train)",
    "feddip.FedDIPStrategy.configure_evaluate": "Flower callback (see configure_train)",
    "slimsplit.Payload": "built by BottleneckQuantizer.encode and Payload.from_bytes, which "
                         "validate the header; its fields are not user input",
    "slimsplit.ModeChoice": "a result record returned by ModeController.select",
    "slimsplit.StreamTrace": "a result record returned by simulate_stream",
    "adapt.AdaPTConfig.dense": "its keyword arguments are AdaPTConfig fields, checked by the "
                               "class's declared constraints (dense calls __init__)",
    "adapt.AdaPTModel.forward": "passes *args/**kwargs unchanged to the wrapped user model, "
                                "which defines and checks its own inputs",
    "seq2seq.LSTMSeq2Seq.reorder_state": "decoder-state plumbing for beam_search: the state is "
                                         "the model's own return value, the index comes from "
                                         "the search",
}


def _modules() -> list[str]:
    return sorted(p.parent.name for p in SRC.glob("*/__init__.py")
                  if p.parent.name not in ("core",) and not p.parent.name.startswith("_"))


def _public_objects() -> list[tuple[str, Any]]:
    """(qualified name, object) for every exported name and public method of exported classes."""
    out: list[tuple[str, Any]] = []
    for m in _modules():
        mod = importlib.import_module(f"dnnkit.{m}")
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            out.append((f"{m}.{name}", obj))
            if isinstance(obj, type):
                for k, v in vars(obj).items():
                    if k.startswith("_"):
                        continue
                    if isinstance(v, (classmethod, staticmethod)):
                        v = v.__func__
                    if inspect.isfunction(v):
                        out.append((f"{m}.{name}.{k}", v))
    return out


def _takes_parameters(obj: Any) -> bool:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return any(p.name not in ("self", "cls") for p in sig.parameters.values())


def _conformance_files() -> list[Path]:
    return sorted(TESTS.glob("*/conformance.py"))


def _load_examples() -> list[tuple[str, Example | Exception]]:
    out: list[tuple[str, Example | Exception]] = []
    for f in _conformance_files():
        m = f.parent.name
        try:
            mod = importlib.import_module(f"tests.{m}.conformance")
            exs = list(mod.examples())
        except Exception as exc:  # noqa: BLE001 - reported as a failing case below
            out.append((m, exc))
            continue
        for ex in exs:
            out.append((m, ex))
    return out


EXAMPLES = _load_examples()


def _label(fn: Any) -> str:
    return getattr(fn, "__qualname__", type(fn).__name__)


def _bind(ex: Example) -> inspect.BoundArguments:
    return inspect.signature(ex.fn).bind(*ex.args, **ex.kwargs)


def _names_param(msg: str, param: str) -> bool:
    return re.search(rf"'{re.escape(param)}(\[[^\]]*\])*'", msg) is not None


def _call_bounded(fn: Any, args: tuple, kwargs: dict) -> tuple[BaseException | None, float]:
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    err: BaseException | None = None
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - inspected by the caller
        err = exc
    dt = time.perf_counter() - t0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mb < RSS_LIMIT_MB, f"peak memory grew by {grown_mb:.0f} MB"
    return err, dt


# ------------------------------------------------------------------------------------ (a)
PUBLIC = _public_objects()


@pytest.mark.parametrize("qualname,obj", PUBLIC, ids=[q for q, _ in PUBLIC])
def test_public_name_declares_constraints(qualname, obj):
    if qualname in EXEMPT:
        assert EXEMPT[qualname].strip(), "an exemption needs a reason"
        return
    if not _takes_parameters(obj):
        return  # nothing to validate: no parameters besides self
    if not callable(obj):
        return  # a constant
    assert declared_params(obj), (
        f"{qualname} declares no parameter constraints. Decorate it with "
        "@validate_params({'x': Tensor(ndim=2), 'eps': Real(0, 1), ...}) from "
        "dnnkit.core.validation (on a class: the decorator wraps __init__), or add it to EXEMPT "
        "in tests/test_conformance.py with the reason it takes no user input.")


def test_exemptions_are_current():
    names = {q for q, _ in PUBLIC}
    stale = sorted(set(EXEMPT) - names)
    assert not stale, f"EXEMPT lists names that are no longer public: {stale}"


def test_every_module_registers_examples():
    have = {f.parent.name for f in _conformance_files()}
    missing = [m for m in _modules() if m not in have]
    assert not missing, (f"modules without tests/<module>/conformance.py: {missing}; "
                         "write one with examples() -> list[Example] (see tests/options/).")


# ------------------------------------------------------------------------------------ (b), (c)
def _cases() -> list[Any]:
    cases = []
    per_module: dict[str, int] = {}
    for m, ex in EXAMPLES:
        # numbered within the module: ids stay stable when another module's table changes
        i = per_module[m] = per_module.get(m, -1) + 1
        if isinstance(ex, Exception):
            cases.append(pytest.param(m, ex, None, None, None, id=f"{m}-load-error"))
            continue
        name = _label(ex.fn)
        if ex.raises is not None:
            cases.append(pytest.param(m, ex, "hand", None, None,
                                      id=f"{m}-{i}-{name}-bad-{ex.param}"))
            continue
        cases.append(pytest.param(m, ex, "valid", None, None, id=f"{m}-{i}-{name}-valid"))
        try:
            bound = _bind(ex)
        except TypeError:
            continue  # reported by the "valid" case
        for p, c in declared_params(ex.fn).items():
            valid = bound.arguments.get(p, inspect.Parameter.empty)
            if valid is inspect.Parameter.empty:
                default = inspect.signature(ex.fn).parameters[p].default
                valid = None if default is inspect.Parameter.empty else default
            for j, (bad, exc) in enumerate(c.bad_values(valid)):
                try:
                    c.check(bad, p, None)
                    continue  # the generator made a value this constraint accepts: skip
                except exc:
                    pass
                except Exception:  # noqa: BLE001
                    continue
                cases.append(pytest.param(m, ex, p, bad, exc,
                                          id=f"{m}-{i}-{name}-{p}-{j}"))
    return cases


CASES = _cases()


@pytest.mark.parametrize("module,ex,param,bad,exc", CASES)
def test_conformance(module, ex, param, bad, exc):
    if isinstance(ex, Exception):
        pytest.fail(f"tests/{module}/conformance.py failed to build its examples: {ex!r}")
    if param == "valid":
        err, _ = _call_bounded(ex.fn, ex.args, ex.kwargs)
        if err is not None:
            raise err
        return
    if param == "hand":
        err, dt = _call_bounded(ex.fn, ex.args, ex.kwargs)
        assert err is not None, f"{_label(ex.fn)} accepted a bad {ex.param!r}"
        assert isinstance(err, ex.raises), f"expected {ex.raises.__name__}, got {err!r}"
        if ex.param:
            assert _names_param(str(err), ex.param), f"message does not name {ex.param!r}: {err}"
        return
    bound = _bind(ex)
    bound.arguments[param] = bad
    err, dt = _call_bounded(ex.fn, bound.args, bound.kwargs)
    shown = repr(bad) if not hasattr(bad, "shape") else f"{type(bad).__name__}{tuple(bad.shape)}"
    assert err is not None, f"{_label(ex.fn)} accepted {param}={shown[:80]}"
    assert isinstance(err, exc), f"{param}={shown[:80]}: expected {exc.__name__}, got {err!r}"
    assert _names_param(str(err), param), f"message does not name {param!r}: {err}"
    assert dt < TIME_LIMIT_S, f"refusing {param}={shown[:80]} took {dt:.2f} s"
