"""The experiment and benchmark registry.

Each paper module registers its reproduction in ``experiment.py``::

    @register("deep_taylor", paper="Montavon et al. 2017, Pattern Recognition 65",
              claim="DTD heatmaps are conservative and beat sensitivity", config=Config)
    def run(cfg: Config, ctx: RunContext) -> Result: ...

and its side-by-side timing in ``bench.py`` with :func:`register_bench`. Modules are found by
:func:`discover`, which imports ``dnnkit.<module>.experiment`` / ``.bench`` for every sub-package,
so a new module is listed, tested by the conformance test and reachable from the CLI for free.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dnnkit.core.validation import suggest

__all__ = ["register", "register_bench", "get", "get_bench", "names", "bench_names",
           "discover", "Experiment", "Bench", "RunContext"]


@dataclass
class RunContext:
    """What the runner hands an experiment: where to write, the seed, the device, bars on/off."""

    out_dir: Path
    seed: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    progress: bool = False

    def path(self, name: str) -> Path:
        """A file path inside the run's output folder (created).

        Raises ``ValueError`` for a name that is empty, absolute or escapes the folder
        (``..``, or a symlink out of it).
        """
        if not isinstance(name, str) or not name or Path(name).is_absolute():
            raise ValueError(f"RunContext.path: {name!r} must be a relative file name inside the "
                             "run folder.")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        p = self.out_dir / name
        if not p.resolve().is_relative_to(self.out_dir.resolve()):
            raise ValueError(f"RunContext.path: {name!r} escapes the run folder "
                             f"{str(self.out_dir)!r}.")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


@dataclass(frozen=True)
class Experiment:
    name: str
    paper: str
    claim: str
    config: type
    run: Callable[..., Any]
    module: str
    num_threads: int | None = None

    def default_config(self, quick: bool = False) -> Any:
        return self.config.quick() if quick else self.config()


@dataclass(frozen=True)
class Bench:
    name: str
    run: Callable[..., Any]
    module: str


_EXPERIMENTS: dict[str, Experiment] = {}
_BENCHES: dict[str, Bench] = {}
_DISCOVERED = False


def register(name: str, *, paper: str, claim: str, config: type,
             num_threads: int | None = None) -> Callable:
    """Decorator registering ``run(cfg, ctx) -> Result`` as experiment ``name``.

    ``num_threads`` pins torch's intra-op threads while the runner runs it (and restores them
    afterwards): many small kernels run fastest on one thread, and spinning OpenMP threads on a
    shared 2-core machine slow them down several-fold.
    """
    if not paper or not claim:
        raise ValueError(f"Experiment {name!r} needs a paper reference and a claim.")
    if not (dataclasses.is_dataclass(config) and hasattr(config, "quick")):
        raise TypeError(f"Experiment {name!r}: config must be a dataclass with a quick() classmethod.")

    def deco(fn: Callable) -> Callable:
        existing = _EXPERIMENTS.get(name)
        if existing is not None and existing.module != fn.__module__:
            raise ValueError(f"Experiment {name!r} is registered twice ({existing.module}, "
                             f"{fn.__module__}).")
        _EXPERIMENTS[name] = Experiment(name, paper, claim, config, fn, fn.__module__,
                                        num_threads)
        return fn

    return deco


def register_bench(name: str) -> Callable:
    """Decorator registering ``bench(quick: bool = False) -> list[Timing]`` as benchmark ``name``."""

    def deco(fn: Callable) -> Callable:
        _BENCHES[name] = Bench(name, fn, fn.__module__)
        return fn

    return deco


def discover() -> None:
    """Import every ``dnnkit.<module>.experiment`` and ``.bench`` (once)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    import dnnkit

    for info in pkgutil.iter_modules(dnnkit.__path__):
        if not info.ispkg or info.name == "core":
            continue
        for sub in ("experiment", "bench"):
            modname = f"dnnkit.{info.name}.{sub}"
            if importlib.util.find_spec(modname) is not None:
                importlib.import_module(modname)
    _DISCOVERED = True


def names() -> list[str]:
    discover()
    return sorted(_EXPERIMENTS)


def bench_names() -> list[str]:
    discover()
    return sorted(_BENCHES)


def get(name: str) -> Experiment:
    """Return experiment ``name``; ``KeyError`` with close matches otherwise."""
    discover()
    if name not in _EXPERIMENTS:
        raise KeyError(f"Unknown experiment {name!r}.{suggest(name, _EXPERIMENTS)} "
                       f"Known: {sorted(_EXPERIMENTS)}")
    return _EXPERIMENTS[name]


def get_bench(name: str) -> Bench:
    discover()
    if name not in _BENCHES:
        raise KeyError(f"Unknown benchmark {name!r}.{suggest(name, _BENCHES)} "
                       f"Known: {sorted(_BENCHES)}")
    return _BENCHES[name]
