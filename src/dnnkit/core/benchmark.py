"""Side-by-side timing helpers for ``dnnkit bench``. Speed goals live here, never in tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Timing", "time_call"]


@dataclass
class Timing:
    """One row of a benchmark: our time vs an anchor's time on the same work, same process.

    ``speedup = anchor_s / ours_s`` (> 1 means dnnkit is faster).
    """

    label: str
    ours_s: float
    anchor: str
    anchor_s: float
    note: str = ""

    @property
    def speedup(self) -> float:
        return self.anchor_s / self.ours_s if self.ours_s > 0 else float("inf")

    def as_dict(self) -> dict:
        return {"label": self.label, "ours_s": self.ours_s, "anchor": self.anchor,
                "anchor_s": self.anchor_s, "speedup": self.speedup, "note": self.note}


def time_call(fn: Callable[[], object], *, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]
