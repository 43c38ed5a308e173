"""Run registered experiments and write their reports (used by the CLI and the tests)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dnnkit.core import registry
from dnnkit.core.config import apply_overrides, config_to_dict
from dnnkit.core.device import resolve_device
from dnnkit.core.report import Result, write_index, write_run
from dnnkit.core.seeding import seed_everything

__all__ = ["run_experiment", "RunOutcome"]

log = logging.getLogger("dnnkit")


@dataclass
class RunOutcome:
    name: str
    result: Result
    out_dir: Path
    seconds: float


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

    The report lands in ``out/name``; ``out/index.md`` and ``out/index.html`` are refreshed.
    """
    exp = registry.get(name)
    cfg = exp.default_config(quick)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
    dev = resolve_device(device)
    out_dir = Path(out) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    ctx = registry.RunContext(out_dir=out_dir, seed=seed, device=dev, progress=progress)
    threads = torch.get_num_threads()
    if exp.num_threads is not None:
        torch.set_num_threads(exp.num_threads)
    t0 = time.perf_counter()
    try:
        result = exp.run(cfg, ctx)
    finally:
        torch.set_num_threads(threads)  # the next experiment (or the caller) starts as it was
    seconds = time.perf_counter() - t0
    if not isinstance(result, Result):
        raise TypeError(f"Experiment {name!r} returned {type(result).__name__}, not a Result.")
    write_run(out_dir, name=name, paper=exp.paper, claim=exp.claim, config=config_to_dict(cfg),
              result=result, seed=seed, seconds=seconds)
    if index:
        write_index(Path(out))
    return RunOutcome(name, result, out_dir, seconds)
