"""Run registered experiments and write their reports (used by the CLI and the tests).

Results folders survive crashes: a run writes into a hidden temporary folder next to its final
place (``out/.name.partial-*``) and is swapped into ``out/name`` only when its report is complete,
so ``out/name`` always holds one whole run (the previous one until the new one is complete).
Leftovers of a killed run are removed by the next run into the same ``out``. A lock on ``out``
(``out/.dnnkit.lock``) stops a second ``reproduce`` from writing into the same folder at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dnnkit.core import registry
from dnnkit.core.config import apply_overrides, config_to_dict
from dnnkit.core.device import resolve_device
from dnnkit.core.report import Result, _umask, write_index, write_run
from dnnkit.core.seeding import seed_everything

__all__ = ["run_experiment", "RunOutcome", "out_lock", "ResultsLocked"]

log = logging.getLogger("dnnkit")

LOCK_NAME = ".dnnkit.lock"
_HELD_ENV = "DNNKIT_OUT_LOCK_HELD"   # set by a parent that holds the lock for its workers
_HELD: set[str] = set()              # folders this process holds the lock of


class ResultsLocked(RuntimeError):
    """Another ``dnnkit reproduce`` is writing into the same results folder."""


@dataclass
class RunOutcome:
    name: str
    result: Result
    out_dir: Path
    seconds: float


@contextlib.contextmanager
def out_lock(out: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on results folder ``out`` (created) for the ``with`` block.

    Raises :class:`ResultsLocked` at once (no waiting) when another process holds it. Worker
    processes started by a holder (``reproduce --jobs``) inherit it through an environment
    variable naming the folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key = str(out.resolve())
    if os.environ.get(_HELD_ENV) == key or key in _HELD:   # re-entrant; inherited by workers
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    fh = open(out / LOCK_NAME, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise ResultsLocked(
                f"another dnnkit reproduce (pid {holder}) is writing into {str(out)!r}; wait for "
                "it to finish or pass another --out.") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        fh.close()   # releases the lock


def _clean_leftovers(out: Path, name: str) -> None:
    """Remove a killed run's temporary folders; restore the last complete run if a swap was cut
    short between its two renames."""
    final = out / name
    for old in sorted(out.glob(f".{name}.old-*")):
        if not final.exists():
            os.replace(old, final)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for part in out.glob(f".{name}.partial-*"):
        shutil.rmtree(part, ignore_errors=True)


def _swap_in(tmp: Path, final: Path) -> None:
    """Move complete run folder ``tmp`` to ``final``; the old ``final`` is removed afterwards."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_experiment(
    name: str,
    *,
    out: str | Path = "results",
    quick: bool = False,
    seed: int = 0,
    device: str | torch.device = "auto",
    overrides: list[str] | dict[str, Any] | None = None,
    progress: bool = False,
    index: bool = True,
) -> RunOutcome:
    """Run experiment ``name`` with its default (or quick) config and write its report.

    The report lands in ``out/name`` (swapped in whole when complete); ``out/index.md`` and
    ``out/index.html`` are refreshed. Raises :class:`ResultsLocked` when another process is
    writing into ``out``.
    """
    exp = registry.get(name)
    cfg = exp.default_config(quick)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    dev = resolve_device(device)
    out = Path(out)
    with out_lock(out):
        _clean_leftovers(out, name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out))
        os.chmod(tmp, 0o777 & ~_umask())          # mkdtemp's 0700 -> the usual folder mode
        try:
            seed_everything(seed)
            ctx = registry.RunContext(out_dir=tmp, seed=seed, device=dev, progress=progress)
            threads = torch.get_num_threads()
            if exp.num_threads is not None:
                torch.set_num_threads(exp.num_threads)
            t0 = time.perf_counter()
            try:
                result = exp.run(cfg, ctx)
            finally:
                torch.set_num_threads(threads)  # the next experiment (or caller) starts as it was
            seconds = time.perf_counter() - t0
            if not isinstance(result, Result):
                raise TypeError(f"Experiment {name!r} returned {type(result).__name__}, "
                                "not a Result.")
            write_run(tmp, name=name, paper=exp.paper, claim=exp.claim,
                      config=config_to_dict(cfg), result=result, seed=seed, seconds=seconds)
            _swap_in(tmp, out / name)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if index:
            write_index(out)
    return RunOutcome(name, result, out / name, seconds)
